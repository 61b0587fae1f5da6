"""Tests of the BEAT2 corpus reader (SPEC §4.1): the real sample, filters, and every bad input."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile

from echomask.data.beat2 import (
    BEAT2Corpus,
    BEAT2FormatError,
    BEAT2SkipWarning,
    audio_duration,
    motion_num_frames,
    read_audio_checked,
    read_motion,
    read_split_csv,
    speaker_of,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared not present")
SAMPLE_ROOT = SHARED / "beat2_sample"

FRAMES = 45  # 1.5 s of motion at 30 fps
AUDIO_SAMPLES = 32000  # 2 s at 16 kHz: audio a little longer than motion, as in BEAT2
SPLIT_ROWS = {
    "2_scott_0_1_1": "train",
    "2_scott_0_2_2": "test",
    "3_solomon_0_1_1": "val",
    "4_lawrence_0_1_1": "additional",
}
BAD_ID = "2_scott_0_2_2"  # the sequence the per-sequence corruptions damage


# --------------------------------------------------------------------------- a tiny valid corpus


def valid_motion(frames: int = FRAMES, seed: int = 0) -> dict[str, np.ndarray]:
    """Motion arrays with the dtypes of the real BEAT2 files."""
    rng = np.random.default_rng(seed)
    return {
        "poses": rng.normal(scale=0.2, size=(frames, 165)).astype(np.float32),
        "trans": rng.normal(scale=0.1, size=(frames, 3)),
        "expressions": rng.normal(scale=0.5, size=(frames, 100)),
        "betas": rng.normal(size=300).astype(np.float32),
        "mocap_frame_rate": np.array(30, dtype=np.int32),
        "model": np.array("smplx2020"),
        "gender": np.array("neutral"),
    }


def write_audio(path: Path, wave: np.ndarray, sample_rate: int = 16000) -> None:
    soundfile.write(path, wave, sample_rate, subtype="FLOAT")


def write_split_csv(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    """A valid four-sequence corpus under ``tmp_path/beat_english_v2.0.0``; returns that folder."""
    corpus = tmp_path / "beat_english_v2.0.0"
    (corpus / "smplxflame_30").mkdir(parents=True)
    (corpus / "wave16k").mkdir()
    rng = np.random.default_rng(1)
    for index, seq_id in enumerate(SPLIT_ROWS):
        np.savez(corpus / "smplxflame_30" / f"{seq_id}.npz", **valid_motion(seed=index))
        write_audio(corpus / "wave16k" / f"{seq_id}.wav", rng.uniform(-0.5, 0.5, AUDIO_SAMPLES).astype(np.float32))
    rows = "".join(f"{seq_id},{split}\n" for seq_id, split in SPLIT_ROWS.items())
    write_split_csv(corpus / "train_test_split.csv", "id,type\n" + rows)
    return corpus


def motion_path(corpus: Path, seq_id: str = BAD_ID) -> Path:
    return corpus / "smplxflame_30" / f"{seq_id}.npz"


def audio_path(corpus: Path, seq_id: str = BAD_ID) -> Path:
    return corpus / "wave16k" / f"{seq_id}.wav"


def assert_names_problem(error: BaseException, file_name: str, problem: str) -> None:
    """The message is one line, names the file and says what is wrong (a regex)."""
    message = str(error)
    assert "\n" not in message, message
    assert file_name in message, message
    assert re.search(problem, message), message


# --------------------------------------------------------------------------- the real sample


@needs_shared
@pytest.mark.parametrize("root", [SAMPLE_ROOT, SAMPLE_ROOT / "beat_english_v2.0.0"], ids=["parent", "corpus"])
def test_real_sample_reads(root):
    corpus = BEAT2Corpus(root)
    assert len(corpus) == 1
    (sequence,) = corpus
    assert (sequence.id, sequence.speaker, sequence.split) == ("2_scott_0_1_1", 2, "test")
    assert sequence.textgrid_path is None
    motion = read_motion(sequence.motion_path)
    assert motion["fps"] == 30
    assert motion["poses"].shape == (1906, 165)
    assert motion["trans"].shape == (1906, 3)
    assert motion["expressions"].shape == (1906, 100)
    assert motion["betas"].shape == (300,)
    assert all(motion[key].dtype == np.float32 for key in ("poses", "trans", "expressions", "betas"))
    assert motion_num_frames(sequence.motion_path) == 1906
    wave = read_audio_checked(sequence.audio_path)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert len(wave) / 16000 == pytest.approx(64.1, abs=0.05)
    assert audio_duration(sequence.audio_path) == pytest.approx(len(wave) / 16000)


@needs_shared
def test_real_sample_speaker_filter_leaves_nothing():
    with pytest.raises(BEAT2FormatError) as caught:
        BEAT2Corpus(SAMPLE_ROOT, speakers=[3])
    assert_names_problem(caught.value, "beat_english_v2.0.0", r"empty corpus.*speakers=\[3\]")


# --------------------------------------------------------------------------- valid corpus, filters, helpers


def test_tiny_corpus_reads_in_split_file_order(corpus_dir):
    corpus = BEAT2Corpus(corpus_dir.parent)
    assert corpus.root == corpus_dir
    assert [(s.id, s.speaker, s.split) for s in corpus] == [
        (seq_id, speaker_of(seq_id), split) for seq_id, split in SPLIT_ROWS.items()
    ]
    assert corpus[1].motion_path == motion_path(corpus_dir)
    assert corpus[1].audio_path == audio_path(corpus_dir)


def test_read_motion_returns_the_stored_values_as_float32(corpus_dir):
    written = valid_motion(seed=1)
    motion = read_motion(motion_path(corpus_dir))
    for key in ("poses", "trans", "expressions", "betas"):
        assert motion[key].dtype == np.float32
        np.testing.assert_allclose(motion[key], written[key].astype(np.float32))
    assert motion["fps"] == 30
    assert motion_num_frames(motion_path(corpus_dir)) == FRAMES


def test_audio_helpers_on_tiny_corpus(corpus_dir):
    wave = read_audio_checked(audio_path(corpus_dir))
    assert wave.shape == (AUDIO_SAMPLES,) and wave.dtype == np.float32
    assert audio_duration(audio_path(corpus_dir)) == pytest.approx(AUDIO_SAMPLES / 16000)


@pytest.mark.parametrize(
    ("speakers", "splits", "expected_ids"),
    [
        ([2], None, ["2_scott_0_1_1", "2_scott_0_2_2"]),
        (2, "test", ["2_scott_0_2_2"]),
        (None, ["val", "additional"], ["3_solomon_0_1_1", "4_lawrence_0_1_1"]),
        ([3, 4], ["additional"], ["4_lawrence_0_1_1"]),
    ],
)
def test_speaker_and_split_filters(corpus_dir, speakers, splits, expected_ids):
    corpus = BEAT2Corpus(corpus_dir, speakers=speakers, splits=splits)
    assert [sequence.id for sequence in corpus] == expected_ids


def test_textgrid_is_found_when_present(corpus_dir):
    (corpus_dir / "textgrid").mkdir()
    textgrid = corpus_dir / "textgrid" / "3_solomon_0_1_1.TextGrid"
    textgrid.write_text("File type = \"ooTextFile\"\n")
    by_id = {sequence.id: sequence for sequence in BEAT2Corpus(corpus_dir)}
    assert by_id["3_solomon_0_1_1"].textgrid_path == textgrid
    assert by_id["2_scott_0_1_1"].textgrid_path is None


def test_read_split_csv(corpus_dir):
    assert read_split_csv(corpus_dir / "train_test_split.csv") == SPLIT_ROWS


@pytest.mark.parametrize(("seq_id", "speaker"), [("2_scott_0_1_1", 2), ("30_katya_1_11_11", 30)])
def test_speaker_of(seq_id, speaker):
    assert speaker_of(seq_id) == speaker


def test_speaker_of_rejects_ids_without_speaker_number():
    with pytest.raises(ValueError, match="speaker number"):
        speaker_of("scott_0_1_1")


# --------------------------------------------------------------------------- corpus-level problems (always raise)


def remove_root(corpus: Path) -> tuple[Path, str, str]:
    missing = corpus.parent / "no_such_corpus"
    return missing, "no_such_corpus", "not found"


def remove_split_csv(corpus: Path) -> tuple[Path, str, str]:
    (corpus / "train_test_split.csv").unlink()
    return corpus, "train_test_split.csv", "not found"


def csv_without_columns(corpus: Path) -> tuple[Path, str, str]:
    write_split_csv(corpus / "train_test_split.csv", "name,split\n2_scott_0_1_1,train\n")
    return corpus, "train_test_split.csv", r"missing column.*'id'"


def csv_with_unknown_type(corpus: Path) -> tuple[Path, str, str]:
    write_split_csv(corpus / "train_test_split.csv", "id,type\n2_scott_0_1_1,train\n2_scott_0_2_2,testing\n")
    return corpus, "train_test_split.csv", r"line 3: unknown type 'testing'"


def csv_with_duplicate_id(corpus: Path) -> tuple[Path, str, str]:
    write_split_csv(corpus / "train_test_split.csv", "id,type\n2_scott_0_1_1,train\n2_scott_0_1_1,test\n")
    return corpus, "train_test_split.csv", r"line 3: duplicate id 2_scott_0_1_1"


def csv_with_bad_id(corpus: Path) -> tuple[Path, str, str]:
    write_split_csv(corpus / "train_test_split.csv", "id,type\nscott_0_1_1,train\n")
    return corpus, "train_test_split.csv", r"line 2: .*speaker number"


def csv_with_empty_id(corpus: Path) -> tuple[Path, str, str]:
    write_split_csv(corpus / "train_test_split.csv", "id,type\n,train\n")
    return corpus, "train_test_split.csv", r"line 2: empty id"


def csv_not_text(corpus: Path) -> tuple[Path, str, str]:
    (corpus / "train_test_split.csv").write_bytes(b"\xff\xfe\x00\x81id,type")
    return corpus, "train_test_split.csv", "unreadable"


CORPUS_PROBLEMS = [
    remove_root,
    remove_split_csv,
    csv_without_columns,
    csv_with_unknown_type,
    csv_with_duplicate_id,
    csv_with_bad_id,
    csv_with_empty_id,
    csv_not_text,
]


@pytest.mark.parametrize("on_error", ["raise", "skip"])
@pytest.mark.parametrize("corrupt", CORPUS_PROBLEMS, ids=lambda corrupt: corrupt.__name__)
def test_corpus_level_problem_raises(corpus_dir, corrupt, on_error):
    root, file_name, problem = corrupt(corpus_dir)
    with pytest.raises(BEAT2FormatError) as caught:
        BEAT2Corpus(root, on_error=on_error)
    assert_names_problem(caught.value, file_name, problem)


@pytest.mark.parametrize("on_error", ["raise", "skip"])
@pytest.mark.parametrize(
    ("speakers", "splits"),
    [([99], None), ([3], ["test"]), (None, ["val"])],
)
def test_empty_corpus_after_filters_names_root_and_filters(corpus_dir, speakers, splits, on_error):
    if splits == ["val"]:  # leave no val row at all
        write_split_csv(corpus_dir / "train_test_split.csv", "id,type\n2_scott_0_1_1,train\n")
    with pytest.raises(BEAT2FormatError) as caught:
        BEAT2Corpus(corpus_dir, speakers=speakers, splits=splits, on_error=on_error)
    expected_speakers = "all" if speakers is None else re.escape(str(speakers))
    expected_splits = "all" if splits is None else re.escape(str(splits))
    assert_names_problem(
        caught.value,
        str(corpus_dir),
        rf"empty corpus: none of the \d+ split rows matches speakers={expected_speakers}, splits={expected_splits}",
    )


def test_corpus_where_every_sequence_is_bad_is_empty_in_skip_mode(corpus_dir):
    for seq_id in SPLIT_ROWS:
        audio_path(corpus_dir, seq_id).unlink()
    with pytest.warns(BEAT2SkipWarning), pytest.raises(BEAT2FormatError) as caught:
        BEAT2Corpus(corpus_dir, on_error="skip")
    assert_names_problem(caught.value, str(corpus_dir), r"empty corpus: all 4 split rows .* skipped")


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"splits": ["tst"]}, r"unknown split.*'tst'"),
        ({"speakers": ["scott"]}, "bad speakers filter"),
        ({"on_error": "ignore"}, "on_error"),
    ],
)
def test_bad_arguments_are_rejected(corpus_dir, arguments, problem):
    with pytest.raises(ValueError, match=problem):
        BEAT2Corpus(corpus_dir, **arguments)


# --------------------------------------------------------------------------- per-sequence problems (raise or skip)


def rewrite_motion(corpus: Path, **changes) -> None:
    """Rewrite BAD_ID's npz with some arrays replaced (value) or removed (None)."""
    arrays = valid_motion()
    arrays.update(changes)
    np.savez(motion_path(corpus), **{key: value for key, value in arrays.items() if value is not None})


