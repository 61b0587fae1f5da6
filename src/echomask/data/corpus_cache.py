"""The disk-backed per-sequence cache that every stage reads (SPEC §4.5).

One cache folder per setting of everything that changes its contents (the corpus files, the
speech-feature settings, the kinematics): `<cache_dir>/<key hash>/`. Inside, each sequence has
a folder of `.npy` arrays, opened memory-mapped so RAM does not grow with the corpus, and an
`entry.json` with the shape and sha256 of every array. An entry whose files are missing, whose
checksums do not match or whose key differs is reported and rebuilt, never used.

Arrays per sequence, T = motion frames after cropping both streams to the shorter whole second:

| name           | shape       | content                                                   |
|----------------|-------------|-----------------------------------------------------------|
| motion         | (T, 337)    | 55 joints in 6D + translation + foot contact (§4.2)       |
| expressions    | (T, 100)    | FLAME expression coefficients                             |
| joints         | (T, 55, 3)  | joint positions from the configured kinematics (§4.3)    |
| audio_low      | (T, F)      | HuBERT low-level features at 30 fps, projected (§4.4)     |
| audio_high     | (T, F)      | HuBERT high-level features at 30 fps, projected           |
| envelope       | (T,)        | amplitude envelope at 30 fps                              |
| onset_strength | (T,)        | onset strength at 30 fps                                  |
| audio          | (T·sr/fps,) | the 16 kHz waveform, cropped like the motion              |
| betas          | (300,)      | SMPL-X shape                                              |
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from echomask.audio.cache import KEY_FOLDER_DIGITS, FeatureCache, key_json
from echomask.audio.features import amplitude_envelope, onset_strength
from echomask.data.beat2 import BEAT2Corpus, Sequence, read_audio_checked, read_motion
from echomask.motion.kinematics import Kinematics
from echomask.motion.parts import foot_contact, smplx_to_whole_body

if TYPE_CHECKING:  # importing transformers costs seconds; only the datamodule needs it at run time
    from echomask.audio.signal_features import SpeechFeatures

CACHE_FORMAT_VERSION = 1
ARRAY_NAMES = (
    "motion",
    "expressions",
    "joints",
    "audio_low",
    "audio_high",
    "envelope",
    "onset_strength",
    "audio",
    "betas",
)
ENTRY_FILE = "entry.json"

log = logging.getLogger(__name__)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _key_hash(key: dict) -> str:
    return hashlib.sha256(key_json(key).encode()).hexdigest()[:KEY_FOLDER_DIGITS]


def crop_lengths(motion_frames: int, audio_samples: int, fps: int, sample_rate: int) -> tuple[int, int]:
    """Crop motion and audio to the shorter whole second, as the reference pipeline does (§4.5).

    Returns (frames, samples); both cover the same whole number of seconds.
    """
    seconds = min(motion_frames // fps, audio_samples // sample_rate)
    if seconds < 1:
        raise ValueError(
            f"a sequence needs at least 1 s of motion and audio, got {motion_frames} frames "
            f"and {audio_samples} samples"
        )
    return seconds * fps, seconds * sample_rate


def mean_joint_speed(joint_sequences: Iterable[np.ndarray], fps: int) -> np.ndarray:
    """Mean speed in m/s of each joint over every frame of the given sequences: the BC normaliser (§8.1).

    BEAT2 ships this statistic as `weights/mean_vel_smplxflame_30.npy`; this computes it for any corpus.
    Velocities are the metric's central differences (forward/backward at the first/last frame).

    Args:
        joint_sequences: `(T, J, 3)` joint positions in metres per sequence, `T >= 2`.
        fps: motion frame rate.

    Returns:
        `(J,)` float32.
    """
    total, frames = None, 0
    for joints in joint_sequences:
        velocity = np.gradient(np.asarray(joints, dtype=np.float64), 1.0 / fps, axis=0)
        speed_sum = np.linalg.norm(velocity, axis=-1).sum(axis=0)
        total = speed_sum if total is None else total + speed_sum
        frames += len(joints)
    if frames == 0:
        raise ValueError("mean_joint_speed: no joint sequences were given")
    return (total / frames).astype(np.float32)


@dataclass(frozen=True)
class CachedSequence:
    """One sequence in the cache; arrays open lazily, memory-mapped, once per process."""

    id: str
    speaker: int
    split: str
    num_frames: int
    folder: Path

    def array(self, name: str) -> np.ndarray:
        return _open_memmap(self.folder / f"{name}.npy")


_open_arrays: dict[tuple[int, Path], np.ndarray] = {}


def _open_memmap(path: Path) -> np.ndarray:
    # A per-process table: DataLoader workers each open their own maps after the fork.
    key = (os.getpid(), path)
    if key not in _open_arrays:
        _open_arrays[key] = np.load(path, mmap_mode="r")
    return _open_arrays[key]


class CorpusCache:
    """Builds, verifies and opens the per-sequence cache of one corpus and feature setting.

    Args:
        corpus: the BEAT2 corpus to cache.
        cache_dir: parent folder of all caches (`data/cache` by default).
        speech_features: the HuBERT feature extractor (its `cache_key()` is part of the key).
        kinematics: joint positions for foot contact and metrics (its `label` is part of the key).
        fps: motion frame rate (BEAT2: 30).
        sample_rate: audio rate (BEAT2 wave16k: 16000).
    """

    def __init__(
        self,
        corpus: BEAT2Corpus,
        cache_dir: str | Path,
        speech_features: SpeechFeatures,
        kinematics: Kinematics,
        fps: int = 30,
        sample_rate: int = 16000,
    ):
        self.corpus = corpus
        self.speech_features = speech_features
        self.kinematics = kinematics
        self.fps = fps
        self.sample_rate = sample_rate
        self.key = {
            "format": CACHE_FORMAT_VERSION,
            "speech_features": speech_features.cache_key(),
            "kinematics": kinematics.label,
            "fps": fps,
            "sample_rate": sample_rate,
        }
        self.folder = Path(cache_dir) / _key_hash(self.key)
        # HuBERT features are the expensive part: they are cached per audio file on their own, so a
        # change that does not touch them (e.g. the kinematics) does not recompute them.
        self.speech_cache = FeatureCache(Path(cache_dir) / "speech")

    def entry_key(self, sequence: Sequence) -> dict:
        """Everything that changes one entry: the global key plus the source files' size and time."""
        sources = {}
        for name, path in (("motion", sequence.motion_path), ("audio", sequence.audio_path)):
            stat = Path(path).stat()
            sources[name] = [str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns]
        return {**self.key, "id": sequence.id, "sources": sources}

    def entry_problem(self, sequence: Sequence, full_check: bool = True) -> str | None:
        """Why the cache entry of `sequence` cannot be used, or None when it can."""
        folder = self.folder / sequence.id
        entry_path = folder / ENTRY_FILE
        if not entry_path.exists():
            return "missing"
        try:
            entry = json.loads(entry_path.read_text())
        except (OSError, json.JSONDecodeError):
            return f"unreadable {entry_path}"
        if entry.get("key") != self.entry_key(sequence):
            return "stale (settings or source files changed)"
        for name in ARRAY_NAMES:
            path = folder / f"{name}.npy"
            if not path.exists():
                return f"missing {path}"
            if full_check and _sha256(path) != entry["sha256"].get(name):
                return f"corrupt {path} (checksum mismatch)"
        return None

    def build(self, full_check: bool = True, progress: bool = True) -> None:
        """Make sure every sequence has a valid entry; (re)build the ones that do not."""
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "key.json").write_text(json.dumps(self.key, indent=2, sort_keys=True))
        to_build = []
        for sequence in self.corpus:
            problem = self.entry_problem(sequence, full_check=full_check)
            if problem is None:
                continue
            if problem != "missing":
                warnings.warn(f"cache entry of {sequence.id} is {problem}: rebuilding it", stacklevel=2)
            to_build.append(sequence)
        for sequence in tqdm(to_build, desc="caching sequences", disable=not progress or not to_build):
            self._build_entry(sequence)

    def _build_entry(self, sequence: Sequence) -> None:
        arrays = self.compute_arrays(sequence)
        folder = self.folder / sequence.id
        staging = self.folder / f".{sequence.id}.tmp{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        checksums = {}
        for name, array in arrays.items():
            path = staging / f"{name}.npy"
            np.save(path, np.ascontiguousarray(array))
            checksums[name] = _sha256(path)
        entry = {
            "key": self.entry_key(sequence),
            "speaker": sequence.speaker,
            "split": sequence.split,
            "num_frames": int(arrays["motion"].shape[0]),
            "shapes": {name: list(array.shape) for name, array in arrays.items()},
            "sha256": checksums,
        }
        (staging / ENTRY_FILE).write_text(json.dumps(entry, indent=2))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)

    @torch.no_grad()
    def compute_arrays(self, sequence: Sequence) -> dict[str, np.ndarray]:
        """Read one sequence and compute every cached array (see the module docstring)."""
        motion = read_motion(sequence.motion_path)
        wave = read_audio_checked(sequence.audio_path)
        frames, samples = crop_lengths(len(motion["poses"]), len(wave), self.fps, self.sample_rate)
        poses = torch.from_numpy(motion["poses"][:frames])
        trans = torch.from_numpy(motion["trans"][:frames])
        wave = wave[:samples]
        joints = self.kinematics(poses, trans)
        contact = foot_contact(joints)
        speech_key = {**self.key["speech_features"], "audio": self.entry_key(sequence)["sources"]["audio"], "frames": frames}
        speech = self.speech_cache.get_or_compute(
            sequence.id, speech_key, lambda: dict(zip(("low", "high"), self.speech_features(wave, frames)))
        )
        return {
            "motion": smplx_to_whole_body(poses, trans, contact).numpy().astype(np.float32),
            "expressions": motion["expressions"][:frames].astype(np.float32),
            "joints": joints.numpy().astype(np.float32),
            "audio_low": speech["low"].astype(np.float32),
            "audio_high": speech["high"].astype(np.float32),
            "envelope": amplitude_envelope(wave, self.sample_rate, frames, fps=self.fps),
            "onset_strength": onset_strength(wave, self.sample_rate, frames, fps=self.fps),
            "audio": wave.astype(np.float32),
            "betas": motion["betas"].astype(np.float32),
        }

    def sequences(self, splits: tuple[str, ...] | list[str]) -> list[CachedSequence]:
        """The cached sequences of the given splits (the cache must have been built)."""
        result = []
        for sequence in self.corpus:
            if sequence.split not in splits:
                continue
            entry_path = self.folder / sequence.id / ENTRY_FILE
            if not entry_path.exists():
                raise FileNotFoundError(
                    f"cache entry {entry_path} is missing: the cache was not built (call prepare_data)"
                )
            entry = json.loads(entry_path.read_text())
            result.append(
                CachedSequence(
                    id=sequence.id,
                    speaker=sequence.speaker,
                    split=sequence.split,
                    num_frames=entry["num_frames"],
                    folder=self.folder / sequence.id,
                )
            )
        return result

    def joint_mean_speed(self, splits: tuple[str, ...] | list[str] = ("train",)) -> np.ndarray:
        """Mean speed of each of the 55 joints in m/s over the given splits: the BC normaliser (§8.1).

        BEAT2 ships `weights/mean_vel_smplxflame_30.npy` for the real corpus; this is the same
        statistic for any other corpus. Speeds use the metric's central differences.
        """
        sequences = self.sequences(splits)
        if not sequences:
            raise ValueError(f"no sequences in splits {list(splits)} to compute joint mean speeds from")
        return mean_joint_speed((sequence.array("joints") for sequence in sequences), fps=self.fps)
