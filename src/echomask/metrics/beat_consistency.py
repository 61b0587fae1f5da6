"""Beat consistency (BC) between speech onsets and upper-body motion beats (SPEC §8.1).

Two layers:

* pure NumPy functions, one per step of the protocol, so that every intermediate can be checked against
  ``shared/golden/beat_consistency.npz``: :func:`fold_positions`, :func:`paper_loaded_audio`,
  :func:`scored_audio`, :func:`audio_beats`, :func:`joint_speeds`, :func:`motion_beats`,
  :func:`alignment_score` and :func:`sequence_beat_consistency`;
* :class:`BeatConsistency`, a torchmetrics ``Metric`` that accumulates the frame-weighted mean over sequences
  (two float64 sum states, so DDP is one all-reduce).

Two protocols (named in every report):

``"paper"`` reproduces the evaluation loop that produced the EMAGE paper numbers, quirks included:
  1. the joint positions are *folded* to ``|x - per-column sequence mean|`` before the motion beats are found
     (the paper-era L1 diversity overwrote the positions in place and BC ran on the result);
  2. the 16 kHz audio goes through what ``librosa.load(path, sr=22050)`` does to a 16 kHz float wav and is then
     resampled back to 16 kHz; it is truncated to ``int(16000 / 30 * n)`` samples and sliced
     ``[32000 : len(untruncated) - 32000]`` (the end index uses the *untruncated* length);
  3. the speed threshold is 0.3.

``"clean"`` uses the joint positions as they are, the 16 kHz audio as is, the slice
``[32000 : int((n - 60) / 30 * 16000)]`` and the later release's threshold 0.10.

Both protocols share one more reference quirk that the published numbers depend on: a local speed minimum
found at index ``k`` of ``speed[60 : n - 60]`` is kept when ``speed[k] > threshold``, i.e. the threshold is
tested at the *relative* index ``k`` (frame ``k`` of the sequence), not at the frame ``k + 60`` where the
minimum lies. "Fixing" it changes BC a lot (0.55 → 0.26 on the golden case A).
"""
from __future__ import annotations

from collections.abc import Sequence

import librosa
import numpy as np
import scipy.signal
import torch
from torch import Tensor
from torchmetrics import Metric

from echomask.audio.features import onset_times
from echomask.motion.skeleton import NUM_JOINTS, UPPER_JOINTS

PROTOCOLS = ("paper", "clean")
PAPER_THRESHOLD = 0.3  # §8.1: the paper-era normalised-speed threshold
CLEAN_THRESHOLD = 0.10  # §8.1: the threshold of the later release
PAPER_LOAD_RATE = 22050  # librosa.load's default rate, which the paper-era loader used for 16 kHz wavs
PAPER_RESAMPLER = "soxr_hq"  # librosa 0.10's default res_type, used both by librosa.load and librosa.resample


def default_threshold(protocol: str) -> float:
    """The normalised-speed threshold of a protocol: 0.3 for ``"paper"``, 0.10 for ``"clean"`` (SPEC §8.1)."""
    thresholds = {"paper": PAPER_THRESHOLD, "clean": CLEAN_THRESHOLD}
    if protocol not in thresholds:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    return thresholds[protocol]


# ----------------------------------------------------------------------------------------------- motion side


def fold_positions(positions: np.ndarray) -> np.ndarray:
    """``|x - per-column sequence mean|``: the positions the paper-era BC actually saw (SPEC §8.1, quirk 1).

    Args:
        positions: ``(T, 55, 3)`` joint positions of one sequence.

    Returns:
        A new ``(T, 55, 3)`` array in the input's dtype (the caller's array is not modified). The reference
        folded the float32 positions in float32; keeping the dtype reproduces its array bit for bit.
    """
    return np.abs(positions - positions.mean(axis=0))


