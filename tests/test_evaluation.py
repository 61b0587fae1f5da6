"""`echomask evaluate`: test-split metrics of generated motion against the ground truth (SPEC §8)."""
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from echomask import scoring
from echomask.cli import main
from echomask.data.beat2 import BEAT2Corpus, BEAT2FormatError, read_motion
from echomask.evaluation import evaluate_predictions
from echomask.scoring import APPROXIMATE_NOTE, fgd_motion, format_report, load_fgd_encoder, write_report
from echomask.metrics import FACE_LABEL_PARAMETERS, FrechetGestureDistance
from echomask.models.motion_autoencoder import AESKCONV_PREFIX

SHARED = Path(__file__).resolve().parents[2] / "shared"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared not present")


@pytest.fixture(scope="module")
def gt_result(synthetic_corpus, fgd_checkpoint) -> dict:
    return evaluate_predictions(None, synthetic_corpus, fgd_checkpoint=fgd_checkpoint, progress=False)


def evaluate(pred_dir, synthetic_corpus, fgd_checkpoint, **kwargs) -> dict:
    return evaluate_predictions(pred_dir, synthetic_corpus, fgd_checkpoint=fgd_checkpoint, progress=False, **kwargs)


def copy_predictions(sequences, out: Path, sources=None) -> Path:
    """Write one `<id>.npz` per test sequence into `out`, copied from `sources[id]` (default: its own GT file)."""
    out.mkdir(parents=True, exist_ok=True)
    for sequence in sequences:
        source = sequence.motion_path if sources is None else sources[sequence.id]
        shutil.copyfile(source, out / f"{sequence.id}.npz")
    return out


# FGD(GT, GT) is 0 up to the rounding of scipy.linalg.sqrtm: with a few latents (20 here: 2 sequences of 160 frames,
# 16 frames each) the 240 x 240 covariance is singular and the trace of its root carries errors of a few 1e-6.
FGD_OF_IDENTICAL_SETS = 1e-5


def test_ground_truth_alone(gt_result, test_sequences, fgd_checkpoint):
    assert abs(gt_result["metrics"]["fgd"]) < FGD_OF_IDENTICAL_SETS
    assert 0 < gt_result["metrics"]["bc"] <= 1
    assert math.isfinite(gt_result["metrics"]["l1div"]) and gt_result["metrics"]["l1div"] > 0
    assert not any(name.startswith("face") for name in gt_result["metrics"])
    assert gt_result["paper_scale"]["bc"] == pytest.approx(10 * gt_result["metrics"]["bc"])
    assert set(gt_result["per_sequence"]) == {sequence.id for sequence in test_sequences}
    assert gt_result["num_sequences"] == len(test_sequences)
    assert gt_result["num_frames"] == sum(len(read_motion(s.motion_path)["poses"]) for s in test_sequences)
    assert gt_result["fgd_checkpoint"] == str(fgd_checkpoint)
    assert gt_result["approximate_skeleton"] and "approximate" in gt_result["kinematics"]
    assert gt_result["protocol"] == "paper" and gt_result["predictions"] is None
    assert gt_result["joint_mean_speed_source"].startswith("train split")


def test_per_sequence_values_combine_into_the_totals(gt_result):
    per_sequence = gt_result["per_sequence"].values()
    frames = [values["frames"] for values in per_sequence]
    l1div = sum(values["l1div"] * count for values, count in zip(per_sequence, frames)) / sum(frames)
    assert gt_result["metrics"]["l1div"] == pytest.approx(l1div, rel=1e-12)
    bc_weights = [count - 120 for count in frames]  # BC ignores 60 frames at each end (§8.1)
    bc = sum(values["bc"] * weight for values, weight in zip(per_sequence, bc_weights)) / sum(bc_weights)
    assert gt_result["metrics"]["bc"] == pytest.approx(bc, rel=1e-12)


def test_copied_ground_truth_scores_like_the_ground_truth(
    synthetic_corpus, fgd_checkpoint, test_sequences, gt_result, tmp_path
):
    result = evaluate(copy_predictions(test_sequences, tmp_path / "pred"), synthetic_corpus, fgd_checkpoint)
    for name in ("fgd", "bc", "l1div"):
        assert result["metrics"][name] == pytest.approx(gt_result["metrics"][name], abs=1e-9)
    for name in ("face_mse", "face_lvd_paper", "face_velocity_error"):
        assert result["metrics"][name] == 0
    assert result["face_label"] == FACE_LABEL_PARAMETERS
    assert result["predictions"] == str(tmp_path / "pred")


