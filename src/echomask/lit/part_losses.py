"""Per-part reconstruction losses of the stage-1 RVQ-VAEs (SPEC §5.2): the release's `ae*_trainer.py` terms.

| part         | terms                                                                                  |
|--------------|----------------------------------------------------------------------------------------|
| upper, hands | geodesic; velocity, acceleration (L1 on rotation matrices); position MSE, position     |
|              | velocity and acceleration (L1)                                                         |
| face         | jaw geodesic; velocity, acceleration (MSE on the jaw's rotation matrix); expression    |
|              | MSE, expression velocity and acceleration (MSE); with SMPL-X: face-vertex MSE, vertex  |
|              | velocity and acceleration (MSE)                                                        |
| lower        | geodesic; velocity, acceleration (L1 on rotation matrices); contact MSE; position MSE; |
|              | foot skate; translation L1 (weight 0 by default: the release has no translation loss)  |

"Position" means the SMPL-X mesh vertices when an SMPL-X model is configured (the release) and the
joint positions of the configured kinematics otherwise (the approximate skeleton's joints stand in for
the vertices; the lower part uses joints in both cases, as the release does). Positions come from the
whole body: the ground-truth rotations with the part's joints replaced by the reconstruction, and the
ground-truth translation. For the face the jaw does not move any joint, so its position terms exist only
with SMPL-X. Foot skate (lower): the mean absolute velocity (per coordinate) of the ankles and feet on
frames where the reconstructed contact exceeds 0.95 (zero elsewhere), positions in the world frame
(ground-truth translation; the release: translation zero, i.e. relative to the pelvis).
Every function returns unweighted terms; the weights are configuration (`experiments/vqvae/*.yaml`).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from einops import rearrange

from echomask.motion.kinematics import Kinematics
from echomask.motion.parts import CONTACT_DIM, NUM_EXPRESSIONS, PART_JOINTS, ROT6D_DIM, TRANS_DIM
from echomask.motion.rotations import geodesic_distance, matrix_to_axis_angle, rot6d_to_matrix
from echomask.motion.skeleton import FOOT_JOINTS, NUM_JOINTS

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
FOOT_SKATE_TRANSLATION = ("ground_truth", "zero")


def part_rotations(part: str, stream: torch.Tensor) -> torch.Tensor:
    """(B, T, D_part) part stream -> (B, T, J_part, 3, 3) rotation matrices of the part's joints."""
    rot_dim = ROT6D_DIM * len(PART_JOINTS[part])
    return rot6d_to_matrix(rearrange(stream[..., :rot_dim], "b t (j six) -> b t j six", six=ROT6D_DIM))


def velocity(x: torch.Tensor) -> torch.Tensor:
    """Finite difference over frames: (B, T, ...) -> (B, T-1, ...)."""
    return x[:, 1:] - x[:, :-1]


def temporal_terms(recon: torch.Tensor, target: torch.Tensor, distance: Distance, prefix: str = "") -> dict[str, torch.Tensor]:
    """`distance` of the first and second frame differences: {prefix}velocity, {prefix}acceleration."""
    return {
        f"{prefix}velocity": distance(velocity(recon), velocity(target)),
        f"{prefix}acceleration": distance(velocity(velocity(recon)), velocity(velocity(target))),
    }