def joint_speeds(positions: np.ndarray, joint_mean_speed: np.ndarray, fps: float = 30) -> np.ndarray:
    """Per-joint speed divided by the joint's mean speed.

    Velocities are central differences ``(x[t+1] - x[t-1]) / (2 / fps)``, with a forward difference at the
    first frame and a backward difference at the last one.

    Args:
        positions: ``(T, J, 3)`` joint positions in metres, ``T >= 2``.
        joint_mean_speed: ``(J,)`` mean speed of each joint (BEAT2's ``mean_vel_smplxflame_30.npy``).
        fps: motion frame rate.

    Returns:
        ``(T, J)`` float64 normalised speeds.
    """
    positions = positions.astype(np.float64)
    velocity = np.empty_like(positions)
    velocity[1:-1] = (positions[2:] - positions[:-2]) / (2 / fps)
    velocity[0] = (positions[1] - positions[0]) * fps
    velocity[-1] = (positions[-1] - positions[-2]) * fps
    return np.linalg.norm(velocity, axis=-1) / joint_mean_speed.astype(np.float64)


def motion_beats(
    positions: np.ndarray,
    joint_mean_speed: np.ndarray,
    *,
    threshold: float,
    order: int = 7,  # §8.1: strict minima over ±7 frames
    trim_frames: int = 60,  # §8.1: the first and last 2 s are ignored
    fps: float = 30,
) -> list[np.ndarray]:
    """Motion beats of every joint: strict local minima of the normalised speed.

    Candidates are ``scipy.signal.argrelextrema(speed[trim : T - trim], np.less, order)``; a candidate ``k``
    (relative to frame ``trim``) is kept when ``speed[k] > threshold`` -- the reference tests the threshold at
    the *relative* index (module docstring). The beat time is ``k / fps`` seconds after frame ``trim``.

    Args:
        positions: ``(T, J, 3)`` joint positions (already folded for the paper protocol).
        joint_mean_speed: ``(J,)``.

    Returns:
        One int64 array of beat indices ``k`` (relative to frame ``trim_frames``) per joint, ``J`` arrays.
    """
    speed = joint_speeds(positions, joint_mean_speed, fps)
    num_frames = speed.shape[0]
    scored = speed[trim_frames : num_frames - trim_frames]
    beats = []
    for joint in range(speed.shape[1]):
        (candidates,) = scipy.signal.argrelextrema(scored[:, joint], np.less, order=order)
        beats.append(candidates[speed[candidates, joint] > threshold].astype(np.int64))
    return beats


# ------------------------------------------------------------------------------------------------ audio side


