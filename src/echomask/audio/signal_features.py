"""Low-level signal speech features, the stand-in for HuBERT on the synthetic demo corpus (SPEC §4.4).

A randomly initialised HuBERT (`tiny-random`) normalises its input and layer-normalises every frame, so its
features carry next to nothing of the loudness envelope or the onsets that drive the synthetic corpus' motion
(a ridge probe recovers under 7 % of the envelope's variance from any of its layers). With it the generator
cannot learn to follow the speech, and a speech-vs-shuffled-audio comparison says nothing. `SignalFeatures`
gives the generator what the synthetic speech actually encodes, at the motion frame rate:

- low: log-mel bands (spectral shape: vowels, plosive bursts), the RMS envelope and the onset strength;
- high: their frame-to-frame differences (onsets and releases),

each channel standardised over the file, then mapped to `out_dim` by the same fixed orthonormal matrix the
HuBERT features use (an isometric embedding: norms and angles are kept). Select it with ``hubert: signal``.
Real speech wants a pretrained HuBERT; these features are for the synthetic corpus and for tests.
"""
from __future__ import annotations

import logging

import librosa
import numpy as np

from echomask.audio.features import MOTION_FPS, amplitude_envelope, check_wave, motion_frame_times, onset_strength
from echomask.audio.hubert import HubertFeatures, orthonormal_projection
from echomask.precision import AUTO
from echomask.audio.io import SAMPLE_RATE

logger = logging.getLogger(__name__)

SIGNAL = "signal"
# Bump when the computation changes in a way the other cache-key fields do not capture.
SIGNAL_FEATURE_VERSION = 1
# Added to each channel's standard deviation: a constant channel (silence) stays 0 instead of dividing by 0.
STANDARDISE_EPSILON = 1e-5


def standardise(features: np.ndarray) -> np.ndarray:
    """(T, C) -> (T, C): every channel to zero mean and unit variance over the file."""
    return (features - features.mean(axis=0)) / (features.std(axis=0) + STANDARDISE_EPSILON)


class SignalFeatures:
    """Waveform -> (low, high) signal features, one projected vector per motion frame (module docstring).

    Args:
        out_dim: feature size after the orthonormal projection (= the generator's speech width).
        projection_seed: seed of the orthonormal matrix.
        fps: motion frame rate (SPEC §4.4: 30).
        num_mels: log-mel bands.
        fft_seconds, hop_seconds: mel analysis window and hop.
    """

    def __init__(
        self,
        out_dim: int = 256,
        projection_seed: int = 0,
        fps: float = MOTION_FPS,
        num_mels: int = 32,
        fft_seconds: float = 0.032,
        hop_seconds: float = 0.01,
    ):
        if out_dim < 1:
            raise ValueError(f"out_dim must be positive, got {out_dim}")
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if num_mels < 1:
            raise ValueError(f"num_mels must be positive, got {num_mels}")
        if not 0 < hop_seconds < 1 / fps:
            raise ValueError(f"hop_seconds must lie in (0, 1/fps = {1 / fps:.4f}), got {hop_seconds}")
        if fft_seconds < hop_seconds:
            raise ValueError(f"fft_seconds ({fft_seconds}) must be at least hop_seconds ({hop_seconds})")
        self.out_dim = out_dim
        self.projection_seed = projection_seed
        self.fps = fps
        self.num_mels = num_mels
        self.fft_length = round(fft_seconds * SAMPLE_RATE)
        self.hop_length = round(hop_seconds * SAMPLE_RATE)
        self.channels = num_mels + 2  # mel bands, envelope, onset strength
        self.projection = orthonormal_projection(self.channels, out_dim, projection_seed)

    def cache_key(self) -> dict:
        """Everything that changes the output, as a JSON-able dict."""
        return {
            "extractor": SIGNAL,
            "version": SIGNAL_FEATURE_VERSION,
            "sample_rate": SAMPLE_RATE,
            "fps": self.fps,
            "num_mels": self.num_mels,
            "fft_length": self.fft_length,
            "hop_length": self.hop_length,
            "projection": "orthonormal",
            "projection_seed": self.projection_seed,
            "out_dim": self.out_dim,
        }

    def log_mel(self, wave: np.ndarray, times: np.ndarray) -> np.ndarray:
        """(N,) 16 kHz waveform -> (T, num_mels) log-mel power, interpolated to the motion instants `times`."""
        power = librosa.feature.melspectrogram(
            y=wave, sr=SAMPLE_RATE, n_fft=self.fft_length, hop_length=self.hop_length, n_mels=self.num_mels
        )
        log_power = librosa.power_to_db(power, ref=1.0)  # (num_mels, frames)
        mel_times = librosa.times_like(log_power, sr=SAMPLE_RATE, hop_length=self.hop_length)
        return np.stack([np.interp(times, mel_times, band) for band in log_power], axis=1)

    def __call__(self, wave16k: np.ndarray, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
        """Features for one waveform (the `HubertFeatures` interface).

        Args:
            wave16k: (N,) mono waveform at 16 kHz.
            num_frames: number of motion frames T; frame T − 1 (at (T − 1)/fps s) must lie inside the audio.

        Returns:
            low, high: (T, out_dim) float32 each.
        """
        wave = check_wave(wave16k).astype(np.float32, copy=False)
        times = motion_frame_times(num_frames, self.fps, len(wave) / SAMPLE_RATE)
        low = np.concatenate(
            [
                self.log_mel(wave, times),
                amplitude_envelope(wave, SAMPLE_RATE, num_frames, fps=self.fps)[:, None],
                onset_strength(wave, SAMPLE_RATE, num_frames, fps=self.fps)[:, None],
            ],
            axis=1,
        ).astype(np.float64)
        high = np.diff(low, axis=0, prepend=low[:1])
        projection = self.projection.numpy().astype(np.float64)
        return tuple((standardise(features) @ projection).astype(np.float32) for features in (low, high))


SpeechFeatures = SignalFeatures | HubertFeatures
"""Either extractor: ``(wave16k (N,), num_frames) -> (low, high) (T, out_dim)``, ``cache_key()``, ``projection``."""


def speech_features(
    model: str,
    low_layer: int | None,
    high_layer: int | None,
    out_dim: int,
    projection_seed: int,
    fps: float = MOTION_FPS,
    progress: bool = False,
    precision: str = AUTO,
) -> SpeechFeatures:
    """The speech-feature extractor a data module or a checkpoint names (its ``hubert`` setting):
    `SignalFeatures` for ``model="signal"`` (the HuBERT layers are not used; numpy in float64, no precision),
    else `HubertFeatures` at ``precision`` (default: auto, `echomask.precision`)."""
    if model == SIGNAL:
        logger.info(
            "speech features: low-level signal features (log-mel, envelope, onset strength), no HuBERT: "
            "meant for the synthetic corpus; use a pretrained HuBERT for real speech"
        )
        return SignalFeatures(out_dim=out_dim, projection_seed=projection_seed, fps=fps)
    return HubertFeatures(
        model=model,
        low_layer=low_layer,
        high_layer=high_layer,
        out_dim=out_dim,
        projection_seed=projection_seed,
        fps=fps,
        progress=progress,
        precision=precision,
    )
