"""Global translation model (SPEC §5.3): the release's `VAEConvZero` (`models/motion_representation.py`).

A non-quantised convolutional autoencoder without down- or upsampling, 61 features in and out
(the layout of the lower-body stream, SPEC §4.2):

    encoder = [Conv1d(61, w, 3), LeakyReLU, ResBlock] + (layers - 1) x [Conv1d(w, w, 3), LeakyReLU, ResBlock]
    decoder = 2 x ResBlock, (layers - 1) x [Conv1d(w, w, 3), LeakyReLU], Conv1d(w, 61, 3), LeakyReLU,
              Conv1d(61, 61, 3)

(ResBlock = x + Conv(LeakyReLU(Conv(x))), kernel 3; LeakyReLU slope 0.2.) It reads the lower-body stream
with the translation zeroed (and the foot contact zeroed in training) and writes, in the same layout,
the translation in the velocity representation, [x velocity, absolute y, z velocity] with velocities
in metres per second, and the foot contact; its 54 rotation outputs are not used. In training the
target velocities are central differences of the ground truth (`translation_velocity_target`);
positions are integrated forward from a start point (`integrate_translation`), as the release does.

At test time (`predict_translation`) the decoded lower-body stream is fed with its 6D rotations
re-orthonormalised and its translation zeroed; its decoded contact is zeroed too (`test_contact=
"zeroed"`, what the model was trained on) or kept (`"decoded"`, the release's test code).

Integration (`integration`): "velocity" integrates the predicted x/z velocities (the release). Any bias
of the velocities accumulates: a standing speaker slides away. "contact_locked" integrates only the frames
on which no foot is planted: from a frame on which the decoded contact (> 0.5) plants a foot to the next,
the root moves so that the planted feet stay where they are (minus their mean x/z displacement relative
to the root, from the forward kinematics of the decoded lower body on the approximate skeleton). Height is
the predicted y in both.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from echomask.models.motion_autoencoder import ConvResBlock
from echomask.motion.kinematics import ApproximateKinematics
from echomask.motion.parts import CONTACT_DIM, PART_DIMS, PART_JOINTS, ROT6D_DIM, TRANS_DIM
from echomask.motion.rotations import matrix_to_rot6d, rot6d_to_matrix
from echomask.motion.skeleton import FOOT_JOINTS, NUM_JOINTS

# Layout of the lower-body stream (SPEC §4.2): 9 joints in 6D (54), translation (3), contact (4).
LOWER_DIM = PART_DIMS["lower"]
LOWER_ROTATIONS = slice(0, ROT6D_DIM * len(PART_JOINTS["lower"]))
LOWER_TRANSLATION = slice(LOWER_ROTATIONS.stop, LOWER_ROTATIONS.stop + TRANS_DIM)
LOWER_CONTACT = slice(LOWER_TRANSLATION.stop, LOWER_TRANSLATION.stop + CONTACT_DIM)

HORIZONTAL_AXES = [0, 2]  # x and z; y (index 1) is up
TEST_CONTACT = ("zeroed", "decoded")
INTEGRATION = ("velocity", "contact_locked")
PLANTED_CONTACT = 0.5  # decoded contact above which a foot counts as planted (contact_locked integration)
KERNEL_SIZE = 3  # release: every convolution of VAEConvZero
DECODER_RES_BLOCKS = 2  # release: VQDecoderV5's n_resblk


def _check_translation(trans: torch.Tensor, name: str) -> None:
    if trans.ndim != 3 or trans.shape[-1] != 3 or trans.shape[1] < 2:
        raise ValueError(f"{name} must have shape (B, T, 3) with T >= 2, got {tuple(trans.shape)}")


def _check_lower(lower: torch.Tensor) -> None:
    if lower.ndim != 3 or lower.shape[-1] != LOWER_DIM:
        raise ValueError(f"the lower-body stream must have shape (B, T, {LOWER_DIM}), got {tuple(lower.shape)}")


def linear_velocity(positions: torch.Tensor, frame_rate: float) -> torch.Tensor:
    """Per-frame velocity of (B, T, ...) positions in units per second, T >= 2: central differences inside,
    one-sided at the ends (the release's `estimate_linear_velocity`)."""
    step = 1.0 / frame_rate
    return torch.cat(
        [
            (positions[:, 1:2] - positions[:, :1]) / step,
            (positions[:, 2:] - positions[:, :-2]) / (2 * step),
            (positions[:, -1:] - positions[:, -2:-1]) / step,
        ],
        dim=1,
    )


def translation_velocity_target(trans: torch.Tensor, frame_rate: float) -> torch.Tensor:
    """Absolute translation (B, T, 3) -> (B, T, 3) [x velocity, absolute y, z velocity], m/s (`linear_velocity`)."""
    _check_translation(trans, "trans")
    representation = trans.clone()
    representation[..., HORIZONTAL_AXES] = linear_velocity(trans[..., HORIZONTAL_AXES], frame_rate)
    return representation


def integrate_translation(representation: torch.Tensor, start_xz: torch.Tensor, frame_rate: float) -> torch.Tensor:
    """Absolute translation from the velocity representation (the release's `velocity2position`).

    Args:
        representation: (B, T, 3) [x velocity, absolute y, z velocity], m/s.
        start_xz: (B, 2) x and z of frame 0.
        frame_rate: frames per second.
    Returns:
        trans: (B, T, 3); x/z of frame t = start + (v[0] + ... + v[t-1]) / frame_rate, y as given.
    """
    _check_translation(representation, "representation")
    if start_xz.shape != (representation.shape[0], 2):
        raise ValueError(f"start_xz must have shape ({representation.shape[0]}, 2), got {tuple(start_xz.shape)}")
    steps = representation[:, :-1, HORIZONTAL_AXES] / frame_rate
    offsets = torch.cat([torch.zeros_like(steps[:, :1]), torch.cumsum(steps, dim=1)], dim=1)
    trans = representation.clone()
    trans[..., HORIZONTAL_AXES] = offsets + start_xz.unsqueeze(1).to(representation.dtype)
    return trans


def network_input(lower: torch.Tensor, keep_contact: bool = False) -> torch.Tensor:
    """Copy of the lower-body stream (B, T, 61) with the translation zeroed, and the contact unless `keep_contact`."""
    _check_lower(lower)
    masked = lower.clone()
    masked[..., LOWER_TRANSLATION] = 0.0
    if not keep_contact:
        masked[..., LOWER_CONTACT] = 0.0
    return masked


def orthonormal_rotations(lower: torch.Tensor) -> torch.Tensor:
    """Copy of the lower-body stream (B, T, 61) whose 6D rotations are replaced by those of their rotation matrices."""
    rotations = rearrange(lower[..., LOWER_ROTATIONS], "b t (j six) -> b t j six", six=ROT6D_DIM)
    normalised = lower.clone()
    normalised[..., LOWER_ROTATIONS] = rearrange(matrix_to_rot6d(rot6d_to_matrix(rotations)), "b t j six -> b t (j six)")
    return normalised


def lower_body_feet(lower: torch.Tensor, kinematics: ApproximateKinematics) -> torch.Tensor:
    """Ankle and foot positions (B, T, 4, 3) relative to the root translation of a lower-body stream (B, T, 61)
    (its 9 joints rotated, every other joint at rest)."""
    rotations = rot6d_to_matrix(rearrange(lower[..., LOWER_ROTATIONS], "b t (j six) -> b t j six", six=ROT6D_DIM))
    body = torch.eye(3, dtype=lower.dtype, device=lower.device).expand(*lower.shape[:2], NUM_JOINTS, 3, 3).clone()
    body[:, :, list(PART_JOINTS["lower"])] = rotations
    joints = kinematics.to(lower.device).joints_from_rotmats(body, torch.zeros_like(lower[..., LOWER_TRANSLATION]))
    return joints[:, :, list(FOOT_JOINTS)]


def contact_locked_steps(
    lower: torch.Tensor, steps: torch.Tensor, kinematics: ApproximateKinematics, threshold: float = PLANTED_CONTACT
) -> torch.Tensor:
    """Per-frame x/z root steps (B, T-1, 2) that keep planted feet in place.

    Args:
        lower: (B, T, 61) decoded lower-body stream (rotations and contact are read).
        steps: (B, T-1, 2) the x/z steps of the integrated velocities, used where no foot is planted.
        kinematics: the skeleton for the feet.
        threshold: contact above which a foot is planted.
    """
    feet = lower_body_feet(lower, kinematics)[..., HORIZONTAL_AXES]  # (B, T, 4, 2)
    planted = (lower[:, :-1, LOWER_CONTACT] > threshold).to(lower.dtype).unsqueeze(-1)  # (B, T-1, 4, 1)
    count = planted.sum(dim=2)  # (B, T-1, 1)
    slide = ((feet[:, 1:] - feet[:, :-1]) * planted).sum(dim=2) / count.clamp(min=1.0)
    return torch.where(count > 0, -slide, steps)


def _conv(in_channels: int, out_channels: int) -> nn.Conv1d:
    return nn.Conv1d(in_channels, out_channels, KERNEL_SIZE, padding=KERNEL_SIZE // 2)


class TranslationModel(nn.Module):
    """Lower-body stream (B, T, 61) -> (B, T, 61): translation velocity representation and foot contact.

    Args:
        width: channels of the convolutions (release: `vae_length` 256).
        layers: encoder stages and decoder convolutions (release: `vae_layer` 4).
        negative_slope: of every LeakyReLU (release: 0.2).
        frame_rate: frames per second of the velocities (release: 30).
        test_contact: what `predict_translation` does with the decoded contact: "zeroed" (as in training)
            or "decoded" (kept, the release's test code).
        integration: how `predict_translation` turns velocities into positions: "contact_locked" (planted feet
            stay in place) or "velocity" (the release).
    """

    def __init__(
        self,
        width: int = 256,  # release
        layers: int = 4,  # release
        negative_slope: float = 0.2,  # release
        frame_rate: float = 30.0,  # release: pose_fps
        test_contact: str = "zeroed",  # echomask; the release: "decoded"
        integration: str = "contact_locked",  # echomask; the release: "velocity"
    ) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"layers must be at least 1, got {layers}")
        if test_contact not in TEST_CONTACT:
            raise ValueError(f"test_contact must be one of {TEST_CONTACT}, got {test_contact!r}")
        if integration not in INTEGRATION:
            raise ValueError(f"integration must be one of {INTEGRATION}, got {integration!r}")
        self.frame_rate = frame_rate
        self.test_contact = test_contact
        self.integration = integration
        # the feet of contact_locked integration; not a submodule: the release's files hold no skeleton
        object.__setattr__(self, "skeleton", ApproximateKinematics())
        encoder: list[nn.Module] = []
        for stage in range(layers):
            encoder += [
                _conv(LOWER_DIM if stage == 0 else width, width),
                nn.LeakyReLU(negative_slope),
                ConvResBlock(width, KERNEL_SIZE, negative_slope),
            ]
        self.encoder = nn.Sequential(*encoder)
        decoder: list[nn.Module] = [ConvResBlock(width, KERNEL_SIZE, negative_slope) for _ in range(DECODER_RES_BLOCKS)]
        for stage in range(layers):
            decoder += [_conv(width, LOWER_DIM if stage == layers - 1 else width), nn.LeakyReLU(negative_slope)]
        decoder.append(_conv(LOWER_DIM, LOWER_DIM))
        self.decoder = nn.Sequential(*decoder)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The network as it is, (B, T, 61) -> (B, T, 61) (the release's `forward(x)["rec_pose"]`)."""
        _check_lower(x)
        return rearrange(self.decoder(self.encoder(rearrange(x, "b t d -> b d t"))), "b d t -> b t d")

    def predict_translation(self, lower: torch.Tensor, start_xz: torch.Tensor) -> torch.Tensor:
        """Absolute translation (B, T, 3) of a decoded lower-body stream (B, T, 61) starting at x/z `start_xz` (B, 2)."""
        lower = orthonormal_rotations(lower)
        representation = self(network_input(lower, keep_contact=self.test_contact == "decoded"))[..., LOWER_TRANSLATION]
        if self.integration == "contact_locked":
            steps = representation[:, :-1, HORIZONTAL_AXES] / self.frame_rate
            representation = representation.clone()
            representation[:, :-1, HORIZONTAL_AXES] = contact_locked_steps(lower, steps, self.skeleton) * self.frame_rate
        return integrate_translation(representation, start_xz, self.frame_rate)