def paper_loaded_audio(audio: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
    """What the paper-era loader made of a ``sample_rate`` float wav (SPEC §8.1, quirk 2).

    ``librosa.load(wav, sr=22050)`` resamples the float32 samples to 22.05 kHz (soxr_hq) and the loop then
    resampled them back to ``sample_rate`` with ``librosa.resample`` (soxr_hq).

    Args:
        audio: ``(N,)`` samples at ``sample_rate``.

    Returns:
        ``(N',)`` float32 samples at ``sample_rate`` (``N' == N`` for 16 kHz input).
    """
    as_loaded = librosa.resample(
        audio.astype(np.float32),
        orig_sr=sample_rate,
        target_sr=PAPER_LOAD_RATE,
        res_type=PAPER_RESAMPLER,
    )
    return librosa.resample(as_loaded, orig_sr=PAPER_LOAD_RATE, target_sr=sample_rate, res_type=PAPER_RESAMPLER)


def scored_audio(
    audio: np.ndarray,
    num_frames: int,
    *,
    protocol: str,
    fps: float = 30,
    sample_rate: int = 16000,
    audio_skip_s: float = 2.0,  # §8.1: onsets after the first 2 s
    trim_frames: int = 60,  # §8.1: the motion side ignores the first and last 60 frames
) -> np.ndarray:
    """The slice of the audio whose onsets are scored; onset times are relative to its start.

    * ``"paper"``: :func:`paper_loaded_audio`, truncated to ``int(sample_rate / fps * T)`` samples, then
      sliced ``[skip : len(loaded) - skip]`` with ``skip = audio_skip_s * sample_rate`` -- the end index comes
      from the untruncated length, so it only bites when the audio is shorter than the motion + 2 s.
    * ``"clean"``: the audio as is, sliced ``[skip : int((T - trim_frames) / fps * sample_rate)]``.

    Args:
        audio: ``(N,)`` speech at ``sample_rate``.
        num_frames: ``T``, the number of motion frames of the sequence.
    """
    skip = int(audio_skip_s * sample_rate)
    if protocol == "paper":
        loaded = paper_loaded_audio(audio, sample_rate)
        truncated = loaded[: int(sample_rate / fps * num_frames)]
        return truncated[skip : len(loaded) - skip]
    if protocol == "clean":
        return audio[skip : int((num_frames - trim_frames) / fps * sample_rate)]
    raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")


def audio_beats(
    audio: np.ndarray,
    num_frames: int,
    *,
    protocol: str,
    fps: float = 30,
    sample_rate: int = 16000,
    hop_length: int = 512,  # §8.1: librosa onset detection at 16 kHz, hop 512
    audio_skip_s: float = 2.0,
    trim_frames: int = 60,
) -> np.ndarray:
    """Onset times in seconds, relative to the start of :func:`scored_audio` (i.e. to ``audio_skip_s``)."""
    segment = scored_audio(
        audio,
        num_frames,
        protocol=protocol,
        fps=fps,
        sample_rate=sample_rate,
        audio_skip_s=audio_skip_s,
        trim_frames=trim_frames,
    )
    if segment.size == 0:
        raise ValueError(
            f"BC: the scored audio slice is empty ({len(audio)} samples at {sample_rate} Hz for {num_frames} motion "
            f"frames, protocol {protocol!r}); the audio must cover the motion beyond the first {audio_skip_s} s"
        )
    return onset_times(segment, sample_rate=sample_rate, hop_length=hop_length)


# ------------------------------------------------------------------------------------------------- the score


def alignment_score(onsets_s: np.ndarray, beats_s: np.ndarray, sigma: float = 0.3) -> float:
    """Mean over audio onsets of ``exp(-d² / (2 σ²))``, ``d`` = distance to the nearest motion beat.

    Args:
        onsets_s: ``(A,)`` audio onset times in seconds, ``A >= 1``.
        beats_s: ``(B,)`` motion beat times in seconds; with no beats every term is 0 (``d = inf``).
        sigma: Gaussian width in seconds (§8.1: 0.3).
    """
    if beats_s.size == 0:
        return 0.0
    nearest = np.abs(onsets_s[:, None] - beats_s[None, :]).min(axis=1)
    return float(np.exp(-(nearest**2) / (2 * sigma**2)).mean())


def sequence_beat_consistency(
    positions: np.ndarray,
    audio: np.ndarray,
    joint_mean_speed: np.ndarray,
    *,
    protocol: str = "paper",
    threshold: float | None = None,
    sigma: float = 0.3,
    order: int = 7,
    trim_frames: int = 60,
    audio_skip_s: float = 2.0,
    fps: float = 30,
    sample_rate: int = 16000,
    hop_length: int = 512,
    upper_body: Sequence[int] = UPPER_JOINTS,
) -> float:
    """BC of one sequence: the mean over the ``upper_body`` joints of :func:`alignment_score`.

    Args:
        positions: ``(T, 55, 3)`` joint positions in metres (not modified).
        audio: ``(N,)`` speech at ``sample_rate``.
        joint_mean_speed: ``(55,)``.
        threshold: ``None`` takes the protocol's threshold (0.3 paper, 0.10 clean).
    """
    if threshold is None:
        threshold = default_threshold(protocol)
    onsets = audio_beats(
        audio,
        positions.shape[0],
        protocol=protocol,
        fps=fps,
        sample_rate=sample_rate,
        hop_length=hop_length,
        audio_skip_s=audio_skip_s,
        trim_frames=trim_frames,
    )
    if onsets.size == 0:
        raise ValueError(
            f"BC: no audio onsets were found in the scored audio slice ({protocol!r} protocol); "
            "BC is undefined for silent audio"
        )
    motion = fold_positions(positions) if protocol == "paper" else positions
    beats = motion_beats(motion, joint_mean_speed, threshold=threshold, order=order, trim_frames=trim_frames, fps=fps)
    return float(np.mean([alignment_score(onsets, beats[joint] / fps, sigma) for joint in upper_body]))


# ------------------------------------------------------------------------------------------------ the metric


def _as_numpy(name: str, value: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(value, Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    raise ValueError(
        f"BeatConsistency: {name} must be a torch.Tensor or numpy array, got {type(value).__name__}"
    )


class BeatConsistency(Metric):
    """Beat consistency (SPEC §8.1), frame-weighted over sequences: ``Σ BC_i (T_i - 2·trim) / Σ (T_i - 2·trim)``.

    Reports the RAW value (the paper prints it ×10, see :mod:`echomask.metrics.display`).

    Args:
        joint_mean_speed: ``(55,)`` per-joint mean speed used to normalise speeds (BEAT2's
            ``weights/mean_vel_smplxflame_30.npy``).
        protocol: ``"paper"`` (default; folded positions, 22.05 kHz audio round trip, threshold 0.3) or
            ``"clean"`` (positions and 16 kHz audio as they are, threshold 0.10). See the module docstring.
        threshold: normalised-speed threshold of a motion beat; ``None`` takes the protocol's.
        sigma: Gaussian width in seconds.
        order: a beat is a strict minimum over ``±order`` frames.
        trim_frames: frames ignored at each end of the motion.
        audio_skip_s: seconds of audio ignored at the start.
        fps: motion frame rate.
        sample_rate: audio sample rate of the ``audio`` passed to :meth:`update`.
        hop_length: onset-detection hop in samples.
        upper_body: the scored joints.

    Example:
        >>> bc = BeatConsistency(joint_mean_speed=mean_speed)          # doctest: +SKIP
        >>> bc.update(joints, audio)  # (T, 55, 3), (N,) at 16 kHz     # doctest: +SKIP
        >>> bc.compute()                                                # doctest: +SKIP
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    weighted_score_sum: Tensor
    weight_sum: Tensor

    def __init__(
        self,
        joint_mean_speed: Tensor | np.ndarray,
        protocol: str = "paper",
        threshold: float | None = None,
        sigma: float = 0.3,  # §8.1
        order: int = 7,  # §8.1
        trim_frames: int = 60,  # §8.1: 2 s at 30 fps
        audio_skip_s: float = 2.0,  # §8.1
        fps: int = 30,
        sample_rate: int = 16000,  # §8.1: onsets at 16 kHz
        hop_length: int = 512,  # §8.1
        upper_body: Sequence[int] = UPPER_JOINTS,  # §8.1: joints 3, 6, 9, 12, 13-21
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if protocol not in PROTOCOLS:
            raise ValueError(f"BeatConsistency: protocol must be one of {PROTOCOLS}, got {protocol!r}")
        mean_speed = np.asarray(_as_numpy("joint_mean_speed", joint_mean_speed), dtype=np.float64)
        if mean_speed.shape != (NUM_JOINTS,):
            raise ValueError(
                f"BeatConsistency: joint_mean_speed must have shape ({NUM_JOINTS},), got {tuple(mean_speed.shape)}"
            )
        if not np.all(np.isfinite(mean_speed)) or np.any(mean_speed <= 0):
            raise ValueError("BeatConsistency: joint_mean_speed must be finite and positive for every joint")
        if threshold is None:
            threshold = default_threshold(protocol)
        for name, value in (("threshold", threshold), ("sigma", sigma), ("fps", fps)):
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f"BeatConsistency: {name} must be a finite positive number, got {value!r}")
        if not np.isfinite(audio_skip_s) or audio_skip_s < 0:
            raise ValueError(f"BeatConsistency: audio_skip_s must be a finite number >= 0, got {audio_skip_s!r}")
        for name, value in (("order", order), ("sample_rate", sample_rate), ("hop_length", hop_length)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"BeatConsistency: {name} must be a positive integer, got {value!r}")
        if not isinstance(trim_frames, int) or trim_frames < 0:
            raise ValueError(f"BeatConsistency: trim_frames must be a non-negative integer, got {trim_frames!r}")
        upper_body = tuple(int(joint) for joint in upper_body)
        valid_joints = all(0 <= joint < NUM_JOINTS for joint in upper_body)
        if not upper_body or len(set(upper_body)) != len(upper_body) or not valid_joints:
            raise ValueError(
                f"BeatConsistency: upper_body must be distinct joint indices in [0, {NUM_JOINTS}), got {upper_body}"
            )

        self.protocol = protocol
        self.joint_mean_speed = mean_speed
        self.threshold = float(threshold)
        self.sigma = float(sigma)
        self.order = order
        self.trim_frames = trim_frames
        self.audio_skip_s = float(audio_skip_s)
        self.fps = fps
        self.sample_rate = sample_rate
        self.hop_length = hop_length
        self.upper_body = upper_body

        self.add_state("weighted_score_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("weight_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(
        self,
        joints: Tensor | np.ndarray | Sequence[Tensor | np.ndarray],
        audio: Tensor | np.ndarray | Sequence[Tensor | np.ndarray],
    ) -> None:
        """Add one sequence, or a list of sequences with a matching list of audio tracks.

        Args:
            joints: ``(T, 55, 3)`` joint positions in metres (``T > 2 * trim_frames``), or a list of them.
            audio: ``(N,)`` speech at ``sample_rate``, or a list of them.
        """
        if isinstance(joints, (list, tuple)):
            if not isinstance(audio, (list, tuple)) or len(audio) != len(joints):
                raise ValueError(
                    "BeatConsistency.update: a list of joint sequences needs a list of as many audio tracks"
                )
            pairs = list(zip(joints, audio))
        else:
            pairs = [(joints, audio)]
        for positions, wave in pairs:
            score, weight = self._score_sequence(_as_numpy("joints", positions), _as_numpy("audio", wave))
            self.weighted_score_sum += score * weight
            self.weight_sum += weight

    def _score_sequence(self, positions: np.ndarray, wave: np.ndarray) -> tuple[float, int]:
        if positions.ndim != 3 or positions.shape[1:] != (NUM_JOINTS, 3):
            raise ValueError(
                f"BeatConsistency.update: joints must have shape (T, {NUM_JOINTS}, 3), got {tuple(positions.shape)}"
            )
        num_frames = positions.shape[0]
        if num_frames <= 2 * self.trim_frames:
            raise ValueError(
                f"BeatConsistency.update: a sequence of {num_frames} frames is too short; BC ignores "
                f"{self.trim_frames} frames at each end and needs more than {2 * self.trim_frames}"
            )
        if wave.ndim != 1:
            raise ValueError(f"BeatConsistency.update: audio must have shape (N,), got {tuple(wave.shape)}")
        if not np.all(np.isfinite(positions)):
            raise ValueError("BeatConsistency.update: joints contain NaN or Inf")
        if not np.all(np.isfinite(wave)):
            raise ValueError("BeatConsistency.update: audio contains NaN or Inf")
        score = sequence_beat_consistency(
            positions,
            wave,
            self.joint_mean_speed,
            protocol=self.protocol,
            threshold=self.threshold,
            sigma=self.sigma,
            order=self.order,
            trim_frames=self.trim_frames,
            audio_skip_s=self.audio_skip_s,
            fps=self.fps,
            sample_rate=self.sample_rate,
            hop_length=self.hop_length,
            upper_body=self.upper_body,
        )
        return score, num_frames - 2 * self.trim_frames

    def compute(self) -> Tensor:
        """The frame-weighted mean BC (raw, in [0, 1])."""
        if self.weight_sum <= 0:
            raise ValueError("BeatConsistency.compute: no sequence was added (call update first)")
        return self.weighted_score_sum / self.weight_sum
