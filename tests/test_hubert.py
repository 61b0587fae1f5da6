"""echomask.audio.hubert: offline model loading, layer choice, time alignment, projection and cache key."""
import json
import socket

import numpy as np
import pytest
import torch

from echomask.audio.hubert import HubertFeatures, orthonormal_projection

SR = 16000


@pytest.fixture(scope="module")
def wave() -> np.ndarray:
    """3 s of a deterministic speech-like signal (a harmonic tone with a syllable-rate envelope, plus noise)."""
    rng = np.random.default_rng(0)
    t = np.arange(3 * SR) / SR
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4 * t))
    signal = envelope * sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 6))
    return (0.2 * signal + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_hubert() -> HubertFeatures:
    return HubertFeatures("tiny-random", low_layer=11)


def test_shapes_and_dtype(tiny_hubert, wave):
    for num_frames in (1, 45, 90, 91):  # frame 90 is at 3.0 s, the end of the audio
        low, high = tiny_hubert(wave, num_frames)
        assert low.shape == high.shape == (num_frames, 256)
        assert low.dtype == high.dtype == np.float32
        assert np.all(np.isfinite(low)) and np.all(np.isfinite(high))
    assert not np.allclose(*tiny_hubert(wave, 90))  # low and high are different layers


def test_tiny_random_is_deterministic_across_instances(tiny_hubert, wave):
    other = HubertFeatures("tiny-random", low_layer=11)
    for mine, theirs in zip(tiny_hubert(wave, 90), other(wave, 90)):
        np.testing.assert_array_equal(mine, theirs)
    assert tiny_hubert.cache_key() == other.cache_key()


def test_tiny_random_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    HubertFeatures("tiny-random")
    np.testing.assert_array_equal(torch.rand(3), expected)


def test_layer_validation():
    with pytest.raises(ValueError, match="low_layer=13.*12 layers"):
        HubertFeatures("tiny-random", low_layer=13)
    with pytest.raises(ValueError, match="high_layer=-1"):
        HubertFeatures("tiny-random", high_layer=-1)


def test_high_layer_index_selects_that_hidden_state(wave):
    """With projection 'none' the features are the interpolated hidden states themselves."""
    by_index = HubertFeatures("tiny-random", low_layer=3, high_layer=3, projection="none", out_dim=None)
    low, high = by_index(wave, 90)
    np.testing.assert_array_equal(low, high)
    assert low.shape == (90, by_index.hidden_size)


def test_interpolation_uses_hubert_frame_centres(wave):
    """Motion frame k at k/30 s lies between HuBERT frames whose centres are (320 i + 199.5)/16000 s."""
    features = HubertFeatures("tiny-random", low_layer=0, projection="none", out_dim=None)
    hidden = features.model(torch.from_numpy(normalise(wave))[None], output_hidden_states=True).hidden_states[0][0]
    low, _ = features(wave, 90)
    centres = (320 * np.arange(hidden.shape[0]) + 199.5) / SR
    hidden = hidden.detach().numpy()
    expected = np.stack([np.interp(np.arange(90) / 30, centres, hidden[:, d]) for d in range(hidden.shape[1])], 1)
    np.testing.assert_allclose(low, expected, atol=1e-5)


def normalise(wave: np.ndarray) -> np.ndarray:
    wave64 = wave.astype(np.float64)
    return ((wave64 - wave64.mean()) / np.sqrt(wave64.var() + 1e-7)).astype(np.float32)


def test_chunks_line_up_with_a_single_pass(wave):
    """hidden_states[0] only sees ±8 frames (conv front end + positional conv), so with 0.5 s of context the
    chunked result must equal one full pass: this checks the chunk sample ranges and frame bookkeeping."""
    full = HubertFeatures("tiny-random", low_layer=0, high_layer=0, chunk_seconds=None)
    chunked = HubertFeatures("tiny-random", low_layer=0, high_layer=0, chunk_seconds=0.7, context_seconds=0.5)
    np.testing.assert_allclose(chunked(wave, 90)[0], full(wave, 90)[0], atol=1e-5)


def test_projection_is_orthonormal():
    wide = orthonormal_projection(64, 256, seed=0)  # tiny-random: rows orthonormal, an isometric embedding
    torch.testing.assert_close(wide @ wide.T, torch.eye(64), atol=1e-5, rtol=0)
    tall = orthonormal_projection(1024, 256, seed=0)  # paper: columns orthonormal
    torch.testing.assert_close(tall.T @ tall, torch.eye(256), atol=1e-5, rtol=0)
    assert not torch.equal(orthonormal_projection(1024, 256, seed=1), tall)
    torch.testing.assert_close(orthonormal_projection(1024, 256, seed=0), tall, atol=0, rtol=0)


def test_features_are_the_projected_hidden_states(tiny_hubert, wave):
    raw = HubertFeatures("tiny-random", low_layer=11, projection="none", out_dim=None)
    assert tiny_hubert.projection.shape == (64, 256)
    for projected, unprojected in zip(tiny_hubert(wave, 90), raw(wave, 90)):
        np.testing.assert_allclose(projected, unprojected @ tiny_hubert.projection.numpy(), atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(projected, axis=1), np.linalg.norm(unprojected, axis=1), rtol=1e-4)


def test_projection_none_rejects_another_out_dim():
    with pytest.raises(ValueError, match="out_dim=None or 64"):
        HubertFeatures("tiny-random", projection="none", out_dim=256)


def test_cache_key_changes_with_each_setting(tiny_hubert, tmp_path):
    tiny_hubert.model.save_pretrained(tmp_path / "local")
    variants = {
        "baseline": dict(),
        "model": dict(model=str(tmp_path / "local")),
        "low_layer": dict(low_layer=5),
        "high_layer": dict(high_layer=10),
        "out_dim": dict(out_dim=128),
        "projection": dict(projection="none", out_dim=None),
        "projection_seed": dict(projection_seed=1),
        "fps": dict(fps=25),
        "normalize": dict(normalize=False),
        "chunk_seconds": dict(chunk_seconds=30.0),
        "context_seconds": dict(context_seconds=2.0),
        "precision": dict(precision="bf16-mixed"),
    }
    keys = {name: HubertFeatures(**{"low_layer": 11, **kwargs}).cache_key() for name, kwargs in variants.items()}
    texts = [json.dumps(key, sort_keys=True) for key in keys.values()]  # JSON-able
    assert len(set(texts)) == len(variants)


def test_cache_key_fingerprints_the_weights(tiny_hubert, tmp_path):
    tiny_hubert.model.save_pretrained(tmp_path / "same")
    weights = tiny_hubert.cache_key()["weights_sha256"]
    assert HubertFeatures(str(tmp_path / "same")).cache_key()["weights_sha256"] == weights
    changed = HubertFeatures("tiny-random")
    with torch.no_grad():
        changed.model.encoder.layers[0].feed_forward.output_dense.bias.add_(1.0)
    changed.model.save_pretrained(tmp_path / "changed")
    assert HubertFeatures(str(tmp_path / "changed")).cache_key()["weights_sha256"] != weights


def test_local_directory_round_trip(tiny_hubert, wave, tmp_path):
    tiny_hubert.model.save_pretrained(tmp_path / "hubert")
    loaded = HubertFeatures(str(tmp_path / "hubert"), low_layer=11)
    for mine, theirs in zip(tiny_hubert(wave, 90), loaded(wave, 90)):
        np.testing.assert_allclose(theirs, mine, atol=1e-6)


def test_local_directory_preprocessor_config_sets_normalisation(tiny_hubert, tmp_path):
    tiny_hubert.model.save_pretrained(tmp_path / "hubert")
    assert HubertFeatures(str(tmp_path / "hubert")).normalize is True
    (tmp_path / "hubert" / "preprocessor_config.json").write_text(json.dumps({"do_normalize": False}))
    assert HubertFeatures(str(tmp_path / "hubert")).normalize is False


def test_hub_name_not_in_cache_fails_clearly_without_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("HubertFeatures tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(FileNotFoundError, match=r"'echomask-tests/not-a-cached-hubert'.*never downloads"):
        HubertFeatures("echomask-tests/not-a-cached-hubert")


def test_too_many_frames_or_too_short_audio_is_an_error(tiny_hubert, wave):
    with pytest.raises(ValueError, match="audio lasts only"):
        tiny_hubert(wave, 92)
    with pytest.raises(ValueError, match="at least 400 samples"):
        tiny_hubert(wave[:300], 1)


BF16_COSINE = 0.999  # the least per-frame cosine of bf16-autocast features to fp32 ones (tiny random HuBERT)


def test_bf16_features_agree_with_fp32(tiny_hubert, wave):
    """HuBERT under bf16 autocast (what `precision: auto` picks on a CPU with AMX): fp32 float32
    output of the same shape, every frame's feature vector within cosine 0.999 of the fp32 one."""
    assert tiny_hubert.precision == "32-true"  # the default: exact fp32
    bf16 = HubertFeatures("tiny-random", low_layer=11, precision="bf16-mixed")
    assert bf16.cache_key()["precision"] == "bf16-mixed"
    for exact, approximate in zip(tiny_hubert(wave, 90), bf16(wave, 90)):
        assert approximate.dtype == np.float32 and approximate.shape == exact.shape
        cosine = (exact * approximate).sum(1) / (np.linalg.norm(exact, axis=1) * np.linalg.norm(approximate, axis=1))
        assert cosine.min() >= BF16_COSINE, cosine.min()
        assert not np.array_equal(exact, approximate)  # bf16 did run


def test_auto_precision_is_resolved_and_logged(caplog):
    with caplog.at_level("INFO", logger="echomask.audio.hubert"):
        features = HubertFeatures("tiny-random", precision="auto")
    assert features.precision in ("32-true", "bf16-mixed")
    assert f"precision auto -> {features.precision}" in caplog.text
