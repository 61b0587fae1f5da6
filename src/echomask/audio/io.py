"""Reading and writing audio files (SPEC §4.4).

Every file libsndfile understands (wav, flac, ogg, MP3-in-WAV, ...) is read with `soundfile`, mixed down to mono
and resampled with `torchaudio.functional.resample`. (`torchaudio.load` is not used: it needs torchcodec.)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional
from einops import reduce

# The rate HuBERT and the BC onset detector expect, and BEAT2's wave16k rate (§4.1, §4.4).
SAMPLE_RATE = 16000


class AudioError(ValueError):
    """An audio file that cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read an audio file as a mono float32 waveform at `sample_rate`.

    Channels are averaged; the rate is converted with torchaudio's band-limited sinc resampler (default settings).

    Args:
        path: any file libsndfile reads (wav, flac, ogg, MP3-in-WAV, ...).
        sample_rate: the rate of the returned waveform in Hz.

    Returns:
        (N,) float32, N = ceil(duration · sample_rate).

    Raises:
        AudioError: the file is missing, empty, unreadable/unsupported, or holds NaN/inf samples.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive number of Hz, got {sample_rate}")
    path = Path(path)
    data, file_rate = _read_checked(path)
    mono = reduce(data, "samples channels -> samples", "mean")
    if file_rate == sample_rate:
        return np.ascontiguousarray(mono, dtype=np.float32)
    resampled = torchaudio.functional.resample(torch.from_numpy(mono), orig_freq=file_rate, new_freq=sample_rate)
    return resampled.numpy().astype(np.float32, copy=False)


def write_audio(path: str | Path, wave: np.ndarray, sample_rate: int) -> Path:
    """Write a waveform as a 16-bit PCM wav file (the format of BEAT2's wave16k).

    Args:
        path: destination; parent folders are created.
        wave: (N,) mono or (N, C) multi-channel samples in [-1, 1].
        sample_rate: the rate of `wave` in Hz.

    Raises:
        ValueError: empty, non-finite or out-of-range samples (PCM16 would clip them silently).
    """
    path = Path(path)
    wave = np.asarray(wave)
    if wave.ndim not in (1, 2) or wave.shape[0] == 0:
        raise ValueError(f"{path}: expected a non-empty (N,) or (N, C) waveform, got shape {wave.shape}")
    if not np.all(np.isfinite(wave)):
        raise ValueError(f"{path}: the waveform holds NaN/inf samples")
    peak = float(np.max(np.abs(wave)))
    if peak > 1.0:
        raise ValueError(f"{path}: samples must lie in [-1, 1] for PCM16, peak is {peak:.4g}; scale the waveform first")
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, wave, sample_rate, subtype="PCM_16", format="WAV")
    return path


def _read_checked(path: Path) -> tuple[np.ndarray, int]:
    """Read all samples as (N, C) float32 plus the file's rate, turning every failure into an AudioError."""
    if not path.exists():
        raise AudioError(path, "audio file not found")
    if not path.is_file():
        raise AudioError(path, "not a file")
    if path.stat().st_size == 0:
        raise AudioError(path, "audio file is empty (0 bytes)")
    try:
        data, file_rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (soundfile.SoundFileError, RuntimeError) as error:
        raise AudioError(path, f"unreadable or unsupported audio ({error})") from None
    if data.shape[0] == 0:
        raise AudioError(path, "audio file holds no samples")
    bad = ~np.isfinite(data)
    if bad.any():
        first = int(np.argwhere(bad)[0, 0])
        raise AudioError(path, f"audio holds {int(bad.sum())} NaN/inf sample value(s), the first at sample {first}")
    return data, int(file_rate)
