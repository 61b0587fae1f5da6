"""Low-level signal speech features (`hubert: signal`, SPEC §4.4): shapes, what they carry, the cache key, the
selection by name, and a data module built on them."""
import numpy as np
import pytest
import soundfile

from echomask.audio.features import amplitude_envelope
from echomask.audio.hubert import HubertFeatures
from echomask.audio.signal_features import SIGNAL, SignalFeatures, speech_features, standardise
from echomask.audio.speech_settings import SpeechSettings
from echomask.data.datamodule import BEAT2DataModule

SAMPLE_RATE = 16000


def syllables(seconds: float = 3.0, rate_hz: float = 3.0, seed: int = 0) -> np.ndarray:
    """A tone whose loudness rises and falls `rate_hz` times a second, plus a little noise."""
    times = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    loudness = np.clip(np.sin(2 * np.pi * rate_hz * times), 0, None)
    noise = np.random.default_rng(seed).normal(scale=0.01, size=len(times))
    return (0.3 * loudness * np.sin(2 * np.pi * 220 * times) + noise).astype(np.float32)


def test_shapes_dtype_and_determinism():
    extractor = SignalFeatures(out_dim=48, projection_seed=1)
    wave = syllables()
    low, high = extractor(wave, 90)
    assert low.shape == high.shape == (90, 48) and low.dtype == high.dtype == np.float32
    again_low, _ = SignalFeatures(out_dim=48, projection_seed=1)(wave, 90)
    assert np.array_equal(low, again_low)


def test_low_features_carry_the_envelope():
    extractor = SignalFeatures(out_dim=64)
    wave = syllables()
    low, _ = extractor(wave, 90)
    channels = low @ extractor.projection.numpy().T  # the isometric embedding is undone by its transpose
    envelope = amplitude_envelope(wave, SAMPLE_RATE, 90)
    correlation = np.corrcoef(channels[:, extractor.num_mels], envelope)[0, 1]
    assert correlation > 0.999
    # the loud/quiet alternation shows in the spectral part too: the band holding the tone follows the envelope
    band_correlations = [np.corrcoef(band, envelope)[0, 1] for band in channels[:, : extractor.num_mels].T]
    assert max(band_correlations) > 0.8


def test_different_speech_gives_different_features():
    extractor = SignalFeatures(out_dim=32)
    slow, _ = extractor(syllables(rate_hz=2.0), 90)
    fast, _ = extractor(syllables(rate_hz=5.0), 90)
    assert np.abs(slow - fast).mean() > 0.1 * np.abs(slow).mean()


def test_standardise_handles_constant_channels():
    features = np.stack([np.arange(10.0), np.full(10, 3.0)], axis=1)
    result = standardise(features)
    np.testing.assert_allclose(result[:, 0].mean(), 0, atol=1e-12)
    np.testing.assert_allclose(result[:, 0].std(), 1, rtol=1e-4)
    assert np.all(result[:, 1] == 0)


def test_cache_key_names_every_setting():
    base = SignalFeatures().cache_key()
    assert base["extractor"] == SIGNAL
    for changed in (dict(out_dim=128), dict(projection_seed=5), dict(num_mels=16), dict(hop_seconds=0.02)):
        assert SignalFeatures(**changed).cache_key() != base, changed


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(out_dim=0), "out_dim"),
        (dict(num_mels=0), "num_mels"),
        (dict(hop_seconds=0.05), "hop_seconds"),
        (dict(fft_seconds=0.005), "fft_seconds"),
    ],
)
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        SignalFeatures(**settings)


def test_audio_shorter_than_the_frames_is_refused():
    with pytest.raises(ValueError, match="the audio lasts only"):
        SignalFeatures()(syllables(seconds=1.0), 90)


def test_selection_by_name(caplog):
    with caplog.at_level("INFO", logger="echomask.audio.signal_features"):
        assert isinstance(speech_features(SIGNAL, 11, None, 64, 0), SignalFeatures)
    assert "no HuBERT" in caplog.text
    assert isinstance(speech_features("tiny-random", 11, None, 64, 0), HubertFeatures)


def test_data_module_with_signal_features(synthetic_corpus, tmp_path):
    module = BEAT2DataModule(
        root=str(synthetic_corpus),
        cache_dir=str(tmp_path / "cache"),
        items=["motion", "audio_low", "audio_high", "envelope"],
        speech=SpeechSettings(hubert=SIGNAL, feature_dim=40),
        batch_size=4,
    )
    module.prepare_data()
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))
    assert batch["audio_low"].shape == (4, 64, 40) and batch["audio_high"].shape == (4, 64, 40)
    sequence = module.cache.sequences(("train",))[0]
    wave, _ = soundfile.read(next(synthetic_corpus.rglob(f"{sequence.id}.wav")), dtype="float32")
    expected, _ = SignalFeatures(out_dim=40)(wave[: int(sequence.num_frames / 30 * SAMPLE_RATE)], sequence.num_frames)
    np.testing.assert_allclose(np.load(sequence.folder / "audio_low.npy"), expected, rtol=1e-5, atol=1e-5)