def test_motion_of_other_files_is_scored_against_the_ground_truth(
    synthetic_corpus, fgd_checkpoint, test_sequences, gt_result, tmp_path
):
    others = [sequence for sequence in BEAT2Corpus(synthetic_corpus, splits=["train", "val"])]
    sources = {sequence.id: others[index].motion_path for index, sequence in enumerate(test_sequences)}
    pred_dir = copy_predictions(test_sequences, tmp_path / "pred", sources)
    shortened_id = test_sequences[0].id
    shortened = dict(np.load(pred_dir / f"{shortened_id}.npz"))
    keep = len(shortened["poses"]) - 17
    for key in ("poses", "trans", "expressions"):
        shortened[key] = shortened[key][:keep]
    np.savez(pred_dir / f"{shortened_id}.npz", **shortened)

    result = evaluate(pred_dir, synthetic_corpus, fgd_checkpoint)
    assert result["metrics"]["fgd"] > 1e-3
    assert result["metrics"]["face_mse"] > 0 and result["metrics"]["face_velocity_error"] > 0
    assert result["metrics"]["l1div"] != pytest.approx(gt_result["metrics"]["l1div"])
    first = result["per_sequence"][shortened_id]
    assert first["frames"] == first["pred_frames"] == keep and first["gt_frames"] == keep + 17
    assert result["num_frames"] == gt_result["num_frames"] - 17


def test_fgd_cannot_tell_motion_played_to_another_files_audio_but_bc_can(
    synthetic_corpus, fgd_checkpoint, test_sequences, gt_result, tmp_path
):
    """The shuffled-audio control of the masking ablation, done by a perfect model: every test sequence's place
    holds the ground truth of the sequence whose audio it is given. FGD compares the two SETS of motion, which are
    the same, so it ties the ground truth; BC pairs each motion with its own audio and drops."""
    assert len(test_sequences) >= 2
    rotated = test_sequences[1:] + test_sequences[:1]
    sources = {sequence.id: donor.motion_path for sequence, donor in zip(test_sequences, rotated)}
    result = evaluate(copy_predictions(test_sequences, tmp_path / "pred", sources), synthetic_corpus, fgd_checkpoint)
    assert abs(result["metrics"]["fgd"]) < FGD_OF_IDENTICAL_SETS
    assert result["metrics"]["l1div"] == pytest.approx(gt_result["metrics"]["l1div"], rel=1e-9)
    assert result["metrics"]["bc"] < gt_result["metrics"]["bc"] - 0.05


def test_a_missing_prediction_names_the_file(synthetic_corpus, fgd_checkpoint, test_sequences, tmp_path):
    pred_dir = copy_predictions(test_sequences[1:], tmp_path / "pred")
    missing = pred_dir / f"{test_sequences[0].id}.npz"
    with pytest.raises(BEAT2FormatError, match="prediction missing") as error:
        evaluate(pred_dir, synthetic_corpus, fgd_checkpoint)
    assert error.value.path == missing


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda path: path.write_bytes(b"not an npz archive"), "not a readable .npz archive"),
        (lambda path: np.savez(path, poses=np.zeros((180, 165), np.float32)), "missing key 'trans'"),
    ],
)
def test_a_bad_prediction_names_the_file(synthetic_corpus, fgd_checkpoint, test_sequences, tmp_path, damage, message):
    pred_dir = copy_predictions(test_sequences, tmp_path / "pred")
    bad = pred_dir / f"{test_sequences[-1].id}.npz"
    damage(bad)
    with pytest.raises(BEAT2FormatError, match=message) as error:
        evaluate(pred_dir, synthetic_corpus, fgd_checkpoint)
    assert error.value.path == bad


def test_a_too_short_prediction_names_the_file(synthetic_corpus, fgd_checkpoint, test_sequences, tmp_path):
    pred_dir = copy_predictions(test_sequences, tmp_path / "pred")
    short = pred_dir / f"{test_sequences[0].id}.npz"
    arrays = dict(np.load(short))
    for key in ("poses", "trans", "expressions"):
        arrays[key] = arrays[key][:100]
    np.savez(short, **arrays)
    with pytest.raises(ValueError, match=f"{short.name}.*too short"):
        evaluate(pred_dir, synthetic_corpus, fgd_checkpoint)


def test_cli_gt_only_prints_the_table_and_writes_json(synthetic_corpus, fgd_checkpoint, gt_result, tmp_path, capsys):
    out = tmp_path / "report" / "metrics.json"
    status = main(
        ["evaluate", "--gt-only", "--data-root", str(synthetic_corpus), "--fgd-checkpoint", str(fgd_checkpoint),
         "--out", str(out)]
    )
    printed = capsys.readouterr().out
    assert status == 0
    assert "FGD ×10⁻¹" in printed and "BC ×10⁻¹" in printed and "ground truth" in printed
    assert f"FGD checkpoint: {fgd_checkpoint}" in printed and APPROXIMATE_NOTE in printed
    written = json.loads(out.read_text())
    assert written["metrics"]["bc"] == pytest.approx(gt_result["metrics"]["bc"], rel=1e-12)
    assert written["per_sequence"].keys() == gt_result["per_sequence"].keys()


