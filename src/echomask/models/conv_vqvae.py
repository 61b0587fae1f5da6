"""Convolutional residual-VQ autoencoder for one body part (SPEC §5.1).

Shapes use (B, T, D) at the public surface (batch, frames, features); the convolutions work
on (B, C, T) inside. With `depth` downsampling stages, T frames become T / 2**depth tokens
(paper: depth 2, 64 frames -> 16 tokens).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import nn

from echomask.models.residual_vq import ResidualVQ


def check_motion_input(x: torch.Tensor, feature_dim: int, depth: int, name: str) -> None:
    """Raise a ValueError unless `x` is (B, T, feature_dim) with T a positive multiple of 2**depth."""
    if x.ndim != 3 or x.shape[-1] != feature_dim:
        raise ValueError(f"{name} expects input of shape (B, T, {feature_dim}), got {tuple(x.shape)}")
    frames_per_token = 2**depth
    num_frames = x.shape[1]
    if num_frames == 0 or num_frames % frames_per_token:
        raise ValueError(
            f"{name}: the number of frames T={num_frames} must be a positive multiple of "
            f"{frames_per_token} (= 2**depth, the downsampling factor)"
        )


class DilatedResidualBlock(nn.Module):
    """x + Conv1x1(ReLU(Conv_k3_dilated(ReLU(x)))) on (B, C, T); length preserved."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel_size=3, dilation=dilation, padding=dilation),
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def dilated_stack(channels: int, dilations: Sequence[int]) -> nn.Sequential:
    """One `DilatedResidualBlock` per dilation, in order."""
    return nn.Sequential(*(DilatedResidualBlock(channels, dilation) for dilation in dilations))


class ConvEncoder(nn.Module):
    """(B, T, input_dim) -> (B, T / 2**depth, output_dim).

    Conv1d(input_dim, width, 3) + ReLU, then `depth` x [Conv1d(width, width, k4, s2, p1) +
    dilated residual stack], then Conv1d(width, output_dim, 3).
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int = 256,  # paper: code dim 256
        width: int = 256,  # paper
        depth: int = 2,  # paper: x4 downsampling
        dilations: Sequence[int] = (1, 3, 9),  # paper
    ) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.depth = depth
        stages: list[nn.Module] = [nn.Conv1d(input_dim, width, kernel_size=3, padding=1), nn.ReLU()]
        for _ in range(depth):
            stages.append(nn.Conv1d(width, width, kernel_size=4, stride=2, padding=1))
            stages.append(dilated_stack(width, dilations))
        stages.append(nn.Conv1d(width, output_dim, kernel_size=3, padding=1))
        self.layers = nn.Sequential(*stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_motion_input(x, self.input_dim, self.depth, type(self).__name__)
        return rearrange(self.layers(rearrange(x, "b t d -> b d t")), "b c n -> b n c")


class ConvDecoder(nn.Module):
    """(B, N, input_dim) -> (B, N * 2**depth, output_dim), the mirror of `ConvEncoder`.

    Conv1d(input_dim, width, 3) + ReLU, then `depth` x [dilated residual stack (dilations
    reversed) + nearest x2 upsampling + Conv1d(width, width, 3)], then Conv1d(width, width, 3)
    + ReLU and Conv1d(width, output_dim, 3).
    """

    def __init__(
        self,
        output_dim: int,
        input_dim: int = 256,  # paper: code dim 256
        width: int = 256,  # paper
        depth: int = 2,  # paper: x4 upsampling
        dilations: Sequence[int] = (9, 3, 1),  # paper: the encoder's, reversed
    ) -> None:
        super().__init__()
        self.input_dim = input_dim
        stages: list[nn.Module] = [nn.Conv1d(input_dim, width, kernel_size=3, padding=1), nn.ReLU()]
        for _ in range(depth):
            stages.append(dilated_stack(width, dilations))
            stages.append(nn.Upsample(scale_factor=2, mode="nearest"))
            stages.append(nn.Conv1d(width, width, kernel_size=3, padding=1))
        stages += [
            nn.Conv1d(width, width, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv1d(width, output_dim, kernel_size=3, padding=1),
        ]
        self.layers = nn.Sequential(*stages)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        if latents.ndim != 3 or latents.shape[-1] != self.input_dim or latents.shape[1] == 0:
            raise ValueError(
                f"{type(self).__name__} expects latents of shape (B, N, {self.input_dim}) with N > 0, "
                f"got {tuple(latents.shape)}"
            )
        return rearrange(self.layers(rearrange(latents, "b n c -> b c n")), "b d t -> b t d")


class RVQVAE(nn.Module):
    """Per-part motion tokenizer: ConvEncoder -> ResidualVQ -> ConvDecoder (SPEC §5.1).

    Args:
        input_dim: features per frame of the part stream (face 106, upper 78, hands 180, lower 61).
        width: channels of the convolutions.
        depth: downsampling stages; T frames give T / 2**depth tokens.
        dilations: dilations of the encoder's residual stack (the decoder uses them reversed).
        num_quantizers, codebook_size, code_dim, decay, dead_code_threshold, temperature,
            quantizer_dropout: see `ResidualVQ`.
    """

    def __init__(
        self,
        input_dim: int,
        width: int = 256,  # paper
        depth: int = 2,  # paper: 64 frames -> 16 tokens
        dilations: Sequence[int] = (1, 3, 9),  # paper
        num_quantizers: int = 6,  # paper
        codebook_size: int = 256,  # paper
        code_dim: int = 256,  # paper
        decay: float = 0.99,  # paper
        dead_code_threshold: float = 1.0,  # paper
        temperature: float = 0.5,  # paper
        quantizer_dropout: float = 0.2,  # paper
    ) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.depth = depth
        self.encoder = ConvEncoder(
            input_dim=input_dim,
            output_dim=code_dim,
            width=width,
            depth=depth,
            dilations=dilations,
        )
        self.quantizer = ResidualVQ(
            num_quantizers=num_quantizers,
            codebook_size=codebook_size,
            code_dim=code_dim,
            decay=decay,
            dead_code_threshold=dead_code_threshold,
            temperature=temperature,
            quantizer_dropout=quantizer_dropout,
        )
        self.decoder = ConvDecoder(
            output_dim=input_dim,
            input_dim=code_dim,
            width=width,
            depth=depth,
            dilations=tuple(reversed(dilations)),
        )

    @property
    def frames_per_token(self) -> int:
        return 2**self.depth

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | dict[str, torch.Tensor]]:
        """Reconstruct `x` (B, T, D).

        Returns a dict with `recon` (B, T, D), `indices` (B, T/4, L), `commitment` (scalar,
        unweighted) and `stats` (per-layer codebook statistics, see `ResidualVQ.forward`).
        """
        quantized, indices, commitment, stats = self.quantizer(self.encoder(x))
        return {"recon": self.decoder(quantized), "indices": indices, "commitment": commitment, "stats": stats}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Token indices of `x` (B, T, D) -> (B, T/4, L).

        Call it in eval mode: in training mode the quantizer samples codes and updates its
        codebooks exactly as in `forward`.
        """
        _, indices, _, _ = self.quantizer(self.encoder(x))
        return indices

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Motion from token indices (B, N, L) -> (B, N*4, D)."""
        return self.decoder(self.quantizer.codes_from_indices(indices))

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Per-layer code vectors of `indices` (B, N, L) -> (L, B, N, code_dim)."""
        return self.quantizer.indices_to_codes(indices)
