"""SQA, speech-queried attention (SPEC §6.3).

Motion keys come from a motion window (the UNMASKED ground truth in training): conv motion
encoder → MLP → Linear(→ d) + speaker embedding + periodic PE → one transformer-encoder layer.
The queries are Linear(→ d)(c_p) for the body parts (hands, upper, lower). An attention decoder
(queries as target, motion keys as memory) gives

- frame scores (B, T): the cross-attention a key frame receives, averaged over decoder layers,
  heads and query positions, per part; the parts are combined with learnable softmax-normalised
  weights. Every attention row is a softmax over the key frames, so each part's scores and the
  combined scores are non-negative and sum to 1 over the window's frames;
- the speech injection (B, T, d): the decoder output, combined over parts with the same weights.

All parts run through the decoder as one batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from einops import rearrange, reduce
from torch import nn

from echomask.models.transformer_blocks import (
    AttentionDecoder,
    MotionEncoder,
    PeriodicPositionalEncoding,
    mlp,
    transformer_encoder,
)

SQA_PARTS = ("hands", "upper", "lower")


@dataclass
class SQAOutput:
    """scores (B, T): combined frame scores, rows sum to 1.
    part_scores (P, B, T): per-part frame scores (rows sum to 1), parts in ``SpeechQueriedAttention.parts`` order.
    attention (B, T_query, T_key): cross-attention averaged over layers and heads, part-weighted (for plots).
    injection (B, T, d): part-weighted decoder output (the "speech injection")."""

    scores: torch.Tensor
    part_scores: torch.Tensor
    attention: torch.Tensor
    injection: torch.Tensor


class SpeechQueriedAttention(nn.Module):
    """forward(motion (B, T, motion_dim), speaker (B,), speech: part -> c_p (B, T, speech_dim)) -> SQAOutput."""

    def __init__(
        self,
        motion_dim: int = 337,  # whole-body stream (SPEC §4.2)
        speech_dim: int = 256,  # c_p size (MAM d_model, SPEC §6.2)
        encoder_width: int = 256,  # conv motion encoder width (SPEC §6.3)
        encoder_blocks: int = 3,  # SPEC §6.3
        d_model: int = 768,  # SPEC §6.3
        num_heads: int = 4,  # SPEC §6.3
        dim_feedforward: int = 1536,
        num_layers: int = 8,  # decoder layers (SPEC §6.3)
        key_encoder_layers: int = 1,  # SPEC §6.3
        num_speakers: int = 25,  # BEAT2 (SPEC §6.1)
        parts: Sequence[str] = SQA_PARTS,
        period: int = 64,  # positional-encoding period (SPEC §6.2)
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.parts = tuple(parts)
        self.speech_dim = speech_dim
        self.num_speakers = num_speakers
        self.motion_encoder = MotionEncoder(motion_dim, encoder_width, encoder_blocks)
        self.motion_mlp = mlp(encoder_width, encoder_width)
        self.motion_projection = nn.Linear(encoder_width, d_model)
        self.speaker_embedding = nn.Embedding(num_speakers, d_model)
        self.positional_encoding = PeriodicPositionalEncoding(d_model, period)
        self.key_encoder = transformer_encoder(d_model, num_heads, dim_feedforward, key_encoder_layers, dropout)
        self.query_projection = nn.Linear(speech_dim, d_model)
        self.decoder = AttentionDecoder(d_model, num_heads, dim_feedforward, num_layers, dropout)
        self.part_logits = nn.Parameter(torch.zeros(len(self.parts)))

    def part_weights(self) -> torch.Tensor:
        """(P,) softmax-normalised part weights."""
        return self.part_logits.softmax(dim=0)

    def motion_keys(self, motion: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
        """motion (B, T, motion_dim), speaker (B,) int -> keys (B, T, d_model)."""
        if speaker.shape != motion.shape[:1]:
            raise ValueError(
                f"SpeechQueriedAttention: speaker must be (B,) = {tuple(motion.shape[:1])}, got {tuple(speaker.shape)}"
            )
        if speaker.numel() and (speaker.min() < 0 or speaker.max() >= self.num_speakers):
            raise ValueError(
                f"SpeechQueriedAttention: speaker ids must lie in [0, {self.num_speakers}), got {speaker.tolist()}"
            )
        x = self.motion_projection(self.motion_mlp(self.motion_encoder(motion)))
        x = self.positional_encoding(x + rearrange(self.speaker_embedding(speaker), "b d -> b 1 d"))
        return self.key_encoder(x)

    def speech_queries(self, speech: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """part -> c_p (B, T, speech_dim) -> queries (P, B, T, d_model), parts in ``self.parts`` order."""
        missing = set(self.parts) - set(speech)
        if missing:
            raise ValueError(f"SpeechQueriedAttention: speech features missing for parts {sorted(missing)}")
        return self.query_projection(torch.stack([speech[part] for part in self.parts]))

    def attend(self, queries: torch.Tensor, keys: torch.Tensor) -> SQAOutput:
        """queries (P, B, T_query, d), keys (B, T_key, d) -> SQAOutput (scores over the key frames)."""
        num_parts = queries.shape[0]
        if num_parts != len(self.parts):
            raise ValueError(f"SpeechQueriedAttention: expected queries for {len(self.parts)} parts, got {num_parts}")
        memory = keys.repeat(num_parts, 1, 1)
        output, weights = self.decoder(rearrange(queries, "p b t d -> (p b) t d"), memory)
        # weights: (layers, P·B, heads, T_query, T_key) -> per part, layer/head average
        attention = reduce(weights, "l (p b) h q k -> p b q k", "mean", p=num_parts)
        part_weights = self.part_weights()
        part_scores = reduce(attention, "p b q k -> p b k", "mean")
        output = rearrange(output, "(p b) t d -> p b t d", p=num_parts)
        return SQAOutput(
            scores=torch.einsum("p,pbk->bk", part_weights, part_scores),
            part_scores=part_scores,
            attention=torch.einsum("p,pbqk->bqk", part_weights, attention),
            injection=torch.einsum("p,pbtd->btd", part_weights, output),
        )

    def forward(self, motion: torch.Tensor, speaker: torch.Tensor, speech: Mapping[str, torch.Tensor]) -> SQAOutput:
        return self.attend(self.speech_queries(speech), self.motion_keys(motion, speaker))
