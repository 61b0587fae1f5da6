"""Reader for the BEAT2 corpus as it lies on disk (SPEC §4.1).

Layout read (``<root>`` may be the corpus folder itself or its parent)::

    <root>/beat_english_v2.0.0/
        train_test_split.csv          columns id,type; type in {train, val, test, additional}
        smplxflame_30/<id>.npz        poses (T,165), trans (T,3), expressions (T,100), betas (300,),
                                      mocap_frame_rate 30
        wave16k/<id>.wav              16 kHz mono
        textgrid/<id>.TextGrid        optional word alignments

Every problem found is a :class:`BEAT2FormatError` whose one-line message starts with the file
and says what is wrong with it. :class:`BEAT2Corpus` checks each sequence when it is built, so a
corpus that builds can be trained on; ``on_error="skip"`` drops bad sequences with a warning.
"""

from __future__ import annotations

import csv
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

CORPUS_DIR_NAME = "beat_english_v2.0.0"
SPLIT_CSV_NAME = "train_test_split.csv"
MOTION_DIR_NAME = "smplxflame_30"
AUDIO_DIR_NAME = "wave16k"
TEXTGRID_DIR_NAME = "textgrid"

SPLIT_TYPES = ("train", "val", "test", "additional")  # §4.1
MOTION_FPS = 30  # §4.1: mocap_frame_rate of smplxflame_30
AUDIO_SAMPLE_RATE = 16000  # §4.1: wave16k is 16 kHz mono
NUM_BETAS = 300  # §4.1: SMPL-X 2020 shape coefficients
PER_FRAME_WIDTHS = {
    "poses": 165,  # 55 SMPL-X joints x axis-angle
    "trans": 3,  # root translation in metres
    "expressions": 100,  # FLAME expression coefficients
}
MOTION_KEYS = (*PER_FRAME_WIDTHS, "betas", "mocap_frame_rate")
ON_ERROR_CHOICES = ("raise", "skip")

# What numpy, zipfile and zlib raise on a damaged archive or array.
_READ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)


class BEAT2FormatError(ValueError):
    """A BEAT2 file is missing or malformed; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class BEAT2SkipWarning(UserWarning):
    """A sequence was dropped from a corpus built with ``on_error="skip"``."""


@dataclass(frozen=True)
class Sequence:
    """One BEAT2 recording: motion, audio and (optionally) a word alignment."""

    id: str  # e.g. "2_scott_0_1_1"
    speaker: int  # e.g. 2
    split: str  # one of SPLIT_TYPES
    motion_path: Path
    audio_path: Path
    textgrid_path: Path | None = None


def _one_line(error: BaseException) -> str:
    """The message of ``error`` squeezed onto one line (library messages may span several)."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def speaker_of(seq_id: str) -> int:
    """Speaker number of a sequence id: ``"2_scott_0_1_1"`` -> 2."""
    head = seq_id.split("_", 1)[0]
    if not (head.isascii() and head.isdigit()):
        raise ValueError(f"sequence id {seq_id!r} does not start with a speaker number like '2_scott_0_1_1'")
    return int(head)


# --------------------------------------------------------------------------- split csv