def test_cli_needs_predictions_or_gt_only(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--data-root", "anywhere"])
    assert "--pred" in capsys.readouterr().err


def test_without_a_checkpoint_the_error_says_how_to_train_one(synthetic_corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no logs/evaluator/checkpoints/last.ckpt here
    with pytest.raises(FileNotFoundError, match="make train-evaluator"):
        evaluate_predictions(None, synthetic_corpus, progress=False)
    assert main(["evaluate", "--gt-only", "--data-root", str(synthetic_corpus)]) == 2
    assert "make train-evaluator" in capsys.readouterr().err


def test_the_trained_evaluator_is_found_at_its_default_path(synthetic_corpus, fgd_checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    default = tmp_path / scoring.DEFAULT_EVALUATOR_CHECKPOINT
    default.parent.mkdir(parents=True)
    shutil.copyfile(fgd_checkpoint, default)
    result = evaluate_predictions(None, synthetic_corpus, progress=False)
    assert result["fgd_checkpoint"] == str(scoring.DEFAULT_EVALUATOR_CHECKPOINT)


def test_files_shipped_in_the_corpus_weights_folder_are_preferred(
    synthetic_corpus, fgd_checkpoint, tmp_path, monkeypatch
):
    copy = tmp_path / "corpus"
    shutil.copytree(synthetic_corpus, copy)
    weights = copy / "weights"
    weights.mkdir()
    state = torch.load(fgd_checkpoint, weights_only=True)["state_dict"]
    aeskconv = {AESKCONV_PREFIX + name.removeprefix("model."): tensor for name, tensor in state.items()}
    torch.save({"model_state": aeskconv}, weights / "AESKConv_240_100.bin")
    np.save(weights / "mean_vel_smplxflame_30.npy", np.full(55, 0.5, dtype=np.float32))
    monkeypatch.chdir(tmp_path)
    result = evaluate_predictions(None, copy, progress=False)
    assert result["fgd_checkpoint"] == str(weights / "AESKConv_240_100.bin")
    assert result["joint_mean_speed_source"] == str(weights / "mean_vel_smplxflame_30.npy")


def test_clean_protocol_is_named_and_changes_bc(synthetic_corpus, fgd_checkpoint, gt_result):
    clean = evaluate(None, synthetic_corpus, fgd_checkpoint, protocol="clean")
    assert clean["protocol"] == "clean" and "protocol: clean" in format_report(clean)
    assert clean["metrics"]["bc"] != pytest.approx(gt_result["metrics"]["bc"])
    assert clean["metrics"]["l1div"] == pytest.approx(gt_result["metrics"]["l1div"], rel=1e-12)


def test_bad_arguments_are_refused(synthetic_corpus, fgd_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="protocol must be one of"):
        evaluate(None, synthetic_corpus, fgd_checkpoint, protocol="modern")
    with pytest.raises(FileNotFoundError, match="prediction folder"):
        evaluate(tmp_path / "nowhere", synthetic_corpus, fgd_checkpoint)
    with pytest.raises(FileNotFoundError, match="FGD checkpoint"):
        evaluate(None, synthetic_corpus, tmp_path / "none.ckpt")


def test_report_round_trips_through_json(gt_result, tmp_path):
    path = write_report(gt_result, tmp_path / "a" / "b.json")
    assert json.loads(path.read_text()) == json.loads(json.dumps(gt_result))


# ------------------------------------------------------------------------------------ reference fixtures


@needs_shared
def test_fgd_motion_prepares_poses_like_the_reference_test_loop():
    io = np.load(SHARED / "golden" / "aeskconv" / "io.npz")
    start, stop = io["input_frame_range"]
    sample = SHARED / "beat2_sample" / "beat_english_v2.0.0" / "smplxflame_30" / "2_scott_0_1_1.npz"
    poses = read_motion(sample)["poses"]
    prepared = fgd_motion(torch.from_numpy(poses[start:stop]))
    torch.testing.assert_close(prepared, torch.from_numpy(io["input_rot6d"]), rtol=0, atol=1e-6)


@needs_shared
def test_fgd_uses_exactly_the_reference_latents():
    golden = SHARED / "golden" / "aeskconv"
    io = np.load(golden / "io.npz")
    fgd = FrechetGestureDistance(encoder=load_fgd_encoder(golden / "aeskconv_random.bin"))
    fgd.update(torch.from_numpy(io["input2_rot6d"]), real=True)
    expected = io["expected_latent2"].reshape(-1, 240)
    assert int(fgd.real_count) == len(expected)
    np.testing.assert_allclose(fgd.real_sum.numpy(), expected.sum(axis=0), rtol=0, atol=1e-3)


@needs_shared
def test_ground_truth_of_the_real_beat2_sample(tmp_path):
    mean_speed = np.load(SHARED / "golden" / "beat_consistency.npz")["A_mmae"]  # BEAT2's mean_vel_smplxflame_30
    result = evaluate_predictions(
        None,
        SHARED / "beat2_sample",
        fgd_checkpoint=SHARED / "golden" / "aeskconv" / "aeskconv_random.bin",
        joint_mean_speed=mean_speed,
        progress=False,
    )
    assert result["num_sequences"] == 1 and result["per_sequence"].keys() == {"2_scott_0_1_1"}
    assert abs(result["metrics"]["fgd"]) < FGD_OF_IDENTICAL_SETS
    assert 0 < result["metrics"]["bc"] <= 1 and result["metrics"]["l1div"] > 0
    assert result["joint_mean_speed_source"] == "given"