def whole_body(part: str, recon: torch.Tensor, motion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(reconstructed rotations, ground-truth rotations, ground-truth translation) of the whole body.

    Args:
        part: a part name.
        recon: (B, T, D_part) reconstructed part stream.
        motion: (B, T, 337) ground-truth whole-body vector.
    Returns:
        (B, T, 55, 3, 3) rotations with the part's joints replaced by the reconstruction, (B, T, 55, 3, 3) the
        ground truth's, (B, T, 3) its translation.
    """
    rot_dim = ROT6D_DIM * NUM_JOINTS
    rotations = rot6d_to_matrix(rearrange(motion[..., :rot_dim], "b t (j six) -> b t j six", six=ROT6D_DIM))
    mixed = rotations.clone()
    mixed[:, :, list(PART_JOINTS[part])] = part_rotations(part, recon)
    return mixed, rotations, motion[..., rot_dim : rot_dim + TRANS_DIM]


def whole_body_joints(
    part: str, recon: torch.Tensor, motion: torch.Tensor, kinematics: Kinematics
) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint positions (B, T, 55, 3) of the ground truth with the part replaced, and of the ground truth."""
    mixed, rotations, trans = whole_body(part, recon, motion)
    return kinematics.joints_from_rotmats(mixed, trans), kinematics.joints_from_rotmats(rotations, trans)


def mesh_vertices(
    rotations: torch.Tensor, trans: torch.Tensor, kinematics: Kinematics, expressions: torch.Tensor | None = None
) -> torch.Tensor:
    """SMPL-X vertices (B, T, 10475, 3) of rotations (B, T, 55, 3, 3), translation (B, T, 3), expressions (B, T, 100)."""
    poses = rearrange(matrix_to_axis_angle(rotations, method="stable"), "... j xyz -> ... (j xyz)")
    return kinematics.vertices(poses, trans, expressions=expressions)


def foot_skate(joints: torch.Tensor, contact: torch.Tensor, threshold: float) -> torch.Tensor:
    """Mean absolute velocity per coordinate of the ankles and feet of joints (B, T, 55, 3) on the frames whose
    contact (B, T, 4) exceeds `threshold`, zero elsewhere; averaged over all T frames (the last one has no
    velocity and counts as zero), as the release does."""
    foot_velocity = velocity(joints[:, :, list(FOOT_JOINTS)])  # (B, T-1, 4, 3)
    planted = (contact[:, :-1] > threshold).unsqueeze(-1)
    batch, frames, feet, _ = joints[:, :, list(FOOT_JOINTS)].shape
    return (foot_velocity.abs() * planted).sum() / (batch * frames * feet * 3)


def static_geodesic(part: str, target: torch.Tensor) -> torch.Tensor:
    """Mean geodesic error (rad) of the laziest reconstruction of (B, T, D_part) windows: every frame replaced by
    the window's mean stream. A tokenizer whose ``geodesic`` is not clearly below this has captured the pose but
    none of the motion."""
    static = target.mean(dim=1, keepdim=True).expand_as(target)
    return geodesic_distance(part_rotations(part, static), part_rotations(part, target)).mean()


def rotation_terms(part: str, recon: torch.Tensor, target: torch.Tensor, distance: Distance) -> dict[str, torch.Tensor]:
    """Geodesic distance (rad) and the velocity/acceleration `distance` of the part's rotation matrices."""
    recon_rotations, target_rotations = part_rotations(part, recon), part_rotations(part, target)
    return {
        "geodesic": geodesic_distance(recon_rotations, target_rotations).mean(),
        **temporal_terms(recon_rotations, target_rotations, distance),
    }


def position_terms(recon: torch.Tensor, target: torch.Tensor, distance: Distance) -> dict[str, torch.Tensor]:
    """MSE of positions (B, T, P, 3) and the velocity/acceleration `distance` of them."""
    return {"position_mse": F.mse_loss(recon, target), **temporal_terms(recon, target, distance, prefix="position_")}


def face_terms(
    recon: torch.Tensor, target: torch.Tensor, motion: torch.Tensor, kinematics: Kinematics
) -> dict[str, torch.Tensor]:
    """(B, T, 106) face streams: the release's face terms (all temporal terms MSE); vertex terms with SMPL-X only."""
    expressions = slice(ROT6D_DIM, ROT6D_DIM + NUM_EXPRESSIONS)
    recon_expressions, target_expressions = recon[..., expressions], target[..., expressions]
    terms = {
        **rotation_terms("face", recon, target, F.mse_loss),
        "expression_mse": F.mse_loss(recon_expressions, target_expressions),
        **temporal_terms(recon_expressions, target_expressions, F.mse_loss, prefix="expression_"),
    }
    if not kinematics.is_approximate:
        mixed, rotations, trans = whole_body("face", recon, motion)
        recon_vertices = mesh_vertices(mixed, trans, kinematics, recon_expressions)
        target_vertices = mesh_vertices(rotations, trans, kinematics, target_expressions)
        terms.update(position_terms(recon_vertices, target_vertices, F.mse_loss))
    return terms


def body_terms(
    part: str,
    recon: torch.Tensor,
    target: torch.Tensor,
    motion: torch.Tensor,
    kinematics: Kinematics,
    contact_threshold: float = 0.95,  # release: predicted contact above which feet must not slide
    foot_skate_translation: str = "ground_truth",
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Loss terms of "upper", "hands" or "lower"; also returns (reconstructed, GT) joints (B, T, 55, 3) for logging.

    `foot_skate_translation`: the translation under the feet of the lower part's skate term, "ground_truth"
    (world frame) or "zero" (the release: relative to the pelvis).
    """
    if foot_skate_translation not in FOOT_SKATE_TRANSLATION:
        raise ValueError(f"foot_skate_translation must be one of {FOOT_SKATE_TRANSLATION}, got {foot_skate_translation!r}")
    terms = rotation_terms(part, recon, target, F.l1_loss)
    mixed, rotations, trans = whole_body(part, recon, motion)
    recon_joints = kinematics.joints_from_rotmats(mixed, trans)
    target_joints = kinematics.joints_from_rotmats(rotations, trans)
    if part == "lower":
        rot_dim = ROT6D_DIM * len(PART_JOINTS["lower"])
        translation = slice(rot_dim, rot_dim + TRANS_DIM)
        contact = slice(rot_dim + TRANS_DIM, rot_dim + TRANS_DIM + CONTACT_DIM)
        skating_joints = recon_joints
        if foot_skate_translation == "zero":
            skating_joints = kinematics.joints_from_rotmats(mixed, torch.zeros_like(trans))
        terms["position_mse"] = F.mse_loss(recon_joints, target_joints)
        terms["contact_mse"] = F.mse_loss(recon[..., contact], target[..., contact])
        terms["translation"] = F.l1_loss(recon[..., translation], target[..., translation])
        terms["foot_skate"] = foot_skate(skating_joints, recon[..., contact], contact_threshold)
    elif kinematics.is_approximate:
        terms.update(position_terms(recon_joints, target_joints, F.l1_loss))
    else:
        terms.update(position_terms(mesh_vertices(mixed, trans, kinematics), mesh_vertices(rotations, trans, kinematics), F.l1_loss))
    return terms, recon_joints, target_joints
