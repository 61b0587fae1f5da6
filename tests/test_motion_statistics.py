"""Motion statistics (issue 16): constructed motions with known speeds, spreads, ranges and distinctness."""
import math

import numpy as np
import pytest

from echomask.data.beat2 import read_motion
from echomask.metrics.motion_statistics import (
    ARM_JOINTS,
    DISTINCTNESS_JOINTS,
    STATISTICS,
    aggregate_statistics,
    compare_motion,
    distinctness,
    drift_table,
    motion_statistics,
    motion_statistics_report,
    statistics_table,
    translation_within_target,
)
from echomask.motion.skeleton import HAND_JOINTS, JAW_JOINT, LOWER_JOINTS

FRAMES = 120


def still(frames: int = FRAMES) -> dict[str, np.ndarray]:
    return {
        "poses": np.zeros((frames, 165), dtype=np.float32),
        "trans": np.zeros((frames, 3)),
        "expressions": np.zeros((frames, 100)),
    }


def spinning(joints: tuple[int, ...], speed: float, frames: int = FRAMES, axis=(0.6, 0.0, 0.8)) -> dict:
    """`joints` turn about a fixed unit axis at `speed` rad/frame (the axis-angle wraps past π)."""
    motion = still(frames)
    angles = speed * np.arange(frames)
    angles = np.mod(angles + math.pi, 2 * math.pi) - math.pi  # axis-angle as a file would hold it: |angle| ≤ π
    for joint in joints:
        motion["poses"][:, 3 * joint : 3 * joint + 3] = angles[:, None] * np.asarray(axis)
    return motion


@pytest.mark.parametrize(
    ("part", "joints"),
    [("arms", ARM_JOINTS), ("hands", HAND_JOINTS), ("jaw", (JAW_JOINT,)), ("lower", LOWER_JOINTS)],
)
def test_a_part_turning_at_a_known_speed(part, joints):
    statistics = motion_statistics(spinning(joints, speed=0.05))
    assert statistics[f"{part}_speed"] == pytest.approx(0.05, abs=1e-6)
    others = [name for name in ("arms", "hands", "jaw", "lower") if name != part]
    assert all(statistics[f"{other}_speed"] == 0 for other in others), statistics


def test_speed_is_the_geodesic_angle_across_the_axis_angle_wrap():
    # 0.3 rad/frame over 120 frames crosses ±π several times; a difference of axis-angle vectors would jump by ~2π
    assert motion_statistics(spinning(ARM_JOINTS, speed=0.3))["arms_speed"] == pytest.approx(0.3, abs=1e-6)


def test_speed_averages_over_the_part_joints():
    statistics = motion_statistics(spinning(ARM_JOINTS[:3], speed=0.06))  # half of the six arm joints
    assert statistics["arms_speed"] == pytest.approx(0.03, abs=1e-6)


def test_a_prediction_at_half_the_speed_has_ratio_one_half():
    comparison = compare_motion(spinning(ARM_JOINTS, 0.04), spinning(ARM_JOINTS, 0.02))
    assert comparison["arms_speed_gt"] == pytest.approx(0.04, abs=1e-6)
    assert comparison["arms_speed_pred"] == pytest.approx(0.02, abs=1e-6)
    assert comparison["arms_speed_ratio"] == pytest.approx(0.5, abs=1e-5)
    assert math.isnan(comparison["jaw_speed_ratio"]), "a still ground truth gives no ratio"
    assert comparison["frames"] == FRAMES


def test_translation_range_is_horizontal_only():
    motion = still(101)
    motion["trans"][:, 0] = np.linspace(0.0, 3.0, 101)  # a 3 m walk along x
    motion["trans"][:, 1] = 1.3 + 0.5 * np.sin(np.arange(101))  # y is up: not counted
    motion["trans"][:, 2] = 0.2 * np.sin(np.linspace(0, np.pi, 101))  # out 0.2 m in z and back
    statistics = motion_statistics(motion)
    assert statistics["trans_x_range"] == pytest.approx(3.0)
    assert statistics["trans_z_range"] == pytest.approx(0.2)


def test_expression_std_is_over_time_then_averaged_over_coefficients():
    motion = still(50)
    amplitude = np.arange(100) / 100  # coefficient k alternates between ±k/100: its std over time is k/100
    motion["expressions"] = np.where(np.arange(50)[:, None] % 2 == 0, 1.0, -1.0) * amplitude
    assert motion_statistics(motion)["expression_std"] == pytest.approx(amplitude.mean())


def test_compare_crops_to_the_common_length():
    walk = still(100)
    walk["trans"][:, 0] = np.linspace(0.0, 0.99, 100)  # 0.01 m per frame
    comparison = compare_motion(walk, still(60))
    assert comparison["frames"] == 60
    assert comparison["trans_x_range_gt"] == pytest.approx(0.59), "the ground truth is cropped to the prediction"


def test_aggregation_weights_by_frames_and_recomputes_the_ratio():
    short = compare_motion(spinning(ARM_JOINTS, 0.04, frames=40), spinning(ARM_JOINTS, 0.04, frames=40))
    long = compare_motion(spinning(ARM_JOINTS, 0.01, frames=120), spinning(ARM_JOINTS, 0.03, frames=120))
    pooled = aggregate_statistics([short, long])
    assert pooled["frames"] == 160
    assert pooled["arms_speed_gt"] == pytest.approx((40 * 0.04 + 120 * 0.01) / 160, abs=1e-6)
    assert pooled["arms_speed_pred"] == pytest.approx((40 * 0.04 + 120 * 0.03) / 160, abs=1e-6)
    assert pooled["arms_speed_ratio"] == pytest.approx(0.0325 / 0.0175, abs=1e-4), "a ratio of pooled means"
    assert set(pooled) == set(short), "the pooled statistics keep the per-sequence names"


