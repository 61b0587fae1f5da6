"""Low-level audio features at the motion frame rate, and the onset times the BC metric uses (SPEC §4.4, §8.1).

Motion frame k is the instant k / fps seconds. Every per-frame feature here is one value per motion frame,
computed around that instant, so audio and motion stay aligned by time whatever the two rates are.
"""
from __future__ import annotations

import librosa
import numpy as np

# BEAT2 motion is captured at 30 fps (§4.1); every per-frame feature uses this rate unless told otherwise.
MOTION_FPS = 30


def check_wave(wave: np.ndarray) -> np.ndarray:
    """Return `wave` as a contiguous float array after checking it is a non-empty, finite, 1-D waveform."""
    wave = np.ascontiguousarray(wave)
    if wave.ndim != 1 or wave.size == 0:
        raise ValueError(f"expected a non-empty mono waveform of shape (N,), got shape {wave.shape}")
    if not np.issubdtype(wave.dtype, np.floating):
        raise ValueError(f"expected floating-point samples, got dtype {wave.dtype}")
    if not np.all(np.isfinite(wave)):
        raise ValueError("the waveform holds NaN/inf samples")
    return wave


def motion_frame_times(num_frames: int, fps: float, audio_seconds: float) -> np.ndarray:
    """The instants (seconds) of motion frames 0 … num_frames − 1, checked to lie inside the audio.

    Args:
        num_frames: number of motion frames (≥ 1).
        fps: motion frame rate.
        audio_seconds: duration of the audio the frames are aligned with.

    Returns:
        (num_frames,) float64, frame k at k / fps.

    Raises:
        ValueError: num_frames < 1, fps ≤ 0, or the last frame falls after the end of the audio.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    last_frame_seconds = (num_frames - 1) / fps
    if last_frame_seconds > audio_seconds:
        raise ValueError(
            f"{num_frames} motion frames at {fps} fps need audio up to {last_frame_seconds:.3f} s, "
            f"but the audio lasts only {audio_seconds:.3f} s"
        )
    return np.arange(num_frames, dtype=np.float64) / fps


def amplitude_envelope(
    wave: np.ndarray,
    sample_rate: int,
    num_frames: int,
    fps: float = MOTION_FPS,
    window_seconds: float | None = None,
) -> np.ndarray:
    """Root-mean-square amplitude around each motion frame.

    The RMS of frame k is taken over the samples in [k/fps − w/2, k/fps + w/2) that exist (w = `window_seconds`),
    computed exactly from a cumulative sum of squares, so a non-integer number of samples per frame is no problem.

    Args:
        wave: (N,) mono waveform.
        sample_rate: rate of `wave` in Hz.
        num_frames: number of motion frames; the last must lie inside the audio.
        fps: motion frame rate (§4.4: 30).
        window_seconds: RMS window length; None = one motion frame (1 / fps).

    Returns:
        (num_frames,) float32, in the units of `wave`.
    """
    wave = check_wave(wave)
    times = motion_frame_times(num_frames, fps, len(wave) / sample_rate)
    window = 1.0 / fps if window_seconds is None else window_seconds
    if window <= 0:
        raise ValueError(f"window_seconds must be positive, got {window_seconds}")
    starts = np.clip(np.floor((times - window / 2) * sample_rate).astype(np.int64), 0, len(wave) - 1)
    ends = np.clip(np.ceil((times + window / 2) * sample_rate).astype(np.int64), starts + 1, len(wave))
    energy = np.concatenate([[0.0], np.cumsum(wave.astype(np.float64) ** 2)])
    mean_square = (energy[ends] - energy[starts]) / (ends - starts)
    return np.sqrt(np.maximum(mean_square, 0.0)).astype(np.float32)


def onset_strength(
    wave: np.ndarray,
    sample_rate: int,
    num_frames: int,
    fps: float = MOTION_FPS,
    hop_seconds: float = 0.01,
) -> np.ndarray:
    """librosa's spectral-flux onset strength, max-pooled to one value per motion frame.

    librosa computes the strength every `hop_seconds` (finer than a motion frame, so no onset falls between
    frames); motion frame k takes the largest value whose time lies in [k/fps − 0.5/fps, k/fps + 0.5/fps).
    Max-pooling keeps an onset's peak height, which averaging or interpolating would dilute.

    Args:
        wave: (N,) mono waveform.
        sample_rate: rate of `wave` in Hz.
        num_frames: number of motion frames; the last must lie inside the audio.
        fps: motion frame rate (§4.4: 30).
        hop_seconds: hop of librosa's onset envelope (must be shorter than a motion frame).

    Returns:
        (num_frames,) float32, ≥ 0 (librosa's units: rectified log-mel flux).
    """
    wave = check_wave(wave)
    motion_frame_times(num_frames, fps, len(wave) / sample_rate)
    hop_length = round(hop_seconds * sample_rate)
    if not 1 <= hop_length < sample_rate / fps:
        raise ValueError(
            f"hop_seconds={hop_seconds} gives {hop_length} samples; it must be at least one sample and shorter "
            f"than a motion frame ({sample_rate / fps:.1f} samples)"
        )
    strength = librosa.onset.onset_strength(y=wave, sr=sample_rate, hop_length=hop_length)
    strength_times = librosa.times_like(strength, sr=sample_rate, hop_length=hop_length)
    frame_of_value = np.floor(strength_times * fps + 0.5).astype(np.int64)
    inside = frame_of_value < num_frames
    pooled = np.zeros(num_frames, dtype=np.float64)
    np.maximum.at(pooled, frame_of_value[inside], strength[inside])
    return pooled.astype(np.float32)


def onset_times(wave: np.ndarray, sample_rate: int = 16000, hop_length: int = 512) -> np.ndarray:
    """Audio beat times for the BC metric: `librosa.onset.onset_detect(..., units="time")` (§8.1).

    Every other argument stays at librosa's default, as in the reference evaluation (librosa 0.10.1).

    Args:
        wave: (N,) mono waveform (the reference passes float32).
        sample_rate: rate of `wave` in Hz (§8.1: 16 kHz).
        hop_length: onset-detection hop in samples (§8.1: 512).

    Returns:
        (K,) float64 onset times in seconds from the start of `wave`.
    """
    wave = check_wave(wave)
    return librosa.onset.onset_detect(y=wave, sr=sample_rate, hop_length=hop_length, units="time")
