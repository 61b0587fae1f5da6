"""The stage-1 loss terms are the release's (echomask.lit.part_losses, issue 14 / S5)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from echomask.lit.part_losses import body_terms, face_terms, foot_skate, part_rotations, rotation_terms
from echomask.motion.kinematics import ApproximateKinematics
from echomask.motion.parts import whole_body_to_parts
from echomask.motion.rotations import axis_angle_to_rot6d
from echomask.motion.skeleton import FOOT_JOINTS


class StubMesh(ApproximateKinematics):
    """Kinematics with "vertices" (the joints shifted by the first expressions), standing in for SMPL-X."""

    def __init__(self):
        super().__init__()
        self.is_approximate = False

    def vertices(self, poses, trans, expressions=None, betas=None):
        points = self.forward(poses, trans)
        return points if expressions is None else points + expressions[..., None, :3]


def whole_body(batch: int = 2, frames: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A random whole-body vector (B, T, 337) with moving joints and translation, and expressions (B, T, 100)."""
    generator = torch.Generator().manual_seed(seed)
    poses = 0.3 * torch.randn(batch, frames, 55, 3, generator=generator)
    trans = torch.cumsum(0.01 * torch.randn(batch, frames, 3, generator=generator), dim=1)
    contact = (torch.rand(batch, frames, 4, generator=generator) > 0.5).float()
    motion = torch.cat([axis_angle_to_rot6d(poses).flatten(-2), trans, contact], dim=-1)
    return motion, torch.randn(batch, frames, 100, generator=generator)


def test_temporal_terms_are_on_rotation_matrices():
    motion, expressions = whole_body()
    target = whole_body_to_parts(motion, expressions)["upper"]
    recon = target + 0.05 * torch.randn_like(target)
    terms = rotation_terms("upper", recon, target, F.l1_loss)
    recon_matrices, target_matrices = part_rotations("upper", recon), part_rotations("upper", target)
    expected = F.l1_loss(recon_matrices[:, 1:] - recon_matrices[:, :-1], target_matrices[:, 1:] - target_matrices[:, :-1])
    torch.testing.assert_close(terms["velocity"], expected)
    assert not torch.isclose(terms["velocity"], F.l1_loss(recon[:, 1:] - recon[:, :-1], target[:, 1:] - target[:, :-1]))


@pytest.mark.parametrize("kinematics, positions", [(ApproximateKinematics(), False), (StubMesh(), True)])
def test_face_terms_have_vertex_terms_only_with_a_mesh(kinematics, positions):
    motion, expressions = whole_body()
    target = whole_body_to_parts(motion, expressions)["face"]
    terms = face_terms(target + 0.1, target, motion, kinematics)
    assert set(terms) >= {"geodesic", "velocity", "acceleration", "expression_mse", "expression_velocity"}
    assert ("position_mse" in terms) == positions
    if positions:  # the stub's vertices move with the first 3 expressions: 0.1 everywhere
        torch.testing.assert_close(terms["position_mse"], torch.tensor(0.01))
    torch.testing.assert_close(terms["expression_mse"], torch.tensor(0.01))


def test_body_positions_are_joints_or_vertices():
    motion, expressions = whole_body()
    target = whole_body_to_parts(motion, expressions)["hands"]
    recon = target + 0.05 * torch.randn_like(target)
    joints, *_ = body_terms("hands", recon, target, motion, ApproximateKinematics())
    mesh, *_ = body_terms("hands", recon, target, motion, StubMesh())
    for term in ("position_mse", "position_velocity", "position_acceleration"):
        torch.testing.assert_close(joints[term], mesh[term])  # the stub's vertices are the joints here


def test_foot_skate_is_the_releases_mean_over_all_frames_and_coordinates():
    joints = torch.zeros(1, 3, 55, 3)
    joints[0, 1, FOOT_JOINTS[0]] = torch.tensor([0.3, 0.0, 0.6])  # one foot moves 0.9 (L1) into frame 1, back in 2
    contact = torch.zeros(1, 3, 4)
    contact[0, 0, 0] = 1.0  # planted on frame 0 only: its step 0 -> 1 counts, not 1 -> 2
    torch.testing.assert_close(foot_skate(joints, contact, 0.95), torch.tensor(0.9 / (3 * 4 * 3)))


def test_lower_terms_and_the_skate_translation_option():
    motion, expressions = whole_body()
    target = whole_body_to_parts(motion, expressions)["lower"]
    recon = target.clone()
    recon[..., 57:] = 1.0  # every foot planted
    kinematics = ApproximateKinematics()
    world, *_ = body_terms("lower", recon, target, motion, kinematics)
    pelvis, *_ = body_terms("lower", recon, target, motion, kinematics, foot_skate_translation="zero")
    assert set(world) >= {"geodesic", "position_mse", "contact_mse", "translation", "foot_skate"}
    assert world["position_mse"] < 1e-10 and world["translation"] == 0
    assert not torch.isclose(world["foot_skate"], pelvis["foot_skate"]), "the moving translation is in world only"
    with pytest.raises(ValueError, match="foot_skate_translation"):
        body_terms("lower", recon, target, motion, kinematics, foot_skate_translation="sometimes")