def test_aggregation_of_single_motions():
    pooled = aggregate_statistics([motion_statistics(spinning(ARM_JOINTS, 0.02)), motion_statistics(still())])
    assert pooled["arms_speed"] == pytest.approx(0.01, abs=1e-6)
    assert set(pooled) == {"frames", *STATISTICS}


def turned(angle: float, frames: int = FRAMES, joint: int = 18) -> dict:
    """A still pose whose `joint` is turned by `angle` about x."""
    motion = still(frames)
    motion["poses"][:, 3 * joint] = angle
    return motion


def test_identical_outputs_for_different_inputs_have_distinctness_zero():
    gts = [turned(0.1), turned(0.4), turned(-0.2)]
    result = distinctness(gts, [turned(0.3)] * 3)
    assert result["distinctness_pred"] == 0 and result["distinctness_ratio"] == 0
    # pairs |0.1 - 0.4|, |0.1 + 0.2|, |0.4 + 0.2| of one joint, averaged over the 53 part joints
    assert result["distinctness_gt"] == pytest.approx((0.3 + 0.3 + 0.6) / 3 / len(DISTINCTNESS_JOINTS), abs=1e-6)


def test_distinctness_of_the_ground_truth_itself_is_one_and_pairs_crop_to_the_shorter():
    gts = [turned(0.1, frames=80), turned(0.5, frames=120)]
    preds = [turned(0.2, frames=80), turned(0.4, frames=200)]  # the second is cropped to its 120 GT frames
    assert distinctness(gts, gts)["distinctness_ratio"] == pytest.approx(1.0)
    assert distinctness(gts, preds)["distinctness_ratio"] == pytest.approx(0.5, abs=1e-5)


def test_the_eyes_do_not_count_towards_distinctness():
    result = distinctness([turned(0.0), turned(0.5)], [turned(0.0, joint=23), turned(0.5, joint=23)])
    assert result["distinctness_pred"] == 0


def test_the_report_and_its_table():
    gts = {"a": spinning(ARM_JOINTS, 0.04), "b": turned(0.3)}
    preds = {"a": spinning(ARM_JOINTS, 0.02), "b": turned(0.3)}
    report = motion_statistics_report(gts, preds)
    assert set(report["per_sequence"]) == {"a", "b"}
    assert report["all"]["arms_speed_ratio"] == pytest.approx(0.5, abs=1e-5)
    assert "distinctness_ratio" in report["all"]
    table = statistics_table(report["all"])
    cells = [[cell.strip() for cell in line.split("|")] for line in table.splitlines()]
    assert cells[0] == ["statistic", "GT", "generated", "generated / GT"]
    assert ["arms angular speed (rad/frame)", "0.0200", "0.0100", "0.50"] in cells
    assert any(line.startswith("distinctness (rad)") for line in table.splitlines())


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"prediction: poses must be \(T, 165\)"):
        compare_motion(still(), {**still(), "poses": np.zeros((FRAMES, 55, 3))})
    with pytest.raises(ValueError, match="ground truth: motion arrays need .*missing \\['expressions'\\]"):
        compare_motion({"poses": np.zeros((4, 165)), "trans": np.zeros((4, 3))}, still())
    with pytest.raises(ValueError, match="disagree on T"):
        motion_statistics({**still(), "trans": np.zeros((3, 3))})
    with pytest.raises(ValueError, match="at least 2 frames"):
        motion_statistics(still(1))
    with pytest.raises(ValueError, match="at least 2"):
        distinctness([still()], [still()])
    with pytest.raises(ValueError, match="only in the predictions: \\['c'\\]"):
        motion_statistics_report({"a": still()}, {"a": still(), "c": still()})


def test_real_beat2_arms_move_about_0_037_rad_per_frame(shared_dir):
    """The issue's reference figure: real BEAT2 arms move ~0.037 rad/frame (2_scott_0_1_1: 0.036)."""
    motion = read_motion(shared_dir / "beat2_sample" / "beat_english_v2.0.0" / "smplxflame_30" / "2_scott_0_1_1.npz")
    statistics = motion_statistics(motion)
    assert 0.03 < statistics["arms_speed"] < 0.045
    assert statistics["jaw_speed"] < statistics["hands_speed"] < statistics["arms_speed"]


def test_drift_target_is_twice_the_truth_plus_ten_centimetres():
    def row(x_pred: float, z_pred: float) -> dict[str, float]:
        return {"trans_x_range_gt": 0.05, "trans_z_range_gt": 0.02, "trans_x_range_pred": x_pred,
                "trans_z_range_pred": z_pred}  # fmt: skip

    assert translation_within_target(row(0.19, 0.13)) and translation_within_target(row(0.2, 0.14))
    assert not translation_within_target(row(1.6, 0.02)) and not translation_within_target(row(0.1, 0.15))
    table = drift_table({"a": row(0.19, 0.13), "b": row(1.6, 0.02)})
    assert "x  1.600 m vs  0.050 m" in table and table.splitlines()[2].endswith("DRIFTS")
    assert table.splitlines()[1].endswith("ok")