def motion_with_nan(corpus: Path) -> None:
    poses = valid_motion()["poses"]
    poses[3, 7] = np.nan
    rewrite_motion(corpus, poses=poses)


def motion_with_inf(corpus: Path) -> None:
    trans = valid_motion()["trans"]
    trans[0, 1] = -np.inf
    rewrite_motion(corpus, trans=trans)


def motion_beyond_float32(corpus: Path) -> None:
    expressions = valid_motion()["expressions"]
    expressions[2, 2] = 1e300  # finite as float64, inf as float32
    rewrite_motion(corpus, expressions=expressions)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


NPZ = f"{BAD_ID}.npz"
WAV = f"{BAD_ID}.wav"
SEQUENCE_PROBLEMS = {
    "no_motion_file": (lambda c: motion_path(c).unlink(), NPZ, "motion file not found"),
    "no_audio_file": (lambda c: audio_path(c).unlink(), WAV, "audio file not found"),
    "npz_not_a_zip": (lambda c: motion_path(c).write_bytes(b"poses,trans\n1,2\n"), NPZ, r"not a readable \.npz"),
    "npz_truncated": (lambda c: truncate(motion_path(c)), NPZ, r"not a readable \.npz"),
    "npz_object_array": (
        lambda c: rewrite_motion(c, poses=np.array([{"a": 1}], dtype=object)),
        NPZ,
        r"'poses' is unreadable",
    ),
    "npz_text_array": (lambda c: rewrite_motion(c, trans=np.full((FRAMES, 3), "x")), NPZ, r"'trans' has dtype"),
    **{
        f"missing_{key}": (lambda c, key=key: rewrite_motion(c, **{key: None}), NPZ, rf"missing key '{key}'")
        for key in ("poses", "trans", "expressions", "betas", "mocap_frame_rate")
    },
    "poses_width": (lambda c: rewrite_motion(c, poses=np.zeros((FRAMES, 164), np.float32)), NPZ, r"'poses'.*shape"),
    "poses_1d": (lambda c: rewrite_motion(c, poses=np.zeros(FRAMES * 165, np.float32)), NPZ, r"'poses'.*shape"),
    "trans_width": (lambda c: rewrite_motion(c, trans=np.zeros((FRAMES, 2))), NPZ, r"'trans'.*shape"),
    "expressions_width": (
        lambda c: rewrite_motion(c, expressions=np.zeros((FRAMES, 50))),
        NPZ,
        r"'expressions'.*shape",
    ),
    "betas_shape": (lambda c: rewrite_motion(c, betas=np.zeros(10, np.float32)), NPZ, r"'betas'.*shape"),
    "frame_count_mismatch": (
        lambda c: rewrite_motion(c, trans=np.zeros((FRAMES - 1, 3))),
        NPZ,
        "frame count T differs",
    ),
    "zero_frames": (
        lambda c: rewrite_motion(
            c,
            **{key: value[:0] for key, value in valid_motion().items() if key in ("poses", "trans", "expressions")},
        ),
        NPZ,
        r"no motion frames \(T == 0\)",
    ),
    "motion_nan": (motion_with_nan, NPZ, r"'poses'.* NaN/inf"),
    "motion_inf": (motion_with_inf, NPZ, r"'trans'.* NaN/inf"),
    "motion_beyond_float32": (motion_beyond_float32, NPZ, r"'expressions'.* NaN/inf"),
    "frame_rate_25": (
        lambda c: rewrite_motion(c, mocap_frame_rate=np.array(25, np.int32)),
        NPZ,
        "mocap_frame_rate is 25, expected 30",
    ),
    "audio_unreadable": (lambda c: audio_path(c).write_bytes(b"RIFF but not really"), WAV, "unreadable audio"),
    "audio_truncated_header": (lambda c: audio_path(c).write_bytes(audio_path(c).read_bytes()[:20]), WAV, "unreadable"),
    "audio_empty": (lambda c: write_audio(audio_path(c), np.zeros(0, np.float32)), WAV, "empty audio"),
    "audio_22k": (
        lambda c: write_audio(audio_path(c), np.zeros(22050, np.float32), sample_rate=22050),
        WAV,
        "sample rate is 22050 Hz, expected 16000",
    ),
    "audio_stereo": (lambda c: write_audio(audio_path(c), np.zeros((16000, 2), np.float32)), WAV, "2 channels"),
}


