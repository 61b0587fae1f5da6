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

- the speech injection (B, T, d) = (1/P) Σ_p w_p · decoder_p, added to the body stream (:meth:`forward`);
- the frame scores (B, T_key) = (1/P) Σ_p w_p · (cross-attention received by each key frame, averaged over
  decoder layers, heads and query positions) (:meth:`frame_scores`; it stops after the last layer's attention
  weights). The weights are raw, so scores can be negative.

The queries depend only on the speech: :meth:`queries` computes them once (the projections and the first decoder
layer's self-attention block), and passes A and C of a training step both read them (the EMA copy that scores
frames has its own weights and computes its own). The keys are projected once per call for all layers and read by
all parts (memory rows tile over the ``(p b)`` query rows, models/attention.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from einops import rearrange, reduce
from torch import nn

from echomask.models.attention import Decoder

SQA_QUERY_PARTS = ("hands", "upper", "lower")  # the release's order


@dataclass
class SQAOutput:
    """injection (B, T_query, d): the part-weighted decoder output."""

    injection: torch.Tensor


class SpeechQueriedAttention(nn.Module):
    """queries(speech: part -> c_p (B, T, speech_dim)) -> (P, B, T, d); forward(keys (B, T, d), queries) ->
    :class:`SQAOutput`; frame_scores(keys, queries) -> (B, T)."""

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
        self.decoder = Decoder(d_model, num_heads, dim_feedforward, num_layers, dropout)
        self.part_weights = nn.Parameter(torch.full((len(self.parts),), initial_part_weight))

    def queries(self, speech: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """part -> c_p (B, T, speech_dim) -> (P, B, T, d): projected, through the first layer's self-attention."""
        missing = sorted(set(self.parts) - set(speech))
        if missing:
            raise ValueError(f"SpeechQueriedAttention: speech features missing for parts {missing}")
        projected = torch.stack([self.query_projections[part](speech[part]) for part in self.parts])
        first = self.decoder.layers[0].self_block(rearrange(projected, "p b t d -> (p b) t d"))
        return rearrange(first, "(p b) t d -> p b t d", p=len(self.parts))

    def _check(self, keys: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """Checks keys (B, T_k, d) and queries (P, B, T, d); returns the queries as (P·B, T, d), rows ``(p b)``."""
        if keys.ndim != 3 or keys.shape[-1] != self.d_model:
            raise ValueError(f"SpeechQueriedAttention: keys must be (B, T, {self.d_model}), got {tuple(keys.shape)}")
        if queries.ndim != 4 or queries.shape[:2] != (len(self.parts), keys.shape[0]):
            raise ValueError(
                f"SpeechQueriedAttention: queries must be ({len(self.parts)}, {keys.shape[0]}, T, {self.d_model}) "
                f"(from .queries), got {tuple(queries.shape)}"
            )
        return rearrange(queries, "p b t d -> (p b) t d")

    def forward(self, keys: torch.Tensor, queries: torch.Tensor) -> SQAOutput:
        """keys (B, T_k, d), queries (P, B, T, d) from :meth:`queries` -> the injection (B, T, d)."""
        stacked = self._check(keys, queries)
        output = self.decoder(stacked, kv=self.decoder.memory_kv(keys), self_attended=True)
        output = rearrange(output, "(p b) t d -> p b t d", p=len(self.parts))
        return SQAOutput(injection=torch.einsum("p,pbtd->btd", self.part_weights, output) / len(self.parts))

    def frame_scores(self, keys: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """keys (B, T_k, d), queries (P, B, T, d) -> (B, T_k) frame scores (module docstring)."""
        stacked = self._check(keys, queries)
        weights = self.decoder.cross_attention_weights(stacked, kv=self.decoder.memory_kv(keys), self_attended=True)
        received = reduce(weights, "l (p b) h q k -> p b k", "mean", p=len(self.parts))
        return torch.einsum("p,pbk->bk", self.part_weights, received) / len(self.parts)
