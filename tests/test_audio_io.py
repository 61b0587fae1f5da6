"""echomask.audio.io: reading any libsndfile format to 16 kHz mono, writing PCM16, and clear errors."""
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile

from echomask.audio.io import SAMPLE_RATE, AudioError, load_audio, write_audio

SHARED = Path(__file__).resolve().parents[2] / "shared"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared not present")
MP3_IN_WAV = SHARED / "audio" / "speech_44k_stereo_mp3.wav"


def dominant_frequency(wave: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / sample_rate)[np.argmax(spectrum)])


def stereo_tone(sample_rate: int, seconds: float, frequency: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    """(N, 2): the tone on the left, the same tone at half amplitude on the right (mono mix: 0.75 × tone)."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    tone = amplitude * np.sin(2 * np.pi * frequency * t)
    return np.stack([tone, 0.5 * tone], axis=1)


@needs_shared
def test_mp3_in_wav_44k_stereo_loads_as_16k_mono():
    info = soundfile.info(MP3_IN_WAV)
    assert (info.samplerate, info.channels) == (44100, 2)
    wave = load_audio(MP3_IN_WAV)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - info.frames / info.samplerate * SAMPLE_RATE) <= 1
    assert np.all(np.isfinite(wave)) and np.sqrt(np.mean(wave**2)) > 1e-3


@needs_shared
def test_mono_mix_is_the_channel_mean():
    stereo, _ = soundfile.read(MP3_IN_WAV, dtype="float32", always_2d=True)
    native = load_audio(MP3_IN_WAV, sample_rate=44100)  # no resampling: only the mix-down
    np.testing.assert_allclose(native, stereo.mean(axis=1), atol=1e-6)


def test_flac_resampled_matches_the_tone(tmp_path):
    path = tmp_path / "tone.flac"
    soundfile.write(path, stereo_tone(22050, 2.0), 22050, subtype="PCM_16")
    wave = load_audio(path)
    assert wave.dtype == np.float32 and len(wave) == int(np.ceil(2.0 * SAMPLE_RATE))
    t = np.arange(len(wave)) / SAMPLE_RATE
    expected = 0.75 * 0.5 * np.sin(2 * np.pi * 440.0 * t)
    interior = slice(SAMPLE_RATE // 10, -SAMPLE_RATE // 10)  # the resampler's zero padding bends the edges
    np.testing.assert_allclose(wave[interior], expected[interior], atol=5e-3)


def test_ogg_loads_as_16k_mono(tmp_path):
    path = tmp_path / "tone.ogg"
    soundfile.write(path, stereo_tone(48000, 1.5), 48000, format="OGG", subtype="VORBIS")
    wave = load_audio(path)
    assert wave.ndim == 1 and abs(len(wave) - 1.5 * SAMPLE_RATE) <= 1
    assert dominant_frequency(wave, SAMPLE_RATE) == pytest.approx(440.0, abs=2.0)
    rms = np.sqrt(np.mean(wave[SAMPLE_RATE // 10:-SAMPLE_RATE // 10] ** 2))
    assert rms == pytest.approx(0.75 * 0.5 / np.sqrt(2), rel=0.1)


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.wav"
    with pytest.raises(AudioError, match=r"nowhere\.wav.*not found"):
        load_audio(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty\.wav.*empty"):
        load_audio(path)


def test_wav_without_samples(tmp_path):
    path = tmp_path / "header_only.wav"
    soundfile.write(path, np.zeros(0), 16000)
    with pytest.raises(AudioError, match=r"header_only\.wav.*no samples"):
        load_audio(path)


def test_garbage_bytes(tmp_path):
    path = tmp_path / "garbage.wav"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(AudioError, match=r"garbage\.wav.*unreadable"):
        load_audio(path)


def test_nan_samples(tmp_path):
    path = tmp_path / "nan.wav"
    samples = np.zeros(1600, dtype=np.float32)
    samples[[100, 900]] = [np.nan, np.inf]
    soundfile.write(path, samples, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav.*2 NaN/inf.*sample 100"):
        load_audio(path)


def test_audio_error_is_a_value_error_naming_the_file(tmp_path):
    path = tmp_path / "x.wav"
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load_audio(path)


def test_write_audio_round_trip_pcm16(tmp_path):
    wave = 0.8 * np.sin(np.linspace(0, 200, 8000)).astype(np.float32)
    path = write_audio(tmp_path / "sub" / "out.wav", wave, 16000)
    info = soundfile.info(path)
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("WAV", "PCM_16", 16000, 1)
    np.testing.assert_allclose(load_audio(path), wave, atol=1 / 32767)


@pytest.mark.parametrize("bad, problem", [(np.array([0.5, 1.5]), "peak"), (np.array([0.0, np.nan]), "NaN"),
                                          (np.zeros(0), "non-empty")])
def test_write_audio_rejects_bad_waves(tmp_path, bad, problem):
    with pytest.raises(ValueError, match=problem):
        write_audio(tmp_path / "bad.wav", bad, 16000)
