"""Tests of the global translation model (the release's VAEConvZero) and its velocity representation (SPEC §5.3)."""

from __future__ import annotations

import pytest
import torch

from echomask.models.translation import (
    HORIZONTAL_AXES,
    LOWER_CONTACT,
    LOWER_ROTATIONS,
    LOWER_TRANSLATION,
    TranslationModel,
    integrate_translation,
    linear_velocity,
    lower_body_feet,
    network_input,
    orthonormal_rotations,
    translation_velocity_target,
)
from echomask.motion.kinematics import ApproximateKinematics
from echomask.motion.parts import smplx_to_parts
from echomask.motion.rotations import axis_angle_to_rot6d

FPS = 30.0


def _random_walk(batch: int, frames: int, dtype=torch.float64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    steps = 0.01 * torch.randn(batch, frames, 3, generator=generator, dtype=dtype)
    return torch.cumsum(steps, dim=1) + torch.tensor([0.5, 1.0, -2.0], dtype=dtype)


def test_linear_velocity_is_central_inside_and_one_sided_at_the_ends():
    positions = torch.tensor([[0.0, 1.0, 4.0, 9.0]]).unsqueeze(-1)  # t**2
    expected = torch.tensor([[1.0, 2.0, 4.0, 5.0]]).unsqueeze(-1) * FPS
    torch.testing.assert_close(linear_velocity(positions, FPS), expected)


def test_velocity_target_is_in_metres_per_second_and_keeps_y():
    trans = torch.tensor([[[0.0, 1.0, 0.0], [0.1, 1.1, -0.2], [0.3, 0.9, -0.2]]])
    target = translation_velocity_target(trans, FPS)
    expected = torch.tensor([[[0.1, 1.0, -0.2], [0.15, 1.1, -0.1], [0.2, 0.9, 0.0]]]) * torch.tensor([FPS, 1.0, FPS])
    torch.testing.assert_close(target, expected)


def test_integration_is_the_releases_forward_sum():
    # x/z of frame t = start + (v[0] + ... + v[t-1]) / fps; the last velocity is not used; y as given
    representation = torch.tensor([[[30.0, 0.8, 60.0], [30.0, 0.9, -30.0], [99.0, 1.0, 99.0]]])
    trans = integrate_translation(representation, torch.tensor([[10.0, -1.0]]), FPS)
    expected = torch.tensor([[[10.0, 0.8, -1.0], [11.0, 0.9, 1.0], [12.0, 1.0, 0.0]]])
    torch.testing.assert_close(trans, expected)


def test_integrating_central_velocities_stays_within_a_frame_of_the_truth():
    trans = _random_walk(3, 200)
    restored = integrate_translation(translation_velocity_target(trans, FPS), trans[:, 0, [0, 2]], FPS)
    step = (trans[:, 1:] - trans[:, :-1]).abs().max()
    assert (restored - trans).abs().max() <= 2 * step, "no drift: the sum of central differences telescopes"
    torch.testing.assert_close(restored[..., 1], trans[..., 1])


def test_lower_stream_layout_and_network_input():
    frames = 5
    trans = torch.randn(frames, 3)
    contact = torch.ones(frames, 4)
    lower = smplx_to_parts(0.1 * torch.randn(frames, 165), trans, torch.randn(frames, 100), contact)["lower"]
    torch.testing.assert_close(lower[..., LOWER_TRANSLATION], trans)
    torch.testing.assert_close(lower[..., LOWER_CONTACT], contact)
    masked = network_input(lower.unsqueeze(0))[0]
    assert (masked[..., LOWER_TRANSLATION.start :] == 0).all()
    torch.testing.assert_close(masked[..., LOWER_ROTATIONS], lower[..., LOWER_ROTATIONS])
    kept = network_input(lower.unsqueeze(0), keep_contact=True)[0]
    assert (kept[..., LOWER_TRANSLATION] == 0).all()
    torch.testing.assert_close(kept[..., LOWER_CONTACT], contact)


def test_orthonormal_rotations_fix_decoded_6d_and_keep_the_rest():
    lower = torch.randn(2, 8, 61, generator=torch.Generator().manual_seed(0))
    fixed = orthonormal_rotations(lower)
    assert torch.equal(fixed[..., LOWER_TRANSLATION.start :], lower[..., LOWER_TRANSLATION.start :])
    rows = fixed[..., LOWER_ROTATIONS].reshape(2, 8, 9, 2, 3)
    torch.testing.assert_close(rows.norm(dim=-1), torch.ones(2, 8, 9, 2))
    # float32 Gram-Schmidt of random column pairs (some nearly parallel): dot products reach ~1e-6 (seen 1.25e-6)
    float32_tolerance = 1e-5
    dots = (rows[..., 0, :] * rows[..., 1, :]).sum(-1)
    torch.testing.assert_close(dots, torch.zeros(2, 8, 9), atol=float32_tolerance, rtol=0)
    torch.testing.assert_close(orthonormal_rotations(fixed), fixed, atol=float32_tolerance, rtol=0)


def test_helpers_reject_bad_shapes():
    with pytest.raises(ValueError, match=r"\(B, T, 3\)"):
        translation_velocity_target(torch.zeros(2, 10, 2), FPS)
    with pytest.raises(ValueError, match=r"start_xz must have shape \(2, 2\)"):
        integrate_translation(torch.zeros(2, 10, 3), torch.zeros(2, 3), FPS)
    with pytest.raises(ValueError, match=r"\(B, T, 61\)"):
        network_input(torch.zeros(2, 10, 60))
    with pytest.raises(ValueError, match="test_contact"):
        TranslationModel(test_contact="guessed")
    with pytest.raises(ValueError, match="integration"):
        TranslationModel(integration="guessed")


def test_release_layout_keeps_length_and_maps_61_to_61():
    model = TranslationModel(width=16, layers=3).eval()
    output = model(torch.randn(2, 37, 61))  # no down- or upsampling: any length
    assert output.shape == (2, 37, 61)
    convs = [module for module in model.modules() if isinstance(module, torch.nn.Conv1d)]
    assert all(conv.kernel_size == (3,) and conv.stride == (1,) for conv in convs)
    assert (convs[0].in_channels, convs[-1].out_channels) == (61, 61)
    paper = TranslationModel()
    assert sum(p.numel() for p in paper.parameters()) == 3_648_789  # the release's VAEConvZero (vae_layer 4, vae_length 256)
    assert len(paper.state_dict()) == 42


def test_predict_translation_zeroes_or_keeps_the_decoded_contact():
    torch.manual_seed(0)
    zeroed = TranslationModel(width=16, layers=2, integration="velocity").eval()
    decoded = TranslationModel(width=16, layers=2, test_contact="decoded", integration="velocity").eval()
    decoded.load_state_dict(zeroed.state_dict())
    lower = torch.randn(2, 16, 61)
    start = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    trans = zeroed.predict_translation(lower, start)
    assert trans.shape == (2, 16, 3)
    torch.testing.assert_close(trans[:, 0, [0, 2]], start)
    changed = lower.clone()
    changed[..., LOWER_TRANSLATION] = 5.0  # the decoded translation is never read
    changed[..., LOWER_CONTACT] = 1.0
    torch.testing.assert_close(zeroed.predict_translation(changed, start), trans)
    assert not torch.allclose(decoded.predict_translation(changed, start), trans)
    expected = integrate_translation(zeroed(network_input(orthonormal_rotations(lower)))[..., LOWER_TRANSLATION], start, FPS)
    torch.testing.assert_close(trans, expected)


def test_paper_width_model_backpropagates():
    model = TranslationModel()
    model(torch.randn(1, 64, 61)).square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def _swaying_lower(frames: int, planted: float) -> torch.Tensor:
    """(1, frames, 61): hips and knees swing (the feet move relative to the root); contact `planted` everywhere."""
    poses = torch.zeros(frames, 9, 3)
    swing = 0.3 * torch.sin(torch.linspace(0, 6.0, frames))
    poses[:, 1, 2] = swing  # left hip about z: the left foot swings sideways
    poses[:, 3, 0] = swing.abs()  # left knee bends
    poses[:, 0, 1] = 0.5 * swing  # the pelvis turns
    rotations = axis_angle_to_rot6d(poses).reshape(frames, 54)
    return torch.cat([rotations, torch.zeros(frames, 3), torch.full((frames, 4), planted)], dim=-1).unsqueeze(0)


def test_contact_locked_integration_keeps_planted_feet_in_place():
    torch.manual_seed(0)
    model = TranslationModel(width=16, layers=2).eval()  # untrained: its velocities are arbitrary
    lower = _swaying_lower(40, planted=1.0)
    start = torch.tensor([[0.3, -0.2]])
    with torch.no_grad():
        trans = model.predict_translation(lower, start)
    relative = lower_body_feet(lower, ApproximateKinematics())[0, :, :, HORIZONTAL_AXES]  # (T, 4, 2)
    assert (relative - relative[0]).abs().max() > 0.02, "the feet do move relative to the root"
    feet = relative + trans[0, :, None, HORIZONTAL_AXES]
    torch.testing.assert_close(feet.mean(dim=1), feet[:1].mean(dim=1).expand(40, 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(trans[:, 0, HORIZONTAL_AXES], start)


def test_contact_locked_integration_follows_the_velocities_when_no_foot_is_planted():
    torch.manual_seed(0)
    locked = TranslationModel(width=16, layers=2).eval()
    free = TranslationModel(width=16, layers=2, integration="velocity").eval()
    free.load_state_dict(locked.state_dict())
    lower = _swaying_lower(40, planted=0.0)
    start = torch.zeros(1, 2)
    with torch.no_grad():
        torch.testing.assert_close(locked.predict_translation(lower, start), free.predict_translation(lower, start))