@pytest.mark.parametrize("case", SEQUENCE_PROBLEMS, ids=str)
def test_sequence_problem_raises(corpus_dir, case):
    corrupt, file_name, problem = SEQUENCE_PROBLEMS[case]
    corrupt(corpus_dir)
    with pytest.raises(BEAT2FormatError) as caught:
        BEAT2Corpus(corpus_dir)
    assert_names_problem(caught.value, file_name, problem)


@pytest.mark.parametrize("case", SEQUENCE_PROBLEMS, ids=str)
def test_sequence_problem_is_skipped_with_warning(corpus_dir, case):
    corrupt, file_name, problem = SEQUENCE_PROBLEMS[case]
    corrupt(corpus_dir)
    with pytest.warns(BEAT2SkipWarning) as caught:
        corpus = BEAT2Corpus(corpus_dir, on_error="skip")
    assert [sequence.id for sequence in corpus] == [seq_id for seq_id in SPLIT_ROWS if seq_id != BAD_ID]
    assert len(caught) == 1
    assert_names_problem(caught[0].message, file_name, problem)


@pytest.mark.parametrize("case", [case for case, (_, file_name, _) in SEQUENCE_PROBLEMS.items() if file_name == NPZ])
def test_read_motion_rejects_bad_npz(corpus_dir, case):
    corrupt, file_name, problem = SEQUENCE_PROBLEMS[case]
    corrupt(corpus_dir)
    with pytest.raises(BEAT2FormatError) as caught:
        read_motion(motion_path(corpus_dir))
    assert_names_problem(caught.value, file_name, problem)


