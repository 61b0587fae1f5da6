"""MAM, the motion-audio alignment module (SPEC §6.2), and the periodic positional encoding."""

import math

import pytest
import torch

from torch import nn

from echomask.models.mam import MAM_PARTS, MotionAudioAlignment, band_mask, frame_infonce, pool_to_tokens
from echomask.models.transformer_blocks import PeriodicPositionalEncoding, periodic_sinusoid

D = 32
T = 64
N = 16


def tiny_mam(**overrides) -> MotionAudioAlignment:
    sizes = dict(d_model=D, num_heads=2, dim_feedforward=64, layers_per_block=1, dropout=0.0)
    sizes.update(overrides)
    return MotionAudioAlignment(**sizes)


def speech_inputs(batch: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, T, D, generator=generator), torch.randn(batch, T, D, generator=generator)


def test_periodic_sinusoid_repeats_with_its_period_and_has_the_sinusoid_layout():
    table = periodic_sinusoid(torch.arange(200), dim=8, period=64)
    assert table.shape == (200, 8)
    torch.testing.assert_close(table[:64], table[64:128])
    torch.testing.assert_close(table[5], table[5 + 128])
    position = 7
    expected = [f(position / 10000 ** (2 * i / 8)) for i in range(4) for f in (math.sin, math.cos)]
    torch.testing.assert_close(table[position], torch.tensor(expected))
    assert not torch.allclose(table[3], table[4])


def test_positional_encoding_module_adds_the_table():
    encoding = PeriodicPositionalEncoding(dim=8, period=16)
    x = torch.zeros(2, 40, 8)
    torch.testing.assert_close(encoding(x)[1], periodic_sinusoid(torch.arange(40), 8, 16))
    with pytest.raises(ValueError, match="expects"):
        encoding(torch.zeros(2, 40, 6))


def test_speech_branch_gives_one_feature_sequence_per_part():
    mam = tiny_mam().eval()
    low, high = speech_inputs()
    output = mam(low, high)
    assert set(output.speech) == set(MAM_PARTS)
    for features in output.speech.values():
        assert features.shape == (3, T, D)
    assert not torch.allclose(output.speech["face"], output.speech["hands"])
    assert output.losses == {}
    # the speech features matter
    changed = mam(low, high + 1.0).speech["face"]
    assert not torch.allclose(changed, output.speech["face"])


def test_band_mask_blocks_exactly_the_frames_further_than_the_width():
    mask = band_mask(6, 1)
    expected = torch.tensor([[abs(query - key) > 1 for key in range(6)] for query in range(6)])
    assert torch.equal(mask, expected)
    assert not band_mask(5, 0).diagonal().any() and band_mask(5, 0).sum() == 20
    with pytest.raises(ValueError, match="width"):
        band_mask(4, -1)
    with pytest.raises(ValueError, match="attention_window"):
        tiny_mam(attention_window=-2)


def high_level_reach(mam: MotionAudioAlignment, frame: int) -> torch.Tensor:
    """(T,) bool: which high-level speech frames change c_face at `frame`, with E3 removed (nn.Identity), so that
    only the cross-attention to the high-level features decides what that frame sees of them."""
    mam.block3 = nn.Identity()
    low, high = speech_inputs(batch=1)
    high.requires_grad_(True)
    # a random readout: the plain sum of a layer-normed vector is constant, so its gradient is zero
    readout = torch.randn(D, generator=torch.Generator().manual_seed(1))
    (mam.speech_features(low, high)["face"][0, frame] * readout).sum().backward()
    return high.grad[0].abs().sum(-1) > 0


@pytest.mark.parametrize("width", [0, 3])
def test_attention_window_limits_the_speech_frames_each_frame_sees(width):
    frame = 20
    reach = high_level_reach(tiny_mam(attention_window=width).eval(), frame)
    assert torch.equal(reach, ~band_mask(T, width)[frame])
    assert high_level_reach(tiny_mam().eval(), frame).all()  # the paper's full attention sees the whole window


