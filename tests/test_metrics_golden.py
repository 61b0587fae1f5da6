"""The metrics against the reference values of ../shared/golden (SPEC §8.1), with golden.json's tolerances."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from echomask.metrics import (
    BeatConsistency,
    FaceLVDPaper,
    FaceVelocityError,
    FaceVertexMSE,
    FrechetGestureDistance,
    L1Diversity,
)
from echomask.metrics.beat_consistency import (
    alignment_score,
    audio_beats,
    fold_positions,
    motion_beats,
    paper_loaded_audio,
    scored_audio,
)
from echomask.metrics.frechet import frechet_distance

SHARED = Path(__file__).resolve().parents[2] / "shared"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared not present")
GOLDEN = SHARED / "golden"

pytestmark = needs_shared

CASES = ("A", "B")
# beat variant -> (fold the positions?, speed threshold); golden.json "beat_consistency"
BEAT_VARIANTS = {"old": (True, 0.3), "unfolded": (False, 0.3), "old_t010": (True, 0.10), "new": (False, 0.10)}


def _load(name: str):
    path = GOLDEN / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    if path.suffix == ".json":
        return json.loads(path.read_text())
    with np.load(path) as arrays:
        return {key: arrays[key] for key in arrays.files}


@pytest.fixture(scope="module")
def golden() -> dict:
    return _load("golden.json")


@pytest.fixture(scope="module")
def bc_data() -> dict:
    return _load("beat_consistency.npz")


@pytest.fixture(scope="module")
def fgd_data() -> dict:
    return _load("fgd.npz")


@pytest.fixture(scope="module")
def face_data() -> dict:
    return _load("face.npz")


def _case(bc_data: dict, case: str) -> dict:
    return {key[2:]: value for key, value in bc_data.items() if key.startswith(f"{case}_")}


def _reference_beats(case: dict, variant: str) -> list[np.ndarray]:
    counts = case[f"motion_beats_{variant}_counts"]
    return np.split(case[f"motion_beats_{variant}_flat"], np.cumsum(counts)[:-1])


# ---------------------------------------------------------------------------------------- BC intermediates


@pytest.mark.parametrize("case_name", CASES)
def test_fold_reproduces_the_in_place_l1div_overwrite(bc_data, case_name):
    case = _case(bc_data, case_name)
    positions = case["positions"]
    before = positions.copy()
    folded = fold_positions(positions)
    np.testing.assert_array_equal(folded.reshape(len(folded), -1), case["positions_after_l1div_fold"])
    np.testing.assert_array_equal(positions, before)  # the caller's array is untouched


@pytest.mark.parametrize("case_name", CASES)
def test_paper_audio_path_matches_the_old_loader(bc_data, golden, case_name):
    case = _case(bc_data, case_name)
    expected = golden["beat_consistency"]["cases"][case_name]["intermediate"]
    loaded = paper_loaded_audio(case["audio_segment_16k"], sample_rate=16000)
    assert loaded.shape == case["audio_old_loaded_16k"].shape == (expected["old_loaded_len"],)
    np.testing.assert_allclose(loaded, case["audio_old_loaded_16k"], rtol=0, atol=1e-6)
    num_frames = len(case["positions"])
    segment = scored_audio(case["audio_segment_16k"], num_frames, protocol="paper")
    assert len(segment) == expected["old_onset_input_len"]


@pytest.mark.parametrize("case_name", CASES)
@pytest.mark.parametrize(("protocol", "key"), [("paper", "old"), ("clean", "new")])
def test_onsets_match_exactly(bc_data, golden, case_name, protocol, key):
    case = _case(bc_data, case_name)
    onsets = audio_beats(case["audio_segment_16k"], len(case["positions"]), protocol=protocol)
    reference = case[f"audio_onsets_{key}"]
    expected_count = golden["beat_consistency"]["cases"][case_name]["intermediate"][f"n_onsets_{key}"]
    assert len(onsets) == len(reference) == expected_count
    np.testing.assert_allclose(onsets, reference, rtol=0, atol=1e-9)


@pytest.mark.parametrize("case_name", CASES)
@pytest.mark.parametrize("variant", list(BEAT_VARIANTS))
def test_motion_beats_match_exactly_for_all_55_joints(bc_data, case_name, variant):
    case = _case(bc_data, case_name)
    fold, threshold = BEAT_VARIANTS[variant]
    positions = fold_positions(case["positions"]) if fold else case["positions"]
    beats = motion_beats(positions, case["mmae"], threshold=threshold)
    reference = _reference_beats(case, variant)
    assert len(beats) == len(reference) == 55
    for joint, (ours, theirs) in enumerate(zip(beats, reference)):
        np.testing.assert_array_equal(ours, theirs, err_msg=f"joint {joint}, variant {variant}")


# ------------------------------------------------------------------------------------------------ BC values


def _bc_metric(case: dict, protocol: str, threshold: float | None = None) -> BeatConsistency:
    return BeatConsistency(joint_mean_speed=case["mmae"], protocol=protocol, threshold=threshold)


@pytest.mark.parametrize("case_name", CASES)
@pytest.mark.parametrize(
    ("key", "protocol", "threshold"),
    [("bc_old", "paper", None), ("bc_old_code_threshold_0p10", "paper", 0.10), ("bc_new", "clean", None)],
)
def test_bc_metric_values(bc_data, golden, case_name, key, protocol, threshold):
    case = _case(bc_data, case_name)
    metric = _bc_metric(case, protocol, threshold)
    metric.update(torch.from_numpy(case["positions"]), torch.from_numpy(case["audio_segment_16k"]))
    expected = golden["beat_consistency"]["cases"][case_name]["values"][key]["value"]
    assert metric.compute().item() == pytest.approx(expected, rel=0, abs=1e-9)


def _paper_audio_unfolded_bc(case: dict, threshold: float) -> float:
    """The OLD code's audio path with the original (unfolded) positions: composed from the public steps."""
    onsets = audio_beats(case["audio_segment_16k"], len(case["positions"]), protocol="paper")
    beats = motion_beats(case["positions"], case["mmae"], threshold=threshold)
    return float(np.mean([alignment_score(onsets, beats[joint] / 30) for joint in case["upper_body"]]))


