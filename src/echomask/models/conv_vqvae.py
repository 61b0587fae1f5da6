"""Convolutional residual-VQ autoencoder for one body part (SPEC §5.1): the release's `RVQVAE`.

Shapes use (B, T, D) at the public surface (batch, frames, features); the convolutions work
on (B, C, T) inside. With `depth` downsampling stages, T frames become T / 2**depth tokens
(paper: depth 2, 64 frames -> 16 tokens).

Layout (the release's `models/rvq.py` with `encdec.py` and `resnet.py`; `echomask.official.stage1`
maps its tensor names onto these):

    encoder.layers = [Conv1d(D, w, 3), ReLU,
                      depth x Sequential(Conv1d(w, w, 4, stride 2), dilated stack),
                      Conv1d(w, code_dim, 3)]
    decoder.layers = [Conv1d(code_dim, w, 3), ReLU,
                      depth x Sequential(dilated stack, Upsample x2 nearest, Conv1d(w, w, 3)),
                      Conv1d(w, w, 3), ReLU, Conv1d(w, D, 3)]

A dilated stack is one `DilatedResidualBlock` per dilation. The release builds both stacks with
dilations 9, 3, 1 (its `Resnet1D` reverses the growing dilations by default).
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
    """x + Dropout(Conv1x1(ReLU(Conv_k3_dilated(ReLU(x))))) on (B, C, T); length preserved.

    `body` = [ReLU, dilated conv, ReLU, 1x1 conv, Dropout] (the release's `ResConv1DBlock`: conv1, conv2).
    """

    def __init__(self, channels: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel_size=3, dilation=dilation, padding=dilation),
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel_size=1),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def dilated_stack(channels: int, dilations: Sequence[int], dropout: float) -> nn.Sequential:
    """One `DilatedResidualBlock` per dilation, in order."""
    return nn.Sequential(*(DilatedResidualBlock(channels, dilation, dropout) for dilation in dilations))


class ConvEncoder(nn.Module):
    """(B, T, input_dim) -> (B, T / 2**depth, output_dim) (the release's `Encoder`)."""

    def __init__(
        self,
        input_dim: int,
        output_dim: int = 256,  # release: code dim 256
        width: int = 256,  # release
        depth: int = 2,  # release: x4 downsampling
        dilations: Sequence[int] = (9, 3, 1),  # release: Resnet1D reverses 1, 3, 9
        dropout: float = 0.2,  # release: ResConv1DBlock's dropout
    ) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.depth = depth
        downsampling = (
            nn.Sequential(nn.Conv1d(width, width, kernel_size=4, stride=2, padding=1), dilated_stack(width, dilations, dropout))
            for _ in range(depth)
        )
        self.layers = nn.Sequential(
            nn.Conv1d(input_dim, width, kernel_size=3, padding=1),
            nn.ReLU(),
            *downsampling,
            nn.Conv1d(width, output_dim, kernel_size=3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_motion_input(x, self.input_dim, self.depth, type(self).__name__)
        return rearrange(self.layers(rearrange(x, "b t d -> b d t")), "b c n -> b n c")


class ConvDecoder(nn.Module):
    """(B, N, input_dim) -> (B, N * 2**depth, output_dim), the mirror of `ConvEncoder` (the release's `Decoder`)."""

    def __init__(
        self,
        output_dim: int,
        input_dim: int = 256,  # release: code dim 256
        width: int = 256,  # release
        depth: int = 2,  # release: x4 upsampling
        dilations: Sequence[int] = (9, 3, 1),  # release: the encoder's
        dropout: float = 0.2,  # release
    ) -> None:
        super().__init__()
        self.input_dim = input_dim
        upsampling = (
            nn.Sequential(
                dilated_stack(width, dilations, dropout),
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv1d(width, width, kernel_size=3, padding=1),
            )
            for _ in range(depth)
        )
        self.layers = nn.Sequential(
            nn.Conv1d(input_dim, width, kernel_size=3, padding=1),
            nn.ReLU(),
            *upsampling,
            nn.Conv1d(width, width, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv1d(width, output_dim, kernel_size=3, padding=1),
        )

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
        encoder_dilations, decoder_dilations: dilations of the residual stacks, block by block.
        dropout: dropout at the end of every residual block (training only).
        num_quantizers, codebook_size, code_dim, decay, dead_code_threshold, temperature,
            quantizer_dropout, straight_through, codebook_rows, dead_code_count: see `ResidualVQ`.
        normalize: z-score every input feature with a stored mean and std (buffers `input_mean`, `input_std`,
            set once with `set_normalization`) before the encoder, and undo it after the decoder, so inputs
            and outputs stay in the part's own units. Off in the release.
    """

    def __init__(
        self,
        input_dim: int,
        width: int = 256,  # release
        depth: int = 2,  # release: 64 frames -> 16 tokens
        encoder_dilations: Sequence[int] = (9, 3, 1),  # release
        decoder_dilations: Sequence[int] = (9, 3, 1),  # release
        dropout: float = 0.2,  # release
        num_quantizers: int = 6,  # release
        codebook_size: int = 256,  # release
        code_dim: int = 256,  # release
        decay: float = 0.99,  # release
        dead_code_threshold: float = 1.0,  # release
        temperature: float = 0.5,  # release
        quantizer_dropout: float = 0.2,  # SPEC §5.1 (off in the release)
        straight_through: str = "per_layer",  # release
        codebook_rows: str = "random",  # echomask; the release: "in_order"
        dead_code_count: str = "reset",  # echomask; the release: "keep"
        normalize: bool = False,  # the release: off
    ) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.depth = depth
        self.normalize = normalize
        if normalize:
            self.register_buffer("input_mean", torch.zeros(input_dim))
            self.register_buffer("input_std", torch.ones(input_dim))
            self.register_buffer("normalization_set", torch.tensor(False))
        self.encoder = ConvEncoder(
            input_dim=input_dim,
            output_dim=code_dim,
            width=width,
            depth=depth,
            dilations=encoder_dilations,
            dropout=dropout,
        )
        self.quantizer = ResidualVQ(
            num_quantizers=num_quantizers,
            codebook_size=codebook_size,
            code_dim=code_dim,
            decay=decay,
            dead_code_threshold=dead_code_threshold,
            temperature=temperature,
            quantizer_dropout=quantizer_dropout,
            straight_through=straight_through,
            codebook_rows=codebook_rows,
            dead_code_count=dead_code_count,
        )
        self.decoder = ConvDecoder(
            output_dim=input_dim,
            input_dim=code_dim,
            width=width,
            depth=depth,
            dilations=decoder_dilations,
            dropout=dropout,
        )

    @property
    def frames_per_token(self) -> int:
        return 2**self.depth

    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store the per-feature mean and std (D,) that `normalize` uses; std must be positive."""
        if not self.normalize:
            raise ValueError("set_normalization: this RVQVAE was built with normalize=False")
        if mean.shape != (self.input_dim,) or std.shape != (self.input_dim,):
            raise ValueError(
                f"set_normalization: mean and std must be ({self.input_dim},), "
                f"got {tuple(mean.shape)}, {tuple(std.shape)}"
            )
        if not (std > 0).all():
            raise ValueError("set_normalization: every std must be positive (floor it)")
        self.input_mean.copy_(mean)
        self.input_std.copy_(std)
        self.normalization_set.fill_(True)

    def _normalized(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.input_mean) / self.input_std if self.normalize else x

    def _denormalized(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.input_std + self.input_mean if self.normalize else x

    def _latents(self, x: torch.Tensor) -> torch.Tensor:
        check_motion_input(x, self.input_dim, self.depth, type(self).__name__)
        return self.encoder(self._normalized(x))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | dict[str, torch.Tensor]]:
        """Reconstruct `x` (B, T, D).

        Returns a dict with `recon` (B, T, D), `indices` (B, T/4, L), `commitment` (scalar,
        unweighted) and `stats` (per-layer codebook statistics, see `ResidualVQ.forward`).
        """
        quantized, indices, commitment, stats = self.quantizer(self._latents(x))
        recon = self._denormalized(self.decoder(quantized))
        return {"recon": recon, "indices": indices, "commitment": commitment, "stats": stats}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Token indices of `x` (B, T, D) -> (B, T/4, L).

        Call it in eval mode: in training mode the quantizer samples codes and updates its
        codebooks exactly as in `forward`.
        """
        _, indices, _, _ = self.quantizer(self._latents(x))
        return indices

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Motion from token indices (B, N, L) -> (B, N*4, D)."""
        return self._denormalized(self.decoder(self.quantizer.codes_from_indices(indices)))

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Per-layer code vectors of `indices` (B, N, L) -> (L, B, N, code_dim)."""
        return self.quantizer.indices_to_codes(indices)