@pytest.mark.parametrize("case", [case for case, (_, file_name, _) in SEQUENCE_PROBLEMS.items() if file_name == WAV])
def test_read_audio_checked_rejects_bad_audio(corpus_dir, case):
    corrupt, file_name, problem = SEQUENCE_PROBLEMS[case]
    corrupt(corpus_dir)
    with pytest.raises(BEAT2FormatError) as caught:
        read_audio_checked(audio_path(corpus_dir))
    assert_names_problem(caught.value, file_name, problem)


def test_read_audio_checked_rejects_nan(corpus_dir):
    wave = np.zeros(16000, np.float32)
    wave[100] = np.nan
    write_audio(audio_path(corpus_dir), wave)
    with pytest.raises(BEAT2FormatError) as caught:
        read_audio_checked(audio_path(corpus_dir))
    assert_names_problem(caught.value, WAV, "1 NaN/inf sample")


def test_check_audio_false_defers_audio_problems_to_reading(corpus_dir):
    write_audio(audio_path(corpus_dir), np.zeros((16000, 2), np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        corpus = BEAT2Corpus(corpus_dir, check_audio=False)
    assert len(corpus) == len(SPLIT_ROWS)
    with pytest.raises(BEAT2FormatError, match="2 channels"):
        read_audio_checked(corpus[1].audio_path)