def test_pool_to_tokens_averages_groups_of_frames():
    frames = torch.arange(8.0).reshape(1, 8, 1)
    torch.testing.assert_close(pool_to_tokens(frames, 2), torch.tensor([[[1.5], [5.5]]]))
    with pytest.raises(ValueError, match="not a multiple"):
        pool_to_tokens(frames, 3)


def test_infonce_matches_the_formula_on_a_small_case():
    speech = torch.randn(1, 3, 4, dtype=torch.float64)
    motion = torch.randn(1, 3, 4, dtype=torch.float64)
    temperature = 0.1
    similarity = torch.zeros(3, 3, dtype=torch.float64)
    for i in range(3):
        for j in range(3):
            similarity[i, j] = torch.dot(speech[0, i], motion[0, j]) / (speech[0, i].norm() * motion[0, j].norm())
    logits = similarity / temperature
    rows = -torch.stack([logits[i, i] - torch.logsumexp(logits[i], 0) for i in range(3)]).mean()
    columns = -torch.stack([logits[j, j] - torch.logsumexp(logits[:, j], 0) for j in range(3)]).mean()
    torch.testing.assert_close(frame_infonce(speech, motion, temperature), (rows + columns) / 2)


@pytest.mark.parametrize("batch_negatives", [False, True])
def test_infonce_is_lower_for_matching_tokens_than_for_shuffled_ones(batch_negatives):
    tokens = torch.randn(4, N, D, generator=torch.Generator().manual_seed(1))
    shuffled = tokens[:, torch.randperm(N, generator=torch.Generator().manual_seed(2))]
    matched = frame_infonce(tokens, tokens, batch_negatives=batch_negatives)
    mismatched = frame_infonce(tokens, shuffled, batch_negatives=batch_negatives)
    assert matched < mismatched - 1.0


def test_batch_negatives_make_the_loss_harder():
    tokens = torch.randn(4, N, D, generator=torch.Generator().manual_seed(3))
    noisy = tokens + 0.5 * torch.randn(4, N, D, generator=torch.Generator().manual_seed(4))
    assert frame_infonce(tokens, noisy, batch_negatives=True) > frame_infonce(tokens, noisy, batch_negatives=False)


def test_infonce_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        frame_infonce(torch.zeros(2, 4, 8), torch.zeros(2, 5, 8))


def test_alignment_losses_reach_every_parameter():
    mam = tiny_mam()
    low, high = speech_inputs(batch=2)
    latents = {part: torch.randn(2, N, D) for part in MAM_PARTS}
    output = mam(low, high, latents)
    expected_keys = {f"{part}/{term}" for part in MAM_PARTS for term in ("infonce", "mse")} | {"total"}
    assert set(output.losses) == expected_keys
    assert torch.isfinite(output.losses["total"])
    output.losses["total"].backward()
    for name, parameter in mam.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, f"no gradient reaches {name}"


def test_the_mse_target_is_detached():
    mam = tiny_mam()
    low, high = speech_inputs(batch=2)
    latents = {part: torch.randn(2, N, D, requires_grad=True) for part in MAM_PARTS}
    losses = mam(low, high, latents).losses
    losses["face/mse"].backward(retain_graph=True)
    assert latents["face"].grad is None
    losses["face/infonce"].backward()
    assert latents["face"].grad.abs().sum() > 0


def test_wrong_latent_shapes_are_rejected():
    mam = tiny_mam()
    low, high = speech_inputs(batch=2)
    latents = {part: torch.randn(2, N + 1, D) for part in MAM_PARTS}
    with pytest.raises(ValueError, match="latent must be"):
        mam(low, high, latents)
    with pytest.raises(ValueError, match="missing"):
        mam(low, high, {"face": torch.randn(2, N, D)})
    with pytest.raises(ValueError, match="speech features"):
        mam(low, high[:, :, :-1])
