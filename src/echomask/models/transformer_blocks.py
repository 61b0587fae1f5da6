"""Shared building blocks of the stage-2 networks (SPEC §6): positional encoding, transformer
stacks, an attention decoder that returns its cross-attention weights, MLPs and the conv motion
encoder.

All sequence tensors are batch-first: ``(B, T, D)`` = (batch, time steps, features).
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn

from echomask.models.part_stack import Linear


def periodic_sinusoid(positions: torch.Tensor, dim: int, period: int = 64) -> torch.Tensor:
    """Sinusoidal encoding of ``positions`` taken modulo ``period`` (SPEC §6.2: period 64).

    positions: (T,) integer time steps. Returns (T, dim) float32 with the usual layout
    ``[sin(p·f_0), cos(p·f_0), sin(p·f_1), ...]``, f_i = 10000^(−2i/dim), p = position mod period.
    """
    if dim % 2:
        raise ValueError(f"periodic_sinusoid needs an even feature size, got dim={dim}")
    if period < 1:
        raise ValueError(f"periodic_sinusoid needs a positive period, got {period}")
    phase = (positions % period).to(torch.float32)
    frequencies = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    angles = phase[:, None] * frequencies[None, :]
    return rearrange(torch.stack([angles.sin(), angles.cos()], dim=-1), "t f two -> t (f two)")


MAX_CACHED_TABLES = 8  # encodings kept per PeriodicPositionalEncoding (one per window length and device)


class PeriodicPositionalEncoding(nn.Module):
    """Adds :func:`periodic_sinusoid` to a ``(B, T, dim)`` sequence (any T; the encoding repeats every ``period``
    steps), then dropout (the release applies dropout 0.1 to every encoded sequence; 0 turns it off). The encoding
    is computed on the fly (no buffer), on the input's device."""

    def __init__(self, dim: int, period: int = 64, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % 2 or period < 1:
            raise ValueError(f"PeriodicPositionalEncoding needs an even dim and a positive period, got {dim}, {period}")
        self.dim = dim
        self.period = period
        self.dropout = nn.Dropout(dropout)
        self._tables: dict[tuple[int, str], torch.Tensor] = {}

    def extra_repr(self) -> str:
        return f"dim={self.dim}, period={self.period}"

    def encoding(self, length: int, device: torch.device | None = None) -> torch.Tensor:
        """(length, dim): the encoding of time steps 0 … length − 1."""
        key = (length, str(device))
        if key not in self._tables:
            if len(self._tables) >= MAX_CACHED_TABLES:
                self._tables.clear()
            self._tables[key] = periodic_sinusoid(torch.arange(length, device=device), self.dim, self.period)
        return self._tables[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim < 3 or x.shape[-1] != self.dim:
            raise ValueError(f"PeriodicPositionalEncoding expects (..., B, T, {self.dim}), got {tuple(x.shape)}")
        return self.dropout(x + self.encoding(x.shape[-2], x.device).to(x.dtype))


def transformer_encoder(
    d_model: int,
    num_heads: int,
    dim_feedforward: int,
    num_layers: int,
    dropout: float,
) -> nn.TransformerEncoder:
    """A batch-first ``nn.TransformerEncoder`` of ``num_layers`` post-norm layers."""
    layer = nn.TransformerEncoderLayer(
        d_model=d_model,
        nhead=num_heads,
        dim_feedforward=dim_feedforward,
        dropout=dropout,
        batch_first=True,
    )
    return nn.TransformerEncoder(layer, num_layers=num_layers, enable_nested_tensor=False)


def transformer_decoder(
    d_model: int,
    num_heads: int,
    dim_feedforward: int,
    num_layers: int,
    dropout: float,
) -> nn.TransformerDecoder:
    """A batch-first ``nn.TransformerDecoder`` of ``num_layers`` post-norm layers."""
    layer = nn.TransformerDecoderLayer(
        d_model=d_model,
        nhead=num_heads,
        dim_feedforward=dim_feedforward,
        dropout=dropout,
        batch_first=True,
    )
    return nn.TransformerDecoder(layer, num_layers=num_layers)


class AttentionDecoderLayer(nn.Module):
    """A post-norm transformer decoder layer (same maths as ``nn.TransformerDecoderLayer`` with
    ReLU) that also returns its per-head cross-attention weights.

    forward(target (B, Tq, d), memory (B, Tk, d)) -> (output (B, Tq, d), weights (B, H, Tq, Tk));
    every row ``weights[b, h, q, :]`` is a softmax over the memory steps (sums to 1).
    """

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)
        self.feedforward = nn.Sequential(
            nn.Linear(d_model, dim_feedforward),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(dim_feedforward, d_model),
        )
        self.norm_self = nn.LayerNorm(d_model)
        self.norm_cross = nn.LayerNorm(d_model)
        self.norm_feedforward = nn.LayerNorm(d_model)
        self.dropout_self = nn.Dropout(dropout)
        self.dropout_cross = nn.Dropout(dropout)
        self.dropout_feedforward = nn.Dropout(dropout)

    def forward(
        self, target: torch.Tensor, memory: torch.Tensor, need_weights: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``need_weights=False`` skips the weights (None) and lets torch use its fused attention."""
        attended, _ = self.self_attn(target, target, target, need_weights=False)
        x = self.norm_self(target + self.dropout_self(attended))
        attended, weights = self.cross_attn(
            x, memory, memory, need_weights=need_weights, average_attn_weights=False
        )
        x = self.norm_cross(x + self.dropout_cross(attended))
        x = self.norm_feedforward(x + self.dropout_feedforward(self.feedforward(x)))
        return x, weights


class AttentionDecoder(nn.Module):
    """A stack of :class:`AttentionDecoderLayer`.

    forward(target (B, Tq, d), memory (B, Tk, d)) -> (output (B, Tq, d), weights (L, B, H, Tq, Tk)),
    the cross-attention weights of every layer L and head H.
    """

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            AttentionDecoderLayer(d_model, num_heads, dim_feedforward, dropout) for _ in range(num_layers)
        )

    def forward(
        self, target: torch.Tensor, memory: torch.Tensor, need_weights: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``need_weights=False``: (output, None), without computing the attention weights."""
        x = target
        all_weights = []
        for layer in self.layers:
            x, weights = layer(x, memory, need_weights)
            all_weights.append(weights)
        return x, torch.stack(all_weights) if need_weights else None


def mlp(in_dim: int, out_dim: int, hidden_dim: int | None = None) -> nn.Sequential:
    """Linear → LeakyReLU(0.2) → Linear on the last axis; the hidden size defaults to ``out_dim``. (The linears
    are ``nn.Linear`` s that also run with stacked weights, models/part_stack.py.)"""
    hidden_dim = out_dim if hidden_dim is None else hidden_dim
    return nn.Sequential(Linear(in_dim, hidden_dim), nn.LeakyReLU(0.2), Linear(hidden_dim, out_dim))


class MotionEncoder(nn.Module):
    """Frame-wise conv encoder of a motion window, no downsampling (SPEC §6.3: 3 blocks, width 256).

    Block 0 is Conv1d(in_dim → width, k3) + LeakyReLU; later blocks are residual
    ``x + LeakyReLU(Conv1d(width → width, k3)(x))``. (B, T, in_dim) -> (B, T, width).
    """

    def __init__(self, in_dim: int, width: int, num_blocks: int) -> None:
        super().__init__()
        if num_blocks < 1:
            raise ValueError(f"MotionEncoder needs at least one block, got num_blocks={num_blocks}")
        self.in_dim = in_dim
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv1d(in_dim if index == 0 else width, width, kernel_size=3, padding=1),
                nn.LeakyReLU(0.2),
            )
            for index in range(num_blocks)
        )

    def forward(self, motion: torch.Tensor) -> torch.Tensor:
        if motion.ndim != 3 or motion.shape[-1] != self.in_dim:
            raise ValueError(f"MotionEncoder expects (B, T, {self.in_dim}), got {tuple(motion.shape)}")
        x = rearrange(motion, "b t d -> b d t")
        x = self.blocks[0](x)
        for block in self.blocks[1:]:
            x = x + block(x)
        return rearrange(x, "b d t -> b t d")