@pytest.mark.parametrize("case_name", CASES)
@pytest.mark.parametrize(
    ("key", "threshold"), [("bc_old_unfolded", 0.3), ("bc_old_code_threshold_0p10_unfolded", 0.10)]
)
def test_bc_unfolded_variants(bc_data, golden, case_name, key, threshold):
    case = _case(bc_data, case_name)
    expected = golden["beat_consistency"]["cases"][case_name]["values"][key]["value"]
    assert _paper_audio_unfolded_bc(case, threshold) == pytest.approx(expected, rel=0, abs=1e-9)


@pytest.mark.parametrize("case_name", CASES)
def test_bc_from_float64_positions(bc_data, golden, case_name):
    case = _case(bc_data, case_name)
    metric = BeatConsistency(joint_mean_speed=case["mmae"].astype(np.float64))
    metric.update(torch.from_numpy(case["positions"]).double(), case["audio_segment_16k"])
    expected = golden["beat_consistency"]["cases"][case_name]["values"]["bc_old_from_float64_positions"]["value"]
    assert metric.compute().item() == pytest.approx(expected, rel=0, abs=1e-9)


@pytest.mark.parametrize(("key", "protocol"), [("bc_old_two_seq", "paper"), ("bc_new_two_seq", "clean")])
def test_bc_two_sequence_accumulation(bc_data, golden, key, protocol):
    case_a, case_b = _case(bc_data, "A"), _case(bc_data, "B")
    np.testing.assert_array_equal(case_a["mmae"], case_b["mmae"])
    metric = _bc_metric(case_a, protocol)
    metric.update(
        [torch.from_numpy(case_a["positions"]), torch.from_numpy(case_b["positions"])],
        [case_a["audio_segment_16k"], case_b["audio_segment_16k"]],
    )
    assert metric.compute().item() == pytest.approx(golden["beat_consistency"][key]["value"], rel=0, abs=1e-9)


def test_bc_unfolded_two_sequence_weighting(bc_data, golden):
    scores_and_weights = []
    for case_name in CASES:
        case = _case(bc_data, case_name)
        scores_and_weights.append((_paper_audio_unfolded_bc(case, 0.3), len(case["positions"]) - 120))
    total = sum(score * weight for score, weight in scores_and_weights) / sum(w for _, w in scores_and_weights)
    assert total == pytest.approx(golden["beat_consistency"]["bc_old_unfolded_two_seq"]["value"], rel=0, abs=1e-9)


# ----------------------------------------------------------------------------------------------------- L1div


@pytest.mark.parametrize(
    ("case_name", "old_key", "float64_key"), [("A", "single_A_old", "single_A_float64"), ("B", "single_B_old", None)]
)
def test_l1div_single_sequence(bc_data, golden, case_name, old_key, float64_key):
    positions = torch.from_numpy(_case(bc_data, case_name)["positions"])
    metric = L1Diversity()
    metric.update(positions)
    value = metric.compute().item()
    assert value == pytest.approx(golden["l1div"][old_key]["value"], rel=1e-6)
    if float64_key:
        assert value == pytest.approx(golden["l1div"][float64_key]["value"], rel=1e-12)


def test_l1div_two_sequences_and_flat_input(bc_data, golden):
    positions_a = torch.from_numpy(_case(bc_data, "A")["positions"])
    positions_b = torch.from_numpy(_case(bc_data, "B")["positions"])
    metric = L1Diversity()
    metric.update(positions_a.reshape(len(positions_a), 165))  # (T, 165) joint-major
    metric.update([positions_b])
    value = metric.compute().item()
    assert value == pytest.approx(golden["l1div"]["two_seq_AB_old"]["value"], rel=1e-6)
    assert value == pytest.approx(golden["l1div"]["two_seq_AB_new"]["value"], rel=1e-6)
    assert value == pytest.approx(golden["l1div"]["two_seq_AB_float64"]["value"], rel=1e-12)
    assert int(metric.frame_count) == golden["l1div"]["n_A"] + golden["l1div"]["n_B"]


