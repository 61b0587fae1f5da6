"""Tests of the global translation model and its velocity representation (SPEC §5.3)."""

from __future__ import annotations


import pytest
import torch

from echomask.models.translation import (
    LOWER_CONTACT,
    LOWER_TRANSLATION,
    TranslationModel,
    integrate_translation,
    mask_translation_and_contact,
    translation_to_velocity_representation,
)
from echomask.motion.parts import smplx_to_parts


def _random_walk(batch: int, frames: int, dtype=torch.float64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    steps = 0.01 * torch.randn(batch, frames, 3, generator=generator, dtype=dtype)
    return torch.cumsum(steps, dim=1) + torch.tensor([0.5, 1.0, -2.0], dtype=dtype)


def test_velocity_representation_round_trip():
    trans = _random_walk(3, 50)
    representation = translation_to_velocity_representation(trans)
    restored = integrate_translation(representation, trans[:, 0, [0, 2]])
    torch.testing.assert_close(restored, trans, atol=1e-12, rtol=0)


def test_velocity_representation_content():
    trans = torch.tensor([[[0.0, 1.0, 0.0], [0.1, 1.1, -0.2], [0.3, 0.9, -0.2]]])
    representation = translation_to_velocity_representation(trans)
    expected = torch.tensor([[[0.0, 1.0, 0.0], [0.1, 1.1, -0.2], [0.2, 0.9, 0.0]]])
    torch.testing.assert_close(representation, expected)


def test_integration_starts_at_the_given_position_and_keeps_y():
    representation = torch.tensor([[[5.0, 0.8, 5.0], [1.0, 0.9, 2.0], [1.0, 1.0, 2.0]]])
    trans = integrate_translation(representation, torch.tensor([[10.0, -1.0]]))
    expected = torch.tensor([[[10.0, 0.8, -1.0], [11.0, 0.9, 1.0], [12.0, 1.0, 3.0]]])
    torch.testing.assert_close(trans, expected)


def test_lower_stream_layout_matches_the_part_streams():
    frames = 5
    trans = torch.randn(frames, 3)
    contact = torch.ones(frames, 4)
    lower = smplx_to_parts(0.1 * torch.randn(frames, 165), trans, torch.randn(frames, 100), contact)["lower"]
    torch.testing.assert_close(lower[..., LOWER_TRANSLATION], trans)
    torch.testing.assert_close(lower[..., LOWER_CONTACT], contact)
    masked = mask_translation_and_contact(lower.unsqueeze(0))[0]
    assert (masked[..., LOWER_TRANSLATION.start :] == 0).all()
    torch.testing.assert_close(masked[..., : LOWER_TRANSLATION.start], lower[..., : LOWER_TRANSLATION.start])


def test_helpers_reject_bad_shapes():
    with pytest.raises(ValueError, match=r"\(B, T, 3\)"):
        translation_to_velocity_representation(torch.zeros(2, 10, 2))
    with pytest.raises(ValueError, match=r"start_xz must have shape \(2, 2\)"):
        integrate_translation(torch.zeros(2, 10, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"\(B, T, 61\)"):
        mask_translation_and_contact(torch.zeros(2, 10, 60))


def test_forward_shapes_and_translation_and_contact_are_ignored():
    torch.manual_seed(0)
    model = TranslationModel(width=32, latent_dim=16).eval()
    lower = torch.randn(2, 64, 61)
    prediction = model(lower)
    assert prediction.shape == (2, 64, 3)
    changed = lower.clone()
    changed[..., LOWER_TRANSLATION] = torch.randn(2, 64, 3)
    changed[..., LOWER_CONTACT] = 1.0
    torch.testing.assert_close(model(changed), prediction)
    changed[..., 0] += 1.0  # a joint channel does matter
    assert not torch.allclose(model(changed), prediction)
    trans = model.predict_translation(lower, torch.zeros(2, 2))
    assert trans.shape == (2, 64, 3)
    torch.testing.assert_close(trans[..., 1], prediction[..., 1])
    with pytest.raises(ValueError, match="multiple of 4"):
        model(torch.randn(2, 30, 61))


def test_paper_width_model_runs_and_backpropagates():
    model = TranslationModel()
    lower = torch.randn(1, 64, 61)
    prediction = model(lower)
    prediction.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())
