"""SQA, the speech-queried attention of the released EchoMask (SPEC §6.3, issue 15 U4/U5).

The release's ``mask_generator`` with the query projections the release keeps beside it
(``audio_feature2motion_<part>``):

- keys: the generator's OWN body stream (B, T, d) + periodic PE (built by :class:`MaskedGenerator`, which
  shares its weights: no separate key path, U4);
- queries, per part p in hands, upper, lower: ``Linear_p(c_p)`` (B, T, d), one projection per part (U5);
- one 8-layer attention decoder (d 768, 4 heads, feed-forward 2048, U5) run with the queries as target and the
  keys as memory, once per part (all parts as one batch);
- part weights w_p: raw learnable numbers, initialised to 0.33 (not normalised, U5).

Outputs:

- the speech injection (B, T, d) = (1/P) Σ_p w_p · decoder_p, added to the body stream;
- the frame scores (B, T_key) = (1/P) Σ_p w_p · (cross-attention received by each key frame, averaged over
  decoder layers, heads and query positions). The weights are raw, so scores can be negative.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from einops import rearrange, reduce, repeat
from torch import nn

from echomask.models.transformer_blocks import AttentionDecoder

SQA_QUERY_PARTS = ("hands", "upper", "lower")  # the release's order


@dataclass
class SQAOutput:
    """injection (B, T_query, d): the part-weighted decoder output. scores (B, T_key) or None: the part-weighted
    attention each key frame receives (only when asked for)."""

    injection: torch.Tensor
    scores: torch.Tensor | None


class SpeechQueriedAttention(nn.Module):
    """forward(keys (B, T, d), speech: part -> c_p (B, T, speech_dim), need_scores) -> :class:`SQAOutput`."""

    def __init__(
        self,
        speech_dim: int = 256,  # c_p size (release: audio_f)
        d_model: int = 768,  # release: hidden_size
        num_heads: int = 4,  # release
        dim_feedforward: int = 2048,  # release (torch's default feed-forward size)
        num_layers: int = 8,  # release
        parts: Sequence[str] = SQA_QUERY_PARTS,
        initial_part_weight: float = 0.33,  # release
        dropout: float = 0.1,  # release
    ) -> None:
        super().__init__()
        self.parts = tuple(parts)
        self.d_model = d_model
        self.query_projections = nn.ModuleDict({part: nn.Linear(speech_dim, d_model) for part in self.parts})
        self.decoder = AttentionDecoder(d_model, num_heads, dim_feedforward, num_layers, dropout)
        self.part_weights = nn.Parameter(torch.full((len(self.parts),), initial_part_weight))

    def forward(
        self,
        keys: torch.Tensor,
        speech: Mapping[str, torch.Tensor],
        need_scores: bool = False,
    ) -> SQAOutput:
        missing = sorted(set(self.parts) - set(speech))
        if missing:
            raise ValueError(f"SpeechQueriedAttention: speech features missing for parts {missing}")
        if keys.ndim != 3 or keys.shape[-1] != self.d_model:
            raise ValueError(f"SpeechQueriedAttention: keys must be (B, T, {self.d_model}), got {tuple(keys.shape)}")
        num_parts = len(self.parts)
        queries = torch.stack([self.query_projections[part](speech[part]) for part in self.parts])
        memory = repeat(keys, "b t d -> (p b) t d", p=num_parts)
        output, weights = self.decoder(rearrange(queries, "p b t d -> (p b) t d"), memory, need_scores)
        output = rearrange(output, "(p b) t d -> p b t d", p=num_parts)
        injection = torch.einsum("p,pbtd->btd", self.part_weights, output) / num_parts
        scores = None
        if need_scores:  # weights: (layers, P·B, heads, T_query, T_key)
            received = reduce(weights, "l (p b) h q k -> p b k", "mean", p=num_parts)
            scores = torch.einsum("p,pbk->bk", self.part_weights, received) / num_parts
        return SQAOutput(injection=injection, scores=scores)
