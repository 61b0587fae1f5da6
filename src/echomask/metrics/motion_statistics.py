"""Motion statistics: does generated motion move like the ground truth, and does it depend on its input?

Plain numbers of BEAT2/SMPL-X arrays as the npz files hold them (``poses`` (T, 165) local axis-angle of the 55
joints, ``trans`` (T, 3) metres with y up, ``expressions`` (T, 100)); no body model, no learned encoder.

Per motion (:func:`motion_statistics`), under these stable names:

======================  ==========================================================================  =========
name                    what                                                                        unit
======================  ==========================================================================  =========
``arms_speed``          mean angular speed of joints 16–21 (shoulders, elbows, wrists)              rad/frame
``hands_speed``         the same of joints 25–54 (both hands' fingers)                              rad/frame
``jaw_speed``           the same of joint 22                                                        rad/frame
``lower_speed``         the same of the lower part's joints 0, 1, 2, 4, 5, 7, 8, 10, 11 (SPEC §4.2)  rad/frame
``expression_std``      standard deviation over time of each expression coefficient, averaged over  –
                        the 100 coefficients (population std, ddof 0)
``trans_x_range``       max − min of the root translation's x (horizontal, the body's left–right)   m
``trans_z_range``       max − min of the root translation's z (horizontal, the body's front–back)   m
======================  ==========================================================================  =========

Angular speed: for each joint, the geodesic angle (in [0, π]) between its local rotation at frame t and at
frame t + 1, averaged over the part's joints and the T − 1 frame pairs.

:func:`compare_motion` gives, for one sequence, ``<name>_gt``, ``<name>_pred`` and ``<name>_ratio`` (pred / gt;
NaN where the ground truth's value is 0) of the ground truth and the prediction cropped to their common
length, plus ``frames``. :func:`aggregate_statistics` pools sequences: every ``<name>_gt`` / ``<name>_pred`` is
the frame-weighted mean of the sequences' values (weight = ``frames``), and every ratio is recomputed from the
pooled values (a ratio of means, not a mean of ratios).

Distinctness (:func:`distinctness`): how different the outputs for different inputs are, relative to how
different their ground truths are. For two motions A and B, D(A, B) is the geodesic angle between A's and B's
local rotation of the same joint in the same frame, averaged over the 53 joints of the four parts (all but the
eyes) and over the frames t < min(T_A, T_B) (both cropped to the shorter). Each prediction is first cropped with
its ground truth to their common length (as in :func:`compare_motion`), so both sides compare the same frames.
Over N ≥ 2 sequences:

* ``distinctness_gt`` = mean of D(gt_i, gt_j) over the N(N−1)/2 pairs i < j (rad),
* ``distinctness_pred`` = mean of D(pred_i, pred_j) over the same pairs (rad),
* ``distinctness_ratio`` = distinctness_pred / distinctness_gt: 0 when every input gets the same output, about 1
  when the outputs differ as much as the ground truths do.

:func:`motion_statistics_report` does all of it for a set of sequences; :func:`statistics_table` prints the
pooled values as a GT / generated / ratio table. Drift: :func:`translation_within_target` checks one sequence's
horizontal ranges against the target generated range <= 2 x the ground truth's + 0.10 m on x and on z, and
:func:`drift_table` lists it per sequence.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
from einops import rearrange

from echomask.metrics.display import aligned_columns
from echomask.motion.parts import NUM_EXPRESSIONS, PART_JOINTS, POSE_DIM
from echomask.motion.rotations import axis_angle_to_matrix, geodesic_distance
from echomask.motion.skeleton import HAND_JOINTS, JAW_JOINT, LOWER_JOINTS, NUM_JOINTS

ARM_JOINTS = (16, 17, 18, 19, 20, 21)  # shoulders, elbows, wrists
SPEED_JOINTS: dict[str, tuple[int, ...]] = {
    "arms": ARM_JOINTS,
    "hands": HAND_JOINTS,
    "jaw": (JAW_JOINT,),
    "lower": LOWER_JOINTS,
}
# The joints the four part streams own (all but the eyes): the joints of the distinctness distance.
DISTINCTNESS_JOINTS = tuple(sorted(joint for joints in PART_JOINTS.values() for joint in joints))
HORIZONTAL_AXES = {"x": 0, "z": 2}  # y is up (SPEC §4.1)

# name -> (label, unit) of every per-motion statistic, in table order
STATISTICS: dict[str, tuple[str, str]] = {
    **{f"{part}_speed": (f"{part} angular speed", "rad/frame") for part in SPEED_JOINTS},
    "expression_std": ("expression std", ""),
    **{f"trans_{axis}_range": (f"translation {axis} range", "m") for axis in HORIZONTAL_AXES},
}
DISTINCTNESS = ("distinctness", "rad")
SIDES = ("gt", "pred")
# The drift target (issues 14 and 16): generated horizontal range <= DRIFT_FACTOR x the ground truth's + DRIFT_MARGIN
DRIFT_FACTOR = 2.0
DRIFT_MARGIN = 0.10  # metres
MotionArrays = Mapping[str, np.ndarray]


def _checked(motion: MotionArrays, name: str) -> dict[str, np.ndarray]:
    """``poses``, ``trans`` and ``expressions`` of ``motion`` as float64 arrays with matching (T, ·) shapes."""
    widths = {"poses": POSE_DIM, "trans": 3, "expressions": NUM_EXPRESSIONS}
    missing = [key for key in widths if key not in motion]
    if missing:
        raise ValueError(f"{name}: motion arrays need {list(widths)}; missing {missing}")
    arrays = {key: np.asarray(motion[key], dtype=np.float64) for key in widths}
    frames = {key: array.shape[0] if array.ndim == 2 else None for key, array in arrays.items()}
    for key, width in widths.items():
        if arrays[key].ndim != 2 or arrays[key].shape[1] != width:
            raise ValueError(f"{name}: {key} must be (T, {width}), got {arrays[key].shape}")
    if len(set(frames.values())) != 1:
        raise ValueError(f"{name}: poses, trans and expressions disagree on T: {frames}")
    if frames["poses"] < 2:
        raise ValueError(f"{name}: motion statistics need at least 2 frames, got {frames['poses']}")
    return arrays


def _rotations(poses: np.ndarray) -> torch.Tensor:
    """(T, 165) axis-angle -> (T, 55, 3, 3) float64 local rotation matrices."""
    axis_angle = rearrange(torch.from_numpy(poses), "frames (joints xyz) -> frames joints xyz", joints=NUM_JOINTS)
    return axis_angle_to_matrix(axis_angle)


def _statistics_of(arrays: dict[str, np.ndarray]) -> dict[str, float]:
    rotations = _rotations(arrays["poses"])
    step_angles = geodesic_distance(rotations[:-1], rotations[1:])  # (T - 1, 55)
    result = {"frames": float(len(arrays["poses"]))}
    for part, joints in SPEED_JOINTS.items():
        result[f"{part}_speed"] = float(step_angles[:, list(joints)].mean())
    result["expression_std"] = float(arrays["expressions"].std(axis=0).mean())
    for axis, column in HORIZONTAL_AXES.items():
        values = arrays["trans"][:, column]
        result[f"trans_{axis}_range"] = float(values.max() - values.min())
    return result


def motion_statistics(motion: MotionArrays) -> dict[str, float]:
    """The statistics of one motion (module docstring): ``frames`` and every name of :data:`STATISTICS`.

    Args:
        motion: ``poses`` (T, 165) axis-angle, ``trans`` (T, 3) metres, ``expressions`` (T, 100); numpy arrays
            (e.g. :func:`echomask.data.beat2.read_motion`'s or :func:`echomask.inference.motion_to_smplx`'s).
    """
    return _statistics_of(_checked(motion, "motion_statistics"))


def _ratio(pred: float, gt: float) -> float:
    return pred / gt if gt != 0 else float("nan")


def _crop_pair(gt: MotionArrays, pred: MotionArrays) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Both motions checked and cropped to their common length."""
    gt, pred = _checked(gt, "ground truth"), _checked(pred, "prediction")
    frames = min(len(gt["poses"]), len(pred["poses"]))
    return {key: value[:frames] for key, value in gt.items()}, {key: value[:frames] for key, value in pred.items()}