def read_split_csv(path: str | Path) -> dict[str, str]:
    """Read ``train_test_split.csv`` into ``{sequence id: split}``, checking every row."""
    path = Path(path)
    if not path.is_file():
        raise BEAT2FormatError(path, "split file not found")
    try:
        reader = csv.DictReader(path.read_text(encoding="utf-8-sig").splitlines())
        header = [name.strip() for name in reader.fieldnames or []]
        reader.fieldnames = header
        rows = [(reader.line_num, row) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise BEAT2FormatError(path, f"unreadable split file ({_one_line(error)})") from None
    missing = [column for column in ("id", "type") if column not in header]
    if missing:
        raise BEAT2FormatError(path, f"missing column(s) {missing}: expected a header 'id,type', found {header}")
    split_of: dict[str, str] = {}
    for line_number, row in rows:
        seq_id, split = (row["id"] or "").strip(), (row["type"] or "").strip()
        where = f"line {line_number}"
        if not seq_id:
            raise BEAT2FormatError(path, f"{where}: empty id")
        try:
            speaker_of(seq_id)
        except ValueError as error:
            raise BEAT2FormatError(path, f"{where}: {error}") from None
        if split not in SPLIT_TYPES:
            raise BEAT2FormatError(path, f"{where}: unknown type {split!r} for {seq_id}, allowed: {SPLIT_TYPES}")
        if seq_id in split_of:
            raise BEAT2FormatError(path, f"{where}: duplicate id {seq_id}")
        split_of[seq_id] = split
    return split_of


# --------------------------------------------------------------------------- motion


def _open_npz(path: Path) -> np.lib.npyio.NpzFile:
    """Open a motion archive, turning every way it can be broken into a BEAT2FormatError."""
    if not path.is_file():
        raise BEAT2FormatError(path, "motion file not found")
    if not zipfile.is_zipfile(path):
        raise BEAT2FormatError(path, "not a readable .npz archive (corrupt or truncated)")
    try:
        archive = np.load(path, allow_pickle=False)
    except _READ_ERRORS as error:
        raise BEAT2FormatError(path, f"unreadable .npz archive ({_one_line(error)})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise BEAT2FormatError(path, "not a readable .npz archive (holds a single array)")
    return archive


def _read_numeric_array(archive: np.lib.npyio.NpzFile, path: Path, key: str) -> np.ndarray:
    """Read one array of the archive; it must be stored readably and hold numbers."""
    if key not in archive.files:
        raise BEAT2FormatError(path, f"missing key {key!r} (keys found: {archive.files})")
    try:
        array = archive[key]
    except _READ_ERRORS as error:
        raise BEAT2FormatError(path, f"array {key!r} is unreadable ({_one_line(error)})") from None
    if not isinstance(array, np.ndarray):  # np.load returns a member not stored as .npy as raw bytes
        raise BEAT2FormatError(path, f"member {key!r} is not a .npy array")
    if array.dtype.kind not in "fiu":
        raise BEAT2FormatError(path, f"array {key!r} has dtype {array.dtype}, expected numbers")
    return array


def _check_motion_shapes(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """poses (T,165), trans (T,3), expressions (T,100) with one T > 0, and betas (300,)."""
    for key, width in PER_FRAME_WIDTHS.items():
        shape = arrays[key].shape
        if len(shape) != 2 or shape[1] != width:
            raise BEAT2FormatError(path, f"array {key!r} has shape {shape}, expected (T, {width})")
    frame_counts = {key: arrays[key].shape[0] for key in PER_FRAME_WIDTHS}
    if len(set(frame_counts.values())) != 1:
        raise BEAT2FormatError(path, f"frame count T differs between arrays: {frame_counts}")
    if frame_counts["poses"] == 0:
        raise BEAT2FormatError(path, "no motion frames (T == 0)")
    if arrays["betas"].shape != (NUM_BETAS,):
        raise BEAT2FormatError(path, f"array 'betas' has shape {arrays['betas'].shape}, expected ({NUM_BETAS},)")


def read_motion(path: str | Path, fps: int = MOTION_FPS) -> dict[str, np.ndarray | int]:
    """Read and check one ``smplxflame_30/<id>.npz``.

    Returns ``poses`` (T, 165), ``trans`` (T, 3), ``expressions`` (T, 100), ``betas`` (300,),
    all float32 and finite, and ``fps`` (int, equal to the file's mocap_frame_rate).
    """
    path = Path(path)
    with _open_npz(path) as archive:
        arrays = {key: _read_numeric_array(archive, path, key) for key in MOTION_KEYS}
    frame_rate = arrays.pop("mocap_frame_rate")
    if frame_rate.size != 1 or frame_rate.item() != fps:
        raise BEAT2FormatError(path, f"mocap_frame_rate is {frame_rate.tolist()}, expected {fps}")
    _check_motion_shapes(path, arrays)
    with np.errstate(over="ignore"):  # values beyond float32 become inf and are reported just below
        motion = {key: array.astype(np.float32) for key, array in arrays.items()}
    for key, array in motion.items():
        bad_count = array.size - np.count_nonzero(np.isfinite(array))
        if bad_count:
            raise BEAT2FormatError(path, f"array {key!r} holds {bad_count} NaN/inf value(s) (as float32)")
    return {**motion, "fps": fps}


def motion_num_frames(path: str | Path) -> int:
    """Number of motion frames T of an npz, reading only its ``poses`` array."""
    path = Path(path)
    with _open_npz(path) as archive:
        poses = _read_numeric_array(archive, path, "poses")
    if poses.ndim != 2:
        expected = f"(T, {PER_FRAME_WIDTHS['poses']})"
        raise BEAT2FormatError(path, f"array 'poses' has shape {poses.shape}, expected {expected}")
    return poses.shape[0]


# --------------------------------------------------------------------------- audio


def check_audio_header(path: str | Path, sample_rate: int = AUDIO_SAMPLE_RATE) -> int:
    """Check from the header alone that an audio file is readable, mono, at ``sample_rate`` and not empty.

    BEAT2's wave16k is 16 kHz mono (§4.1); other audio is an error here, not resampled
    (``echomask.audio.io.load_audio`` is the reader that converts any audio).
    Returns the number of samples the header announces.
    """
    path = Path(path)
    if not path.is_file():
        raise BEAT2FormatError(path, "audio file not found")
    try:
        info = soundfile.info(str(path))
    except (soundfile.SoundFileError, RuntimeError, OSError) as error:
        raise BEAT2FormatError(path, f"unreadable audio ({_one_line(error)})") from None
    if info.samplerate != sample_rate:
        raise BEAT2FormatError(path, f"sample rate is {info.samplerate} Hz, expected {sample_rate} Hz")
    if info.channels != 1:
        raise BEAT2FormatError(path, f"audio has {info.channels} channels, expected mono")
    if info.frames <= 0:
        raise BEAT2FormatError(path, "empty audio (no samples)")
    return info.frames


def audio_duration(path: str | Path, sample_rate: int = AUDIO_SAMPLE_RATE) -> float:
    """Duration in seconds of a checked 16 kHz mono file, from its header."""
    return check_audio_header(path, sample_rate) / sample_rate


def read_audio_checked(path: str | Path, sample_rate: int = AUDIO_SAMPLE_RATE) -> np.ndarray:
    """Read a BEAT2 wave16k file as float32 (N,), checking rate, channels, length and finiteness."""
    path = Path(path)
    check_audio_header(path, sample_rate)
    try:
        wave, _ = soundfile.read(str(path), dtype="float32", always_2d=False)
    except (soundfile.SoundFileError, RuntimeError, OSError) as error:
        raise BEAT2FormatError(path, f"unreadable audio ({_one_line(error)})") from None
    if wave.size == 0:
        raise BEAT2FormatError(path, "empty audio (no samples)")
    bad_count = wave.size - np.count_nonzero(np.isfinite(wave))
    if bad_count:
        raise BEAT2FormatError(path, f"audio holds {bad_count} NaN/inf sample(s)")
    return wave


# --------------------------------------------------------------------------- corpus


def resolve_corpus_root(root: str | Path) -> Path:
    """``<root>/beat_english_v2.0.0`` if that folder exists, else ``<root>`` itself."""
    root = Path(root)
    if not root.is_dir():
        expected = f"a folder holding {CORPUS_DIR_NAME}/ or {SPLIT_CSV_NAME}"
        raise BEAT2FormatError(root, f"corpus root not found or not a folder (expected {expected})")
    nested = root / CORPUS_DIR_NAME
    return nested if nested.is_dir() else root


def _as_filter(values: Iterable | str | int | None, convert: Callable, name: str) -> frozenset | None:
    """A filter argument (None, one value or an iterable of values) as a frozenset."""
    if values is None:
        return None
    if isinstance(values, (str, int)):
        values = [values]
    try:
        return frozenset(convert(value) for value in values)
    except (TypeError, ValueError) as error:
        raise ValueError(f"BEAT2Corpus: bad {name} filter {values!r} ({_one_line(error)})") from None


class BEAT2Corpus:
    """The checked sequences of a BEAT2 corpus, in split-file order.

    Args:
        root: folder holding ``beat_english_v2.0.0/``, or that folder itself.
        speakers: keep only these speaker numbers (None: all). The benchmark uses ``[2]`` (§4.1).
        splits: keep only these splits, from ``SPLIT_TYPES`` (None: all).
        on_error: ``"raise"`` stops at the first bad sequence; ``"skip"`` warns
            (``BEAT2SkipWarning``) and drops it. Problems with the corpus as a whole always raise.
        check_audio: check each audio header (rate, channels, length) while building.
    """

    def __init__(
        self,
        root: str | Path,
        speakers: Iterable[int] | int | None = None,
        splits: Iterable[str] | str | None = None,
        on_error: str = "raise",
        check_audio: bool = True,
    ):
        if on_error not in ON_ERROR_CHOICES:
            raise ValueError(f"BEAT2Corpus: on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")
        self.speakers = _as_filter(speakers, int, "speakers")
        self.splits = _as_filter(splits, str, "splits")
        if self.splits is not None and not self.splits <= set(SPLIT_TYPES):
            unknown = sorted(self.splits - set(SPLIT_TYPES))
            raise ValueError(f"BEAT2Corpus: unknown split(s) {unknown}, allowed: {SPLIT_TYPES}")
        self.root = resolve_corpus_root(root)
        self.check_audio = check_audio
        split_of = read_split_csv(self.root / SPLIT_CSV_NAME)
        wanted = {seq_id: split for seq_id, split in split_of.items() if self._is_wanted(seq_id, split)}
        self.sequences = self._checked_sequences(wanted, on_error)
        if not self.sequences:
            filters = f"speakers={self._describe(self.speakers)}, splits={self._describe(self.splits)}"
            if wanted:
                reason = f"all {len(wanted)} split rows matching {filters} were skipped as bad"
            else:
                reason = f"none of the {len(split_of)} split rows matches {filters}"
            raise BEAT2FormatError(self.root, f"empty corpus: {reason}")

    @staticmethod
    def _describe(values: frozenset | None) -> str:
        return "all" if values is None else str(sorted(values))

    def _is_wanted(self, seq_id: str, split: str) -> bool:
        speaker_ok = self.speakers is None or speaker_of(seq_id) in self.speakers
        split_ok = self.splits is None or split in self.splits
        return speaker_ok and split_ok

    def _checked_sequences(self, wanted: dict[str, str], on_error: str) -> list[Sequence]:
        sequences = []
        for seq_id, split in wanted.items():
            try:
                sequences.append(self._checked_sequence(seq_id, split))
            except BEAT2FormatError as error:
                if on_error == "raise":
                    raise
                warnings.warn(f"skipping BEAT2 sequence {seq_id}: {error}", BEAT2SkipWarning, stacklevel=3)
        return sequences

    def _checked_sequence(self, seq_id: str, split: str) -> Sequence:
        """The Sequence of one split row, after checking its motion and (optionally) audio."""
        motion_path = self.root / MOTION_DIR_NAME / f"{seq_id}.npz"
        audio_path = self.root / AUDIO_DIR_NAME / f"{seq_id}.wav"
        for path, kind in ((motion_path, "motion"), (audio_path, "audio")):
            if not path.is_file():
                raise BEAT2FormatError(path, f"{kind} file not found for split row {seq_id!r}")
        read_motion(motion_path)
        if self.check_audio:
            check_audio_header(audio_path)
        textgrid_path = self.root / TEXTGRID_DIR_NAME / f"{seq_id}.TextGrid"
        return Sequence(
            id=seq_id,
            speaker=speaker_of(seq_id),
            split=split,
            motion_path=motion_path,
            audio_path=audio_path,
            textgrid_path=textgrid_path if textgrid_path.is_file() else None,
        )

    def __len__(self) -> int:
        return len(self.sequences)

    def __iter__(self) -> Iterator[Sequence]:
        return iter(self.sequences)

    def __getitem__(self, index: int) -> Sequence:
        return self.sequences[index]

    def __repr__(self) -> str:
        return f"BEAT2Corpus(root={str(self.root)!r}, sequences={len(self)})"
