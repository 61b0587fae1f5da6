"""Fuzzing the BEAT2 reader: whatever the files hold, it raises BEAT2FormatError or returns checked motion.

Hypothesis writes motion npz files with random key sets, shapes and dtypes (numbers, bool, complex,
strings, bytes, pickled objects, 0-d and empty arrays, NaN/inf, values beyond float32), archives
whose members are not .npy arrays, damaged archives and random bytes, and corpora around such files
with random audio and split files. `read_motion` and `BEAT2Corpus` must either succeed with checked
data or raise `BEAT2FormatError`, never anything else (SPEC §4.1). Bounded example counts, no deadline.
"""
from __future__ import annotations

import io
import itertools
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from echomask.data.beat2 import (
    AUDIO_DIR_NAME,
    MOTION_DIR_NAME,
    MOTION_KEYS,
    NUM_BETAS,
    PER_FRAME_WIDTHS,
    SPLIT_CSV_NAME,
    BEAT2Corpus,
    BEAT2FormatError,
    BEAT2SkipWarning,
    read_motion,
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CORPUS_FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEQUENCE_ID = "2_scott_0_1_1"
_counter = itertools.count()


@pytest.fixture(scope="module")
def scratch():
    """A folder for the generated files (hypothesis runs many examples per test function)."""
    with tempfile.TemporaryDirectory(prefix="beat2_fuzz_") as folder:
        yield Path(folder)


def fresh_folder(scratch: Path) -> Path:
    folder = scratch / f"example_{next(_counter)}"
    folder.mkdir()
    return folder


# --- strategies -------------------------------------------------------------------------------------

NUMERIC_DTYPES = ("float16", "float32", "float64", "int8", "int32", "int64", "uint8", "uint64")
ODD_DTYPES = ("bool", "complex64", "complex128", "U4", "S4", "datetime64[s]", "object")
SPECIAL_VALUES = (np.nan, np.inf, -np.inf, 1e300, -1e300, 3.5e38, 0.0)


@st.composite
def arrays(draw, frames: int, width: int | None) -> np.ndarray:
    """An array near the expected shape `(frames, width)` (or `(NUM_BETAS,)`), of any dtype and content."""
    expected = (frames, width) if width is not None else (NUM_BETAS,)
    odd_shapes = [(), (0,), (0, width or 1), (frames, (width or 2) - 1), (frames + 1, width or 3),
                  (frames, width or 1, 1), (1,)]
    shape = expected if draw(st.integers(0, 9)) else draw(st.sampled_from(odd_shapes))
    dtype = draw(st.sampled_from(NUMERIC_DTYPES)) if draw(st.integers(0, 9)) else draw(st.sampled_from(ODD_DTYPES))
    size = int(np.prod(shape))
    if dtype == "object":  # pickled when saved; the reader must not unpickle it
        return np.full(shape, {"frame": 0}, dtype=object)
    if dtype in ("U4", "S4"):
        return np.full(shape, "ab", dtype=dtype)
    if dtype == "datetime64[s]":
        return np.zeros(shape, dtype=dtype)
    values = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).normal(size=shape) * 2
    if size and draw(st.booleans()):
        flat = values.reshape(-1)
        flat[draw(st.integers(0, size - 1))] = draw(st.sampled_from(SPECIAL_VALUES))
    with np.errstate(invalid="ignore", over="ignore"):
        return values.astype(dtype)


@st.composite
def motion_arrays(draw) -> dict[str, np.ndarray]:
    """Mostly the BEAT2 keys (some left out, strangers added), each with a random array."""
    frames = draw(st.integers(0, 6))
    left_out = draw(st.sets(st.sampled_from(MOTION_KEYS), max_size=2)) if draw(st.booleans()) else set()
    extra = draw(st.sets(st.sampled_from(("gender", "model", "extra")), max_size=3))
    chosen = {}
    for key in sorted(set(MOTION_KEYS) - left_out | extra):
        if key == "mocap_frame_rate":
            chosen[key] = draw(
                st.sampled_from([np.array(30)] * 6 + [np.array(30.0), np.array(29), np.array([30, 30]),
                                 np.array("30"), np.array(np.nan), np.array([], dtype=np.int64), np.array(True)])
            )
        elif key in ("gender", "model", "extra"):
            chosen[key] = np.array(draw(st.sampled_from(["neutral", "smplx2020", ""])))
        else:
            chosen[key] = draw(arrays(frames, PER_FRAME_WIDTHS.get(key) if key != "betas" else None))
    return chosen


def npz_bytes(chosen: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **chosen)
    return buffer.getvalue()


