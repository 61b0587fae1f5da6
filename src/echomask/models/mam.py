"""MAM, the motion-audio alignment module (SPEC §6.2).

For every body part p a learnable speech query, repeated over the window, is refined by three
shared transformer-encoder blocks E1, E2, E3 with cross-attention to the low-level speech features
(after E1) and the high-level ones (after E2). The result c_p (B, T, d) is the part's
"motion-aligned speech feature". In training a motion branch runs the part's quantised
ground-truth latent (B, N, d) through the same E1, E2, E3, and two alignment losses pull the
speech features, average-pooled to the token rate, towards these motion tokens:
a frame-level InfoNCE and an MSE through a small MLP (the MSE target is detached, so it cannot
shrink the motion tokens). The release's match classifier (trained on positives only) is left out.

Design notes
- Positional encoding (periodic, SPEC §6.2) is added to the queries, to the speech features
  (otherwise the position-coded queries have no time reference to attend to) and to the motion
  tokens (token index as position).
- With the window's own frames as the only negatives the InfoNCE can be solved by position
  alone; ``batch_negatives=True`` adds the other windows of the batch, which forces content.
- ``attention_window=w`` lets query frame t attend only to speech frames t - w .. t + w (a band
  mask on both cross-attentions); ``None`` is the paper's full attention. Full attention has to
  learn from the positional encodings alone where "now" is; on the miniature budget it never does:
  after 300 steps on the synthetic corpus a linear probe recovers nothing of the speech frame from
  c_p (R² ≤ 0), while with w = 4 it recovers a third of it (R² 0.34), bench/ABLATION.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from echomask.models.alignment import band_mask, pool_to_tokens
from echomask.models.transformer_blocks import PeriodicPositionalEncoding, mlp, transformer_decoder, transformer_encoder

MAM_PARTS = ("face", "hands", "upper", "lower")


def frame_infonce(
    speech_tokens: torch.Tensor,
    motion_tokens: torch.Tensor,
    temperature: float = 0.1,  # SPEC §6.2
    batch_negatives: bool = False,
) -> torch.Tensor:
    """Symmetric frame-level InfoNCE between two (B, N, d) token sequences (scalar).

    Token n of ``speech_tokens`` is the positive of token n of ``motion_tokens`` (cosine
    similarity / temperature). Negatives: the other N − 1 tokens of the same window, or with
    ``batch_negatives`` every other token of the batch. The loss is the mean of the
    speech→motion and motion→speech cross-entropies.
    """
    if speech_tokens.shape != motion_tokens.shape or speech_tokens.ndim != 3:
        raise ValueError(
            "frame_infonce needs two (B, N, d) tensors of the same shape, got "
            f"{tuple(speech_tokens.shape)} and {tuple(motion_tokens.shape)}"
        )
    speech = F.normalize(speech_tokens, dim=-1)
    motion = F.normalize(motion_tokens, dim=-1)
    if batch_negatives:
        speech = rearrange(speech, "b n d -> 1 (b n) d")
        motion = rearrange(motion, "b n d -> 1 (b n) d")
    logits = torch.einsum("bnd,bmd->bnm", speech, motion) / temperature
    targets = repeat(torch.arange(logits.shape[1], device=logits.device), "n -> b n", b=logits.shape[0])
    speech_to_motion = F.cross_entropy(rearrange(logits, "b n m -> (b n) m"), targets.flatten())
    motion_to_speech = F.cross_entropy(rearrange(logits, "b n m -> (b m) n"), targets.flatten())
    return (speech_to_motion + motion_to_speech) / 2


@dataclass
class MAMOutput:
    """speech: part -> c_p (B, T, d). losses: ``"<part>/infonce"``, ``"<part>/mse"`` and ``"total"``
    (the sum of all terms, weighted); empty when no ground-truth latents were given."""

    speech: dict[str, torch.Tensor]
    losses: dict[str, torch.Tensor]


class MotionAudioAlignment(nn.Module):
    """Per-part speech queries refined against low/high speech features (SPEC §6.2).

    forward(low (B, T, d), high (B, T, d), motion_latents: part -> (B, N, d) or None) -> MAMOutput
    with c_p (B, T, d) for every part. T = window frames, N = T / frames_per_token.
    """

    def __init__(
        self,
        parts: Sequence[str] = MAM_PARTS,
        d_model: int = 256,  # SPEC §6.2
        num_heads: int = 4,  # SPEC §6.2
        dim_feedforward: int = 512,  # SPEC §6.2
        layers_per_block: int = 2,  # E1, E2, E3 have 2 layers each (SPEC §6.2)
        frames_per_token: int = 4,  # 64 frames -> 16 RVQ tokens (SPEC §5.1)
        period: int = 64,  # positional-encoding period (SPEC §6.2)
        temperature: float = 0.1,  # InfoNCE temperature (SPEC §6.2)
        batch_negatives: bool = False,  # also use the other windows of the batch as negatives
        attention_window: int | None = None,  # None: full cross-attention (paper); w: frames t-w..t+w only
        infonce_weight: float = 1.0,
        mse_weight: float = 1.0,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if attention_window is not None and attention_window < 0:
            raise ValueError(f"MotionAudioAlignment: attention_window must be None or >= 0, got {attention_window}")
        self.parts = tuple(parts)
        self.d_model = d_model
        self.attention_window = attention_window
        self.frames_per_token = frames_per_token
        self.temperature = temperature
        self.batch_negatives = batch_negatives
        self.infonce_weight = infonce_weight
        self.mse_weight = mse_weight
        self.queries = nn.Parameter(torch.randn(len(self.parts), d_model) * 0.02)
        self.positional_encoding = PeriodicPositionalEncoding(d_model, period)

        def block() -> nn.TransformerEncoder:
            return transformer_encoder(d_model, num_heads, dim_feedforward, layers_per_block, dropout)

        def cross_attention() -> nn.TransformerDecoder:
            return transformer_decoder(d_model, num_heads, dim_feedforward, 1, dropout)

        self.block1, self.block2, self.block3 = block(), block(), block()
        self.attend_low = cross_attention()
        self.attend_high = cross_attention()
        self.speech_to_motion = mlp(d_model, d_model)

    def speech_features(self, low: torch.Tensor, high: torch.Tensor) -> dict[str, torch.Tensor]:
        """Speech branch: low, high (B, T, d) -> part -> c_p (B, T, d). All parts run as one batch."""
        if low.shape != high.shape or low.ndim != 3 or low.shape[-1] != self.d_model:
            raise ValueError(
                f"MotionAudioAlignment expects low and high speech features of shape (B, T, {self.d_model}), "
                f"got {tuple(low.shape)} and {tuple(high.shape)}"
            )
        batch, frames, _ = low.shape
        num_parts = len(self.parts)
        queries = repeat(self.queries, "p d -> (p b) t d", b=batch, t=frames)
        low = repeat(self.positional_encoding(low), "b t d -> (p b) t d", p=num_parts)
        high = repeat(self.positional_encoding(high), "b t d -> (p b) t d", p=num_parts)
        band = None if self.attention_window is None else band_mask(frames, self.attention_window, low.device)
        x = self.block1(self.positional_encoding(queries))
        x = self.block2(self.attend_low(x, low, memory_mask=band))
        x = self.block3(self.attend_high(x, high, memory_mask=band))
        per_part = rearrange(x, "(p b) t d -> p b t d", p=num_parts)
        return dict(zip(self.parts, per_part))

    def motion_tokens(self, latent: torch.Tensor) -> torch.Tensor:
        """Motion branch: quantised latent (B, N, d) + PE through E1, E2, E3 -> (B, N, d)."""
        return self.block3(self.block2(self.block1(self.positional_encoding(latent))))

    def alignment_losses(
        self,
        speech: Mapping[str, torch.Tensor],
        motion_latents: Mapping[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """InfoNCE and MSE per part between pooled c_p and the motion branch's tokens, plus "total"."""
        missing = set(self.parts) - set(motion_latents)
        if missing:
            raise ValueError(f"MotionAudioAlignment: motion latents missing for parts {sorted(missing)}")
        losses: dict[str, torch.Tensor] = {}
        for part in self.parts:
            latent = motion_latents[part]
            expected = (speech[part].shape[0], speech[part].shape[1] // self.frames_per_token, self.d_model)
            if tuple(latent.shape) != expected:
                raise ValueError(
                    f"MotionAudioAlignment: the {part} latent must be {expected}, got {tuple(latent.shape)}"
                )
            motion = self.motion_tokens(latent)
            pooled = pool_to_tokens(speech[part], latent.shape[1])
            losses[f"{part}/infonce"] = frame_infonce(pooled, motion, self.temperature, self.batch_negatives)
            losses[f"{part}/mse"] = F.mse_loss(self.speech_to_motion(pooled), motion.detach())
        losses["total"] = sum(
            self.infonce_weight * losses[f"{part}/infonce"] + self.mse_weight * losses[f"{part}/mse"]
            for part in self.parts
        )
        return losses

    def forward(
        self,
        low: torch.Tensor,
        high: torch.Tensor,
        motion_latents: Mapping[str, torch.Tensor] | None = None,
    ) -> MAMOutput:
        speech = self.speech_features(low, high)
        losses = {} if motion_latents is None else self.alignment_losses(speech, motion_latents)
        return MAMOutput(speech=speech, losses=losses)
