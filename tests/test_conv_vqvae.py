"""Tests of the convolutional RVQ-VAE (SPEC §5.1)."""

from __future__ import annotations

import math

import pytest
import torch

from echomask.models.conv_vqvae import RVQVAE, ConvDecoder, ConvEncoder, DilatedResidualBlock


TINY = dict(width=64, num_quantizers=2, codebook_size=64, code_dim=64)


def _smooth_motion(batch: int, frames: int, dim: int, seed: int) -> torch.Tensor:
    """(batch, frames, dim): a sinusoid of random frequency and phase, mixed into `dim` channels."""
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(2, dim, generator=torch.Generator().manual_seed(999))  # the same for every batch
    time = torch.arange(frames).float().view(1, frames, 1) / 30.0
    frequency = 0.5 + torch.rand(batch, 1, 1, generator=generator)  # 0.5-1.5 Hz at 30 fps
    phase = 2 * math.pi * torch.rand(batch, 1, 1, generator=generator)
    angle = 2 * math.pi * frequency * time + phase
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1) @ mixing


def test_paper_sizes_give_16_tokens_of_6_layers_for_64_frames():
    torch.manual_seed(0)
    model = RVQVAE(input_dim=78)
    x = torch.randn(2, 64, 78)
    out = model(x)
    assert out["recon"].shape == (2, 64, 78)
    assert out["indices"].shape == (2, 16, 6)
    assert out["commitment"].ndim == 0
    assert out["stats"]["usage"].shape == (6,)
    model.eval()
    indices = model.encode(x)
    assert indices.shape == (2, 16, 6)
    assert model.indices_to_codes(indices).shape == (6, 2, 16, 256)
    assert model.decode(indices).shape == (2, 64, 78)


def test_every_size_is_configurable():
    model = RVQVAE(input_dim=10, depth=3, encoder_dilations=(1, 2), decoder_dilations=(4,), **TINY)
    x = torch.randn(3, 40, 10)
    out = model(x)
    assert out["recon"].shape == (3, 40, 10)
    assert out["indices"].shape == (3, 5, 2)
    assert model.indices_to_codes(out["indices"]).shape == (2, 3, 5, 64)
    assert model.encoder.layers[0].out_channels == 64
    assert model.quantizer.codebooks[0].codebook.shape == (64, 64)
    assert _block_dilations(model.encoder) == [1, 2] * 3 and _block_dilations(model.decoder) == [4] * 3


def _block_dilations(module: torch.nn.Module) -> list[int]:
    return [block.body[1].dilation[0] for block in module.modules() if isinstance(block, DilatedResidualBlock)]