def compare_motion(gt: MotionArrays, pred: MotionArrays) -> dict[str, float]:
    """One sequence's statistics of the ground truth and the prediction, cropped to their common length.

    Returns:
        ``frames`` and, for every name of :data:`STATISTICS`, ``<name>_gt``, ``<name>_pred`` and ``<name>_ratio``
        (pred / gt, NaN where gt is 0).
    """
    gt_arrays, pred_arrays = _crop_pair(gt, pred)
    return _sides({"gt": _statistics_of(gt_arrays), "pred": _statistics_of(pred_arrays)})


def _sides(statistics: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """{"gt": {name: value}, "pred": {name: value}} -> the flat ``<name>_gt/_pred/_ratio`` dict, with ``frames``."""
    result = {"frames": statistics["gt"]["frames"]}
    for name in STATISTICS:
        gt, pred = statistics["gt"][name], statistics["pred"][name]
        result.update({f"{name}_gt": gt, f"{name}_pred": pred, f"{name}_ratio": _ratio(pred, gt)})
    return result


def aggregate_statistics(per_sequence: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Pool per-sequence statistics (of :func:`compare_motion` or :func:`motion_statistics`) over sequences.

    Every value but ``frames`` and the ratios is the frame-weighted mean (weight: each sequence's ``frames``);
    ``frames`` is the total; every ``<name>_ratio`` is recomputed as the pooled ``<name>_pred`` / ``<name>_gt``.
    """
    rows = list(per_sequence)
    if not rows:
        raise ValueError("aggregate_statistics: no sequences to pool")
    keys = [key for key in rows[0] if key != "frames" and not key.endswith("_ratio")]
    for index, row in enumerate(rows):
        missing = [key for key in ["frames", *keys] if key not in row]
        if missing:
            raise ValueError(f"aggregate_statistics: sequence {index} lacks {missing}")
    weights = np.array([row["frames"] for row in rows], dtype=np.float64)
    pooled = {"frames": float(weights.sum())}
    for key in keys:
        pooled[key] = float(np.dot(weights, [row[key] for row in rows]) / weights.sum())
    for name in STATISTICS:
        if f"{name}_gt" in pooled and f"{name}_pred" in pooled:
            pooled[f"{name}_ratio"] = _ratio(pooled[f"{name}_pred"], pooled[f"{name}_gt"])
    return pooled


def _mean_pairwise_distance(rotations: Sequence[torch.Tensor]) -> float:
    """Mean over pairs i < j of the joint- and frame-averaged geodesic angle, each pair cropped to the shorter."""
    distances = []
    for first, second in itertools.combinations(rotations, 2):
        frames = min(len(first), len(second))
        distances.append(float(geodesic_distance(first[:frames], second[:frames]).mean()))
    return float(np.mean(distances))


def distinctness(gts: Sequence[MotionArrays], preds: Sequence[MotionArrays]) -> dict[str, float]:
    """How different the predictions for different inputs are, relative to their ground truths (module docstring).

    Args:
        gts: the ground truths of N ≥ 2 sequences.
        preds: the predictions of the same sequences, in the same order.

    Returns:
        ``distinctness_gt``, ``distinctness_pred`` (rad) and ``distinctness_ratio`` (pred / gt, NaN where gt is 0).
    """
    if len(gts) != len(preds):
        raise ValueError(f"distinctness: {len(gts)} ground truths but {len(preds)} predictions")
    if len(gts) < 2:
        raise ValueError(f"distinctness compares pairs of sequences: it needs at least 2, got {len(gts)}")
    rotations: dict[str, list[torch.Tensor]] = {side: [] for side in SIDES}
    for gt, pred in zip(gts, preds):
        for side, arrays in zip(SIDES, _crop_pair(gt, pred)):
            rotations[side].append(_rotations(arrays["poses"])[:, list(DISTINCTNESS_JOINTS)])
    gt_distance, pred_distance = (_mean_pairwise_distance(rotations[side]) for side in SIDES)
    return {
        "distinctness_gt": gt_distance,
        "distinctness_pred": pred_distance,
        "distinctness_ratio": _ratio(pred_distance, gt_distance),
    }


def motion_statistics_report(
    gts: Mapping[str, MotionArrays],
    preds: Mapping[str, MotionArrays],
) -> dict[str, dict]:
    """Everything for a set of sequences: ``{"per_sequence": {id: compare_motion(...)}, "all": {...}}``.

    ``"all"`` is :func:`aggregate_statistics` of the sequences plus, with two or more sequences, the
    :func:`distinctness` entries. ``gts`` and ``preds`` are keyed by sequence id and must hold the same ids.
    """
    if set(gts) != set(preds):
        raise ValueError(
            f"motion_statistics_report: ids differ; only in the ground truth: {sorted(set(gts) - set(preds))}, "
            f"only in the predictions: {sorted(set(preds) - set(gts))}"
        )
    ids = sorted(gts)
    per_sequence = {seq_id: compare_motion(gts[seq_id], preds[seq_id]) for seq_id in ids}
    pooled = aggregate_statistics(per_sequence.values())
    if len(ids) >= 2:
        pooled.update(distinctness([gts[seq_id] for seq_id in ids], [preds[seq_id] for seq_id in ids]))
    return {"per_sequence": per_sequence, "all": pooled}


def statistics_table(statistics: Mapping[str, float], digits: int = 4) -> str:
    """A table of one set of statistics (:func:`compare_motion`, :func:`aggregate_statistics` or the report's
    ``"all"``): one row per statistic, columns GT, generated and generated / GT; the distinctness row when present.
    """
    names = [*STATISTICS, DISTINCTNESS[0]]
    labels = {**STATISTICS, DISTINCTNESS[0]: DISTINCTNESS}
    present = [name for name in names if f"{name}_gt" in statistics and f"{name}_pred" in statistics]
    if not present:
        raise ValueError("statistics_table: no <name>_gt / <name>_pred pairs to show")
    header = ["statistic", "GT", "generated", "generated / GT"]
    body = []
    for name in present:
        label, unit = labels[name]
        ratio = statistics.get(f"{name}_ratio", _ratio(statistics[f"{name}_pred"], statistics[f"{name}_gt"]))
        body.append(
            [
                f"{label} ({unit})" if unit else label,
                f"{statistics[f'{name}_gt']:.{digits}f}",
                f"{statistics[f'{name}_pred']:.{digits}f}",
                f"{ratio:.2f}",
            ]
        )
    return aligned_columns(header, body)


def translation_within_target(statistics: Mapping[str, float]) -> bool:
    """Whether one sequence's (:func:`compare_motion`) generated x and z ranges are both within the drift target:
    at most :data:`DRIFT_FACTOR` x the ground truth's range + :data:`DRIFT_MARGIN` metres."""
    return all(
        statistics[f"trans_{axis}_range_pred"] <= DRIFT_FACTOR * statistics[f"trans_{axis}_range_gt"] + DRIFT_MARGIN
        for axis in HORIZONTAL_AXES
    )


def drift_table(per_sequence: Mapping[str, Mapping[str, float]]) -> str:
    """Per sequence (id -> :func:`compare_motion` values): generated vs true x/z range and whether the target holds."""
    lines = [f"horizontal range, generated vs ground truth (target: <= {DRIFT_FACTOR:g} x truth + {DRIFT_MARGIN:.2f} m)"]
    for seq_id, statistics in per_sequence.items():
        ranges = "  ".join(
            f"{axis} {statistics[f'trans_{axis}_range_pred']:6.3f} m vs {statistics[f'trans_{axis}_range_gt']:6.3f} m"
            for axis in HORIZONTAL_AXES
        )
        lines.append(f"  {seq_id:<20} {ranges}  {'ok' if translation_within_target(statistics) else 'DRIFTS'}")
    return "\n".join(lines)
