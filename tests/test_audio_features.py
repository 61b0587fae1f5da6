"""echomask.audio.features: envelope and onset strength at 30 fps, onset times for BC."""
from pathlib import Path

import numpy as np
import pytest

from echomask.audio.features import MOTION_FPS, amplitude_envelope, onset_strength, onset_times

SHARED = Path(__file__).resolve().parents[2] / "shared"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared not present")

SR = 16000
BC_HOP = 512  # §8.1


def modulated_tone(seconds: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """A 1 kHz tone whose amplitude follows a slow 1.3 Hz modulation; returns (wave, amplitude at each sample)."""
    t = np.arange(round(seconds * SR)) / SR
    amplitude = 0.1 + 0.4 * (1 + np.sin(2 * np.pi * 1.3 * t)) / 2
    return (amplitude * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32), amplitude


def click_train(click_times: np.ndarray, seconds: float) -> np.ndarray:
    wave = np.zeros(round(seconds * SR), dtype=np.float32)
    wave[np.round(click_times * SR).astype(int)] = 1.0
    return wave


def test_envelope_tracks_amplitude_modulation():
    wave, amplitude = modulated_tone()
    num_frames = 3 * MOTION_FPS
    envelope = amplitude_envelope(wave, SR, num_frames)
    assert envelope.shape == (num_frames,) and envelope.dtype == np.float32
    expected = amplitude[np.round(np.arange(num_frames) / MOTION_FPS * SR).astype(int)] / np.sqrt(2)
    assert np.corrcoef(envelope, expected)[0, 1] > 0.9
    np.testing.assert_allclose(envelope, expected, rtol=0.05)  # a sine's RMS is amplitude / √2


def test_envelope_is_zero_in_silence_and_local():
    wave = np.zeros(2 * SR, dtype=np.float32)
    wave[SR:SR + SR // 30] = 0.5  # one motion frame of sound starting at t = 1 s
    envelope = amplitude_envelope(wave, SR, 60)
    assert np.flatnonzero(envelope).tolist() == [30, 31]


def test_onset_times_land_on_clicks():
    click_times = np.arange(1, 10) * 16 * BC_HOP / SR  # clicks on the onset detector's frame grid
    onsets = onset_times(click_train(click_times, 6.0), SR, hop_length=BC_HOP)
    assert len(onsets) == len(click_times)
    np.testing.assert_allclose(onsets, click_times, atol=BC_HOP / SR + 1e-9)


def test_onset_strength_peaks_at_click_frames():
    click_times = np.array([0.5, 1.2, 2.0, 2.9, 3.5])
    strength = onset_strength(click_train(click_times, 4.0), SR, num_frames=120)
    assert strength.shape == (120,) and strength.dtype == np.float32 and np.all(strength >= 0)
    peaks = np.sort(np.argsort(strength)[-len(click_times):])
    np.testing.assert_array_equal(peaks, np.round(click_times * MOTION_FPS))


@pytest.mark.parametrize("feature", [amplitude_envelope, onset_strength])
@pytest.mark.parametrize("num_frames", [1, 29, 60, 61])
def test_one_value_per_motion_frame(feature, num_frames):
    wave, _ = modulated_tone(seconds=2.0)  # 2 s: frames 0 … 60 lie inside the audio
    assert feature(wave, SR, num_frames).shape == (num_frames,)


@pytest.mark.parametrize("feature", [amplitude_envelope, onset_strength])
def test_bad_inputs_are_rejected(feature):
    wave, _ = modulated_tone(seconds=2.0)
    with pytest.raises(ValueError, match="audio lasts only"):
        feature(wave, SR, 62)  # frame 61 at 2.033 s is past the end
    with pytest.raises(ValueError, match="at least 1"):
        feature(wave, SR, 0)
    with pytest.raises(ValueError, match="NaN"):
        feature(np.full(SR, np.nan, dtype=np.float32), SR, 10)
    with pytest.raises(ValueError, match="shape"):
        feature(np.zeros((SR, 2), dtype=np.float32), SR, 10)


@needs_shared
@pytest.mark.parametrize("case", ["A", "B"])
def test_onset_times_reproduce_golden_onsets(case):
    """NEW evaluation path (golden/README.md): the raw 16 kHz segment sliced [32000 : int((n − 60)/30 · 16000)]."""
    golden = np.load(SHARED / "golden" / "beat_consistency.npz")
    num_frames = golden[f"{case}_positions"].shape[0]
    segment = golden[f"{case}_audio_segment_16k"][32000:int((num_frames - 60) / 30 * 16000)]
    np.testing.assert_allclose(onset_times(segment), golden[f"{case}_audio_onsets_new"], rtol=0, atol=1e-9)