@st.composite
def motion_files(draw) -> bytes:
    """The bytes of a motion file: an npz of random arrays, possibly damaged, or something else entirely."""
    kind = draw(st.sampled_from(["npz"] * 6 + ["truncated", "flipped", "raw members", "one npy", "random bytes"]))
    if kind == "random bytes":
        return draw(st.binary(max_size=2000))
    if kind == "one npy":
        buffer = io.BytesIO()
        np.save(buffer, np.zeros((3, 165), np.float32))
        return buffer.getvalue()
    if kind == "raw members":  # a zip whose members are not .npy files (np.load returns their bytes)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for key in draw(st.sets(st.sampled_from(MOTION_KEYS), min_size=1)):
                name = key + draw(st.sampled_from(["", ".npy"]))
                archive.writestr(name, draw(st.binary(max_size=300)))
        return buffer.getvalue()
    data = npz_bytes(draw(motion_arrays()))
    if kind == "truncated":
        return data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    if kind == "flipped":
        damaged = bytearray(data)
        position = draw(st.integers(0, len(damaged) - 1))
        damaged[position] ^= draw(st.integers(1, 255))
        return bytes(damaged)
    return data


def check_motion(motion: dict) -> None:
    """What read_motion promises when it succeeds."""
    frames = motion["poses"].shape[0]
    assert frames > 0 and motion["fps"] == 30
    for key, width in PER_FRAME_WIDTHS.items():
        assert motion[key].shape == (frames, width) and motion[key].dtype == np.float32
        assert np.isfinite(motion[key]).all()
    assert motion["betas"].shape == (NUM_BETAS,) and np.isfinite(motion["betas"]).all()


# --- read_motion ------------------------------------------------------------------------------------------


@FUZZ
@given(content=motion_files())
def test_read_motion_raises_only_beat2_format_errors(scratch, content):
    path = fresh_folder(scratch) / f"{SEQUENCE_ID}.npz"
    path.write_bytes(content)
    try:
        motion = read_motion(path)
    except BEAT2FormatError as error:
        assert str(error).startswith(f"{path}: ") and "\n" not in str(error)
    else:
        check_motion(motion)


def test_read_motion_reports_a_folder_and_a_missing_file(tmp_path):
    folder = tmp_path / f"{SEQUENCE_ID}.npz"
    folder.mkdir()
    for path in (folder, tmp_path / "absent.npz"):
        with pytest.raises(BEAT2FormatError, match="motion file not found"):
            read_motion(path)


# --- BEAT2Corpus ------------------------------------------------------------------------------------------


def valid_motion() -> dict[str, np.ndarray]:
    frames = 45
    return {
        "poses": np.zeros((frames, 165), np.float32),
        "trans": np.zeros((frames, 3), np.float32),
        "expressions": np.zeros((frames, 100), np.float64),
        "betas": np.zeros(NUM_BETAS, np.float32),
        "mocap_frame_rate": np.array(30),
    }


@st.composite
def audio_files(draw) -> bytes:
    """A 16 kHz mono wav, or audio at another rate, in stereo, empty, or random bytes."""
    kind = draw(st.sampled_from(["good", "good", "44.1 kHz", "stereo", "empty", "random bytes"]))
    if kind == "random bytes":
        return draw(st.binary(max_size=500))
    rate = 44100 if kind == "44.1 kHz" else 16000
    samples = 0 if kind == "empty" else rate * 2
    wave = np.zeros((samples, 2 if kind == "stereo" else 1), np.float32)
    buffer = io.BytesIO()
    soundfile.write(buffer, wave, rate, format="WAV")
    return buffer.getvalue()


SPLIT_FILES = st.one_of(
    st.sampled_from(
        [
            f"id,type\n{SEQUENCE_ID},train\n",
            f"id,type\n{SEQUENCE_ID},test\nscott_no_speaker,train\n",
            f"id,type\n{SEQUENCE_ID},holdout\n",
            f"id,type\n{SEQUENCE_ID},train\n{SEQUENCE_ID},val\n",
            f"id;type\n{SEQUENCE_ID};train\n",
            "id,type\n",
            f"type,id\ntrain,{SEQUENCE_ID}\n3_solomon_0_1_1,train\n",
        ]
    ),
    st.text(max_size=200),
)


@CORPUS_FUZZ
@given(
    motion=st.one_of(st.just(npz_bytes(valid_motion())), motion_files()),
    audio=audio_files(),
    split_file=SPLIT_FILES,
    on_error=st.sampled_from(["raise", "skip"]),
)
def test_beat2_corpus_raises_only_beat2_format_errors(scratch, motion, audio, split_file, on_error):
    root = fresh_folder(scratch)
    (root / MOTION_DIR_NAME).mkdir()
    (root / AUDIO_DIR_NAME).mkdir()
    (root / MOTION_DIR_NAME / f"{SEQUENCE_ID}.npz").write_bytes(motion)
    (root / AUDIO_DIR_NAME / f"{SEQUENCE_ID}.wav").write_bytes(audio)
    (root / SPLIT_CSV_NAME).write_text(split_file, encoding="utf-8")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BEAT2SkipWarning)  # on_error="skip" warns about what it drops
            corpus = BEAT2Corpus(root, on_error=on_error)
    except BEAT2FormatError as error:
        assert "\n" not in str(error)
    else:
        assert len(corpus) >= 1
        for sequence in corpus:
            check_motion(read_motion(sequence.motion_path))
    finally:
        shutil.rmtree(root)
