"""Global translation model (SPEC §5.3).

A small non-quantised conv autoencoder (the encoder/decoder of `conv_vqvae`) that reads the
lower-body stream with its translation and contact channels zeroed and predicts the
translation in the velocity representation: x/z velocity (metres per frame) and absolute y.
At inference its integrated output replaces the lower RVQ's translation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from echomask.models.conv_vqvae import ConvDecoder, ConvEncoder
from echomask.motion.parts import CONTACT_DIM, PART_DIMS, TRANS_DIM

# Layout of the lower-body stream (SPEC §4.2): 9 joints in 6D (54), translation (3), contact (4).
LOWER_DIM = PART_DIMS["lower"]
LOWER_TRANSLATION = slice(LOWER_DIM - CONTACT_DIM - TRANS_DIM, LOWER_DIM - CONTACT_DIM)
LOWER_CONTACT = slice(LOWER_DIM - CONTACT_DIM, LOWER_DIM)

HORIZONTAL_AXES = [0, 2]  # x and z; y (index 1) is up


def _check_translation(trans: torch.Tensor, name: str) -> None:
    if trans.ndim != 3 or trans.shape[-1] != 3 or trans.shape[1] == 0:
        raise ValueError(f"{name} must have shape (B, T, 3) with T > 0, got {tuple(trans.shape)}")


def translation_to_velocity_representation(trans: torch.Tensor) -> torch.Tensor:
    """Absolute translation (B, T, 3) -> (B, T, 3): [x velocity, absolute y, z velocity].

    Velocities are per frame, v[t] = trans[t] - trans[t-1], and v[0] = 0.
    """
    _check_translation(trans, "trans")
    representation = trans.clone()
    horizontal = trans[..., HORIZONTAL_AXES]
    velocity = torch.zeros_like(horizontal)
    velocity[:, 1:] = horizontal[:, 1:] - horizontal[:, :-1]
    representation[..., HORIZONTAL_AXES] = velocity
    return representation


def integrate_translation(representation: torch.Tensor, start_xz: torch.Tensor) -> torch.Tensor:
    """Inverse of `translation_to_velocity_representation`.

    Args:
        representation: (B, T, 3) [x velocity, absolute y, z velocity].
        start_xz: (B, 2) x and z of frame 0 (the x/z velocity of frame 0 is ignored).
    Returns:
        trans: (B, T, 3) absolute translation.
    """
    _check_translation(representation, "representation")
    if start_xz.shape != (representation.shape[0], 2):
        raise ValueError(f"start_xz must have shape ({representation.shape[0]}, 2), got {tuple(start_xz.shape)}")
    velocity = representation[..., HORIZONTAL_AXES].clone()
    velocity[:, 0] = 0.0  # frame 0 sits at start_xz whatever velocity was predicted for it
    trans = representation.clone()
    trans[..., HORIZONTAL_AXES] = torch.cumsum(velocity, dim=1) + start_xz.unsqueeze(1).to(velocity.dtype)
    return trans


def mask_translation_and_contact(lower: torch.Tensor) -> torch.Tensor:
    """Copy of the lower-body stream (B, T, 61) with translation and contact channels set to 0."""
    if lower.ndim != 3 or lower.shape[-1] != LOWER_DIM:
        raise ValueError(f"the lower-body stream must have shape (B, T, {LOWER_DIM}), got {tuple(lower.shape)}")
    masked = lower.clone()
    masked[..., LOWER_TRANSLATION] = 0.0
    masked[..., LOWER_CONTACT] = 0.0
    return masked


class TranslationModel(nn.Module):
    """Lower-body stream (B, T, 61) -> translation velocity representation (B, T, 3).

    Args:
        width: channels of the convolutions.
        depth: down/upsampling stages (T must be a multiple of 2**depth).
        latent_dim: channels of the bottleneck.
        dilations: dilations of the encoder's residual stack (the decoder uses them reversed).
    """

    def __init__(
        self,
        width: int = 256,  # the stage-1 conv width (SPEC §5.1)
        depth: int = 2,
        latent_dim: int = 256,
        dilations: Sequence[int] = (1, 3, 9),
    ) -> None:
        super().__init__()
        self.encoder = ConvEncoder(
            input_dim=LOWER_DIM,
            output_dim=latent_dim,
            width=width,
            depth=depth,
            dilations=dilations,
        )
        self.decoder = ConvDecoder(
            output_dim=3,
            input_dim=latent_dim,
            width=width,
            depth=depth,
            dilations=tuple(reversed(dilations)),
        )

    def forward(self, lower: torch.Tensor) -> torch.Tensor:
        """Predict [x velocity, absolute y, z velocity] (B, T, 3); translation/contact inputs are ignored."""
        return self.decoder(self.encoder(mask_translation_and_contact(lower)))

    def predict_translation(self, lower: torch.Tensor, start_xz: torch.Tensor) -> torch.Tensor:
        """Absolute translation (B, T, 3) from the lower-body stream (B, T, 61) and start x/z (B, 2)."""
        return integrate_translation(self(lower), start_xz)
