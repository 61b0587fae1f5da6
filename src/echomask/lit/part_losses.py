"""Per-part reconstruction losses of the stage-1 RVQ-VAEs (SPEC §5.2).

| part         | terms                                                                      |
|--------------|----------------------------------------------------------------------------|
| upper, hands | geodesic, velocity L1, acceleration L1, joint-position MSE                 |
| face         | jaw geodesic, expression MSE, velocity L1, acceleration L1                 |
| lower        | geodesic, contact MSE, translation L1, velocity L1, acceleration L1,       |
|              | joint-position MSE, foot skate (foot velocity where predicted contact > 0.95) |

Joint positions come from the whole body: the ground-truth rotations with the part's joints
replaced by the reconstruction (and, for the lower body, the reconstructed translation), run
through the configured kinematics. Every function returns unweighted terms; the weights are
configuration (`experiments/vqvae/*.yaml`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from echomask.motion.kinematics import Kinematics
from echomask.motion.parts import CONTACT_DIM, NUM_EXPRESSIONS, PART_JOINTS, ROT6D_DIM, TRANS_DIM
from echomask.motion.rotations import geodesic_distance, rot6d_to_matrix
from echomask.motion.skeleton import FOOT_JOINTS, NUM_JOINTS


def part_rotations(part: str, stream: torch.Tensor) -> torch.Tensor:
    """(B, T, D_part) part stream -> (B, T, J_part, 3, 3) rotation matrices of the part's joints."""
    rot_dim = ROT6D_DIM * len(PART_JOINTS[part])
    return rot6d_to_matrix(rearrange(stream[..., :rot_dim], "b t (j six) -> b t j six", six=ROT6D_DIM))


def velocity(x: torch.Tensor) -> torch.Tensor:
    """Finite difference over frames: (B, T, ...) -> (B, T-1, ...)."""
    return x[:, 1:] - x[:, :-1]


def temporal_l1_terms(recon: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """L1 of the first and second frame differences."""
    return {
        "velocity": F.l1_loss(velocity(recon), velocity(target)),
        "acceleration": F.l1_loss(velocity(velocity(recon)), velocity(velocity(target))),
    }


def whole_body_joints(
    part: str,
    recon: torch.Tensor,
    whole_body: torch.Tensor,
    kinematics: Kinematics,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint positions of the ground truth and of the ground truth with the part replaced.

    Args:
        part: "upper", "hands" or "lower".
        recon: (B, T, D_part) reconstructed part stream.
        whole_body: (B, T, 337) ground-truth whole-body vector.
    Returns:
        (reconstructed joints, ground-truth joints), each (B, T, 55, 3).
    """
    rot_dim = ROT6D_DIM * NUM_JOINTS
    rotations = rot6d_to_matrix(rearrange(whole_body[..., :rot_dim], "b t (j six) -> b t j six", six=ROT6D_DIM))
    trans = whole_body[..., rot_dim : rot_dim + TRANS_DIM]
    joints = list(PART_JOINTS[part])
    mixed = rotations.clone()
    mixed[:, :, joints] = part_rotations(part, recon)
    mixed_trans = recon[..., ROT6D_DIM * len(joints) :][..., :TRANS_DIM] if part == "lower" else trans
    return kinematics.joints_from_rotmats(mixed, mixed_trans), kinematics.joints_from_rotmats(rotations, trans)


def static_geodesic(part: str, target: torch.Tensor) -> torch.Tensor:
    """Mean geodesic error (rad) of the laziest reconstruction of (B, T, D_part) windows: every frame replaced by
    the window's mean stream. A tokenizer whose ``geodesic`` is not clearly below this has captured the pose but
    none of the motion."""
    static = target.mean(dim=1, keepdim=True).expand_as(target)
    return geodesic_distance(part_rotations(part, static), part_rotations(part, target)).mean()


def face_terms(recon: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """(B, T, 106) face streams: jaw geodesic (rad), expression MSE, velocity and acceleration L1."""
    jaw_geodesic = geodesic_distance(part_rotations("face", recon), part_rotations("face", target)).mean()
    expressions = slice(ROT6D_DIM, ROT6D_DIM + NUM_EXPRESSIONS)
    return {
        "geodesic": jaw_geodesic,
        "expression_mse": F.mse_loss(recon[..., expressions], target[..., expressions]),
        **temporal_l1_terms(recon, target),
    }


def body_terms(
    part: str,
    recon: torch.Tensor,
    target: torch.Tensor,
    whole_body: torch.Tensor,
    kinematics: Kinematics,
    contact_threshold: float = 0.95,  # SPEC §5.2: predicted contact above which feet must not slide
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Loss terms of "upper", "hands" or "lower"; also returns (reconstructed, GT) joints for logging."""
    geodesic = geodesic_distance(part_rotations(part, recon), part_rotations(part, target)).mean()
    recon_joints, target_joints = whole_body_joints(part, recon, whole_body, kinematics)
    terms = {
        "geodesic": geodesic,
        "joint_mse": F.mse_loss(recon_joints, target_joints),
        **temporal_l1_terms(recon, target),
    }
    if part == "lower":
        rot_dim = ROT6D_DIM * len(PART_JOINTS["lower"])
        trans = slice(rot_dim, rot_dim + TRANS_DIM)
        contact = slice(rot_dim + TRANS_DIM, rot_dim + TRANS_DIM + CONTACT_DIM)
        foot_speed = velocity(recon_joints[:, :, list(FOOT_JOINTS)]).norm(dim=-1)
        planted = (recon[:, :-1, contact] > contact_threshold).float()
        terms["contact_mse"] = F.mse_loss(recon[..., contact], target[..., contact])
        terms["translation"] = F.l1_loss(recon[..., trans], target[..., trans])
        terms["foot_skate"] = (foot_speed * planted).mean()
    return terms, recon_joints, target_joints