def test_encoder_and_decoder_follow_the_release_layout():
    encoder = ConvEncoder(input_dim=61)
    convs = [m for m in encoder.modules() if isinstance(m, torch.nn.Conv1d)]
    assert (convs[0].in_channels, convs[0].out_channels, convs[0].kernel_size) == (61, 256, (3,))
    assert (convs[-1].in_channels, convs[-1].out_channels, convs[-1].kernel_size) == (256, 256, (3,))
    downsampling = [c for c in convs if c.stride == (2,)]
    assert [(c.kernel_size, c.padding) for c in downsampling] == [((4,), (1,))] * 2
    assert _block_dilations(encoder) == [9, 3, 1, 9, 3, 1], "the release's Resnet1D reverses 1, 3, 9 in the encoder too"
    decoder = ConvDecoder(output_dim=61)
    convs = [m for m in decoder.modules() if isinstance(m, torch.nn.Conv1d)]
    assert (convs[-1].in_channels, convs[-1].out_channels, convs[-1].kernel_size) == (256, 61, (3,))
    assert _block_dilations(decoder) == [9, 3, 1, 9, 3, 1]
    upsampling = [m for m in decoder.modules() if isinstance(m, torch.nn.Upsample)]
    assert [(u.scale_factor, u.mode) for u in upsampling] == [(2.0, "nearest")] * 2
    dropouts = [m.p for m in RVQVAE(input_dim=61).modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts == [0.2] * 12, "every residual block ends in dropout 0.2"


def test_residual_block_dropout_is_off_in_eval():
    torch.manual_seed(0)
    block = DilatedResidualBlock(8, dilation=3, dropout=0.5)
    x = torch.randn(2, 8, 20)
    block.eval()
    torch.testing.assert_close(block(x), block(x))
    block.train()
    assert not torch.allclose(block(x), block(x))


def test_eval_decode_of_encode_equals_forward_reconstruction():
    torch.manual_seed(0)
    model = RVQVAE(input_dim=12, **TINY)
    model(torch.randn(4, 32, 12))  # initialise the codebooks
    model.eval()
    x = torch.randn(2, 32, 12)
    out = model(x)
    indices = model.encode(x)
    assert torch.equal(indices, out["indices"])
    torch.testing.assert_close(model.decode(indices), out["recon"], atol=1e-5, rtol=1e-5)
    quantized = model.indices_to_codes(indices).sum(0)
    torch.testing.assert_close(model.decoder(quantized), out["recon"], atol=1e-5, rtol=1e-5)


def test_bad_inputs_are_rejected_with_clear_errors():
    model = RVQVAE(input_dim=12, **TINY)
    with pytest.raises(ValueError, match="multiple of 4"):
        model(torch.randn(2, 30, 12))
    with pytest.raises(ValueError, match=r"\(B, T, 12\)"):
        model(torch.randn(2, 32, 13))
    with pytest.raises(ValueError, match=r"\(B, T, 12\)"):
        model.encode(torch.randn(32, 12))
    with pytest.raises(ValueError, match=r"\(B, N, 2\)"):
        model.decode(torch.zeros(2, 8, 3, dtype=torch.long))


def test_training_lowers_reconstruction_error_on_a_smooth_signal():
    torch.manual_seed(0)
    model = RVQVAE(input_dim=8, **TINY)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    evaluation = _smooth_motion(32, 32, 8, seed=123)

    def eval_mse() -> float:
        model.eval()
        with torch.no_grad():
            error = torch.nn.functional.mse_loss(model(evaluation)["recon"], evaluation).item()
        model.train()
        return error

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small convolutions: threads only add contention on a shared machine
    try:
        model(_smooth_motion(32, 32, 8, seed=0))  # the first batch initialises the codebooks
        initial = eval_mse()
        for step in range(200):
            batch = _smooth_motion(8, 32, 8, seed=step + 1)
            out = model(batch)
            loss = torch.nn.functional.mse_loss(out["recon"], batch) + 0.02 * out["commitment"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        final = eval_mse()
    finally:
        torch.set_num_threads(threads)
    assert final < 0.05 * initial, f"reconstruction MSE {initial:.4f} -> {final:.4f}"


# --- input normalisation (off in the release) --------------------------------------------------


def test_normalization_is_an_exact_change_of_units_around_the_stored_mean_and_std():
    """A normalised model fed mean + std·x encodes x's codes and decodes mean + std·(the plain model's output): the
    encoder sees a constant offset and a tiny scale removed, the outputs stay in the input's units."""
    torch.manual_seed(0)
    plain = RVQVAE(input_dim=12, **TINY)
    plain(torch.randn(8, 32, 12))  # initialise the codebooks
    normalized = RVQVAE(input_dim=12, normalize=True, **TINY)
    assert {"input_mean", "input_std", "normalization_set"} <= set(normalized.state_dict())
    normalized.load_state_dict({**normalized.state_dict(), **plain.state_dict()})
    mean, std = 3.0 + torch.randn(12), 0.01 + torch.rand(12) * 0.02
    normalized.set_normalization(mean, std)
    assert bool(normalized.normalization_set)
    plain.eval()
    normalized.eval()
    x = torch.randn(2, 32, 12)
    offset_signal = mean + std * x
    indices = normalized.encode(offset_signal)
    assert torch.equal(indices, plain.encode(x))
    torch.testing.assert_close(normalized.decode(indices), mean + std * plain.decode(indices))
    torch.testing.assert_close(normalized(offset_signal)["recon"], mean + std * plain(x)["recon"])


def test_a_model_without_normalization_has_no_extra_state_and_refuses_statistics():
    model = RVQVAE(input_dim=12, **TINY)
    assert not any(name.startswith("input_") for name in model.state_dict())  # release checkpoints load unchanged
    with pytest.raises(ValueError, match="normalize=False"):
        model.set_normalization(torch.zeros(12), torch.ones(12))
    normalized = RVQVAE(input_dim=12, normalize=True, **TINY)
    with pytest.raises(ValueError, match="positive"):
        normalized.set_normalization(torch.zeros(12), torch.zeros(12))
    with pytest.raises(ValueError, match=r"\(12,\)"):
        normalized.set_normalization(torch.zeros(11), torch.ones(11))