class TemporalDownsample(nn.Module):
    """Conv1d with kernel = stride = ``factor``: each output step sees exactly its ``factor`` input
    steps (the frames one RVQ token covers). (B, T, in_dim) -> (B, T / factor, out_dim)."""

    def __init__(self, in_dim: int, out_dim: int, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.conv = nn.Conv1d(in_dim, out_dim, kernel_size=factor, stride=factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] % self.factor:
            raise ValueError(
                f"TemporalDownsample: {x.shape[1]} time steps are not a multiple of the factor {self.factor}"
            )
        return rearrange(self.conv(rearrange(x, "b t d -> b d t")), "b d t -> b t d")


class ResidualConvBlock(nn.Module):
    """Conv1d(k3) → LeakyReLU(0.2), then a residual ``x + Conv1d(LeakyReLU(Conv1d(x)))`` (k3 each), all on
    ``(B, channels, T)``; no downsampling. One block of the release's ``VQEncoderV6``."""

    def __init__(self, in_dim: int, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_dim, width, kernel_size=3, padding=1)
        self.activation = nn.LeakyReLU(0.2)
        self.residual = nn.Sequential(
            nn.Conv1d(width, width, kernel_size=3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv1d(width, width, kernel_size=3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activation(self.conv(x))
        return x + self.residual(x)


class ResidualConvEncoder(nn.Module):
    """Frame-wise conv encoder of a motion window (the release's ``VQEncoderV6`` with 3 blocks: 9 convs, U12).

    ``num_blocks`` :class:`ResidualConvBlock` s, width ``width``, no downsampling; every conv starts from
    Xavier-normal weights and zero biases as in the release. (B, T, in_dim) -> (B, T, width).
    """

    def __init__(self, in_dim: int, width: int, num_blocks: int) -> None:
        super().__init__()
        if num_blocks < 1:
            raise ValueError(f"ResidualConvEncoder needs at least one block, got num_blocks={num_blocks}")
        self.in_dim = in_dim
        self.blocks = nn.Sequential(
            *(ResidualConvBlock(in_dim if index == 0 else width, width) for index in range(num_blocks))
        )
        for module in self.modules():
            if isinstance(module, nn.Conv1d):
                nn.init.xavier_normal_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, motion: torch.Tensor) -> torch.Tensor:
        if motion.ndim != 3 or motion.shape[-1] != self.in_dim:
            raise ValueError(f"ResidualConvEncoder expects (B, T, {self.in_dim}), got {tuple(motion.shape)}")
        return rearrange(self.blocks(rearrange(motion, "b t d -> b d t")), "b d t -> b t d")
