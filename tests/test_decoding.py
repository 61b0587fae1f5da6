"""Decoding options of inference (models/decoding.py): code choice, the cosine schedule, iterative re-masking."""

import math

import pytest
import torch

from echomask.models.decoding import (
    Decoding,
    choose_codes,
    iterative_decoding,
    keep_least_confident,
    masked_after,
    token_confidence,
)


def test_argmax_is_temperature_zero_and_top_one():
    logits = torch.randn(3, 5, 2, 16)
    assert torch.equal(choose_codes(logits), logits.argmax(dim=-1))
    sampled = choose_codes(logits, temperature=2.0, top_k=1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sampled, logits.argmax(dim=-1))


def test_sampling_follows_the_tempered_softmax():
    logits = torch.tensor([0.0, math.log(3.0)]).expand(20000, 2)
    drawn = choose_codes(logits, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert drawn.float().mean().item() == pytest.approx(0.75, abs=0.015)
    colder = choose_codes(logits, temperature=0.5, generator=torch.Generator().manual_seed(0))
    assert colder.float().mean().item() == pytest.approx(0.9, abs=0.015)  # 3² : 1


@pytest.mark.parametrize("kwargs", [{"temperature": -1.0}, {"temperature": 1.0, "top_k": 0}, {"top_k": 17}])
def test_bad_code_choice_settings_are_named(kwargs):
    with pytest.raises(ValueError, match="choose_codes"):
        choose_codes(torch.randn(2, 16), **kwargs)


def test_cosine_schedule():
    assert [masked_after(15, step, 4) for step in range(1, 5)] == [13, 10, 5, 0]
    assert masked_after(15, 1, 1) == 0
    with pytest.raises(ValueError, match="step"):
        masked_after(15, 0, 4)


def test_least_confident_masked_tokens_stay_masked():
    masked = torch.tensor([[False, True, True, True, True]])
    confidence = torch.tensor([[0.0, 0.9, 0.2, 0.5, 0.1]])  # the unmasked token's 0.0 must not count
    kept = keep_least_confident(masked, confidence, 2)
    assert kept.tolist() == [[False, False, True, False, True]]
    assert not keep_least_confident(masked, confidence, 0).any()


def test_confidence_is_the_mean_layer0_top_probability():
    sure = torch.tensor([10.0, 0.0, 0.0]).log_softmax(-1)
    flat = torch.zeros(3)
    logits = {"a": torch.stack([sure, flat]).reshape(1, 1, 2, 3), "b": torch.stack([flat, sure]).reshape(1, 1, 2, 3)}
    expected = (sure.softmax(-1).max() + 1 / 3) / 2
    assert token_confidence(logits).item() == pytest.approx(expected.item())


class FakeGenerator:
    """A window pass whose layer-0 confidence is fixed per token and whose codes change with every pass."""

    def __init__(self, confidence: torch.Tensor, layers: int = 2, codes: int = 8):
        self.confidence, self.layers, self.codes = confidence, layers, codes
        self.shown: list[torch.Tensor] = []

    def __call__(self, window, frame_mask):
        self.shown.append(window.clone())
        batch, tokens = self.confidence.shape
        code = len(self.shown) % self.codes
        logits = torch.zeros(batch, tokens, self.layers, self.codes)
        logits[..., code] = torch.log(self.confidence / (1 - self.confidence) * (self.codes - 1))[..., None]
        return {"upper": logits}


def decode_as_code_number(indices):
    """Each token's 4 frames hold its layer-0 code (so a test can see what was decoded)."""
    return indices["upper"][:, :, 0].float().repeat_interleave(4, dim=1)[..., None].expand(-1, -1, 3)


def test_iterative_decoding_fixes_confident_tokens_first_and_shows_them():
    confidence = torch.tensor([[0.5, 0.9, 0.2, 0.8, 0.3, 0.7]])
    masked = torch.tensor([[False, True, True, True, True, True]])
    window = torch.full((1, 24, 3), -5.0)
    fake = FakeGenerator(confidence)
    indices, frame_masks = iterative_decoding(
        window, masked, torch.full((3,), 99.0), fake, decode_as_code_number, Decoding(steps=3)
    )
    masked_tokens = [mask[0, ::4].tolist() for mask in frame_masks]
    assert [sum(tokens) for tokens in masked_tokens] == [5, 4, 2]  # 5, ⌊5·cos 30°⌋, ⌊5·cos 60°⌋
    assert masked_tokens[1] == [False, False, True, True, True, True]  # token 1 (0.9) fixed after pass 1
    assert masked_tokens[2] == [False, False, True, False, True, False]  # then 0.8 and 0.7
    # Pass 2 sees token 1's decoded code (pass 1 chose code 1) and the seed; masked frames show the embedding.
    assert fake.shown[1][0, 4:8, 0].eq(1.0).all() and fake.shown[1][0, :4, 0].eq(-5.0).all()
    assert fake.shown[1][0, 8:, 0].eq(99.0).all()
    # A token keeps the code of the pass that fixed it; the last pass fills the rest.
    assert indices["upper"][0, :, 0].tolist() == [1, 1, 3, 2, 3, 2]


def test_one_step_is_one_argmax_pass():
    confidence = torch.rand(2, 4) * 0.5 + 0.25
    masked = torch.tensor([[False, True, True, True]] * 2)
    fake = FakeGenerator(confidence)
    indices, frame_masks = iterative_decoding(
        torch.zeros(2, 16, 3), masked, torch.zeros(3), fake, decode_as_code_number, Decoding(steps=1)
    )
    assert len(fake.shown) == 1 and len(frame_masks) == 1
    assert indices["upper"].eq(1).all()


def test_rows_must_mask_the_same_number_of_tokens():
    masked = torch.tensor([[False, True], [True, True]])
    with pytest.raises(ValueError, match="same number"):
        iterative_decoding(torch.zeros(2, 8, 3), masked, torch.zeros(3), None, None, Decoding(steps=2))


@pytest.mark.parametrize("kwargs", [{"temperature": -0.5}, {"top_k": 0}, {"steps": 0}])
def test_bad_decoding_settings_are_named(kwargs):
    with pytest.raises(ValueError, match="decoding"):
        Decoding(**kwargs)