# ------------------------------------------------------------------------------------------------------- FGD


def _fgd(fgd_data: dict, real: str, fake: str, protocol: str, chunk: int = 128) -> float:
    """FGD through the metric, features fed in chunks so the running sums really accumulate."""
    metric = FrechetGestureDistance(feature_dim=240, protocol=protocol)
    for name, is_real in ((real, True), (fake, False)):
        features = torch.from_numpy(fgd_data[name])
        for start in range(0, len(features), chunk):
            metric.update(features[start : start + chunk], real=is_real)
    return metric.compute().item()


@pytest.mark.parametrize(
    ("key", "real", "fake", "protocol", "rtol"),
    [
        ("fgd_old_AB", "A", "B", "paper", 1e-9),
        ("fgd_old_BA", "B", "A", "paper", 1e-9),
        ("fgd_new_AB", "A", "B", "clean", 1e-9),
        ("fgd_old_CE", "C", "E", "paper", 1e-6),
        ("fgd_new_CE", "C", "E", "clean", 1e-6),
    ],
)
def test_fgd_values(fgd_data, golden, key, real, fake, protocol, rtol):
    assert _fgd(fgd_data, real, fake, protocol) == pytest.approx(golden["fgd"][key]["value"], rel=rtol)


def test_fgd_of_a_set_with_itself_is_zero_up_to_round_off(fgd_data, golden):
    assert abs(golden["fgd"]["fgd_old_AA"]["value"]) < 1e-9
    assert abs(_fgd(fgd_data, "A", "A", "paper")) < 1e-9


def test_frechet_distance_terms_with_numpy_statistics(fgd_data, golden):
    a, b = fgd_data["A"], fgd_data["B"]
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    terms = golden["fgd"]["terms_AB"]
    assert np.trace(cov_a) == pytest.approx(terms["trace_S_A"], rel=1e-12)
    assert np.sum((a.mean(0) - b.mean(0)) ** 2) == pytest.approx(terms["mean_sqdist"], rel=1e-12)
    distance = frechet_distance(a.mean(0), cov_a, b.mean(0), cov_b, protocol="paper")
    # golden.json's suggested FGD tolerance: sqrtm's rounding depends on the CPU's BLAS kernels (6.5e-12 here)
    assert distance == pytest.approx(golden["fgd"]["fgd_old_AB"]["value"], rel=1e-9)


# ------------------------------------------------------------------------------------------------------ face


def _face_value(metric, pairs) -> float:
    for rec, tar in pairs:
        metric.update(torch.from_numpy(rec), torch.from_numpy(tar))
    return metric.compute().item()


@pytest.mark.parametrize(
    ("metric_factory", "old_key", "float64_key"),
    [
        (lambda: FaceVertexMSE(protocol="paper"), "face_mse_old", "face_mse_old_float64"),
        (lambda: FaceVertexMSE(protocol="clean"), "face_mse_new", "face_mse_old_float64"),
        (FaceLVDPaper, "face_lvd_old", "face_lvd_old_float64"),
        (FaceVelocityError, "face_lvd_new", None),
    ],
)
def test_face_single_sequence(face_data, golden, metric_factory, old_key, float64_key):
    value = _face_value(metric_factory(), [(face_data["rec"], face_data["tar"])])
    assert value == pytest.approx(golden["face"][old_key]["value"], rel=1e-5)
    if float64_key:
        assert value == pytest.approx(golden["face"][float64_key]["value"], rel=1e-9)


def test_face_second_sequence_and_vertex_layout(face_data, golden):
    rec2, tar2 = face_data["rec2"], face_data["tar2"]
    vertices = [(rec2.reshape(len(rec2), 100, 3), tar2.reshape(len(tar2), 100, 3))]  # (T, V, 3) input
    expected = golden["face"]
    assert _face_value(FaceVertexMSE(), vertices) == pytest.approx(expected["face_mse_old_seq2"]["value"], rel=1e-5)
    assert _face_value(FaceLVDPaper(), vertices) == pytest.approx(expected["face_lvd_old_seq2"]["value"], rel=1e-5)


@pytest.mark.parametrize(
    ("metric_factory", "key"),
    [
        (lambda: FaceVertexMSE(protocol="paper"), "face_mse_old_two_seq"),
        (lambda: FaceVertexMSE(protocol="clean"), "face_mse_new_two_seq"),
        (FaceLVDPaper, "face_lvd_old_two_seq"),
        (FaceVelocityError, "face_lvd_new_two_seq"),
    ],
)
def test_face_two_sequence_accumulation(face_data, golden, metric_factory, key):
    pairs = [(face_data["rec"], face_data["tar"]), (face_data["rec2"], face_data["tar2"])]
    assert _face_value(metric_factory(), pairs) == pytest.approx(golden["face"][key]["value"], rel=1e-5)
