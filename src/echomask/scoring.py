"""`MotionScorer`: the test-split metrics of generated motion (SPEC §8), one sequence at a time, and the one
report layout every scoring path writes.

Three paths score motion: `echomask evaluate` (:func:`echomask.evaluation.evaluate_predictions`, files on disk),
the generator's test loop (`GeneratorModule.test_step`, under DDP too) and the masking ablation
(`bench/ablation_masking.py`, through `evaluate_predictions`). All of them add each test sequence to a
`MotionScorer` and write its :meth:`MotionScorer.report`, which `echomask.results` (the notebook) reads.

What is measured per sequence (raw values; :mod:`echomask.metrics.display` gives the paper scales):

* FGD on the 55 joints in 6D through the FGD feature extractor (:func:`fgd_motion`); over the run only;
* BC of the generated joints with the sequence's speech;
* L1 diversity of the generated joints;
* face MSE and the two LVDs on :func:`face_signal` (without ground-truth faces to compare: none).

The report (a JSON-ready dict; :data:`REPORT_KEYS` are always present):

``name``, ``metrics`` (raw), ``paper_scale``, ``protocol``, ``fgd_checkpoint``, ``kinematics``,
``approximate_skeleton``, ``face_label`` (with face metrics), ``joint_mean_speed_source``; the caller's
:class:`Provenance` (``data_root``, ``split``, ``speakers``, ``predictions``, ``cropping``); ``per_sequence`` (by
id: ``frames``, ``bc``, ``l1div``, ``face_mse`` and what the caller adds, e.g. ``npz``); ``num_sequences``,
``num_frames``, ``seconds``; ``sections``: one entry per :class:`SequenceStatistic` (its summary over the run;
each sequence's own values sit under the same name in ``per_sequence[id]``). Every report has the section
``motion_statistics`` (:class:`MotionStatisticsSection`: angular speed per part, expression std, translation range of
ground truth and prediction and their ratios, and how different the outputs for different inputs are).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.distributed as dist
from einops import rearrange
from torch import Tensor, nn

from echomask.metrics import (
    FACE_LABEL_PARAMETERS,
    FACE_LABEL_VERTICES,
    BeatConsistency,
    FaceLVDPaper,
    FaceVelocityError,
    FaceVertexMSE,
    FrechetGestureDistance,
    L1Diversity,
    format_table,
    to_paper_scale,
)
from echomask.metrics.beat_consistency import PROTOCOLS
from echomask.metrics.motion_statistics import aggregate_statistics, compare_motion, distinctness, statistics_table
from echomask.metrics.token_statistics import aggregate_tokens, compare_tokens, token_table
from echomask.models.motion_autoencoder import MotionAutoencoder
from echomask.motion.kinematics import Kinematics
from echomask.motion.rotations import axis_angle_to_rot6d, matrix_to_rot6d, rot6d_to_matrix
from echomask.motion.skeleton import JAW_JOINT
from echomask.stages import STAGES

AESKCONV_WEIGHTS = Path("weights/AESKConv_240_100.bin")  # §4.1, relative to the corpus folder
MEAN_SPEED_WEIGHTS = Path("weights/mean_vel_smplxflame_30.npy")  # §4.1, relative to the corpus folder
DEFAULT_EVALUATOR_CHECKPOINT = Path(STAGES["evaluator"].checkpoint)  # written by `make train-evaluator`
APPROXIMATE_NOTE = "approximate skeleton: not comparable with papers"
FGD_SKIPPED = "none (FGD skipped)"
SMPLX_KEYS = ("poses", "trans", "expressions")  # what a scored motion holds: (T, 165), (T, 3), (T, 100)
FACE_METRICS = {"face_mse": FaceVertexMSE, "face_lvd_paper": FaceLVDPaper, "face_velocity_error": FaceVelocityError}
PER_SEQUENCE_FACE = ("face_mse",)  # the face metrics also reported per sequence
REPORT_KEYS = (
    "name",
    "metrics",
    "paper_scale",
    "protocol",
    "fgd_checkpoint",
    "kinematics",
    "approximate_skeleton",
    "joint_mean_speed_source",
    "data_root",
    "split",
    "speakers",
    "predictions",
    "cropping",
    "per_sequence",
    "num_sequences",
    "num_frames",
    "seconds",
)
SECTIONS_KEY = "sections"  # extra statistics; absent from reports written before it existed


# ------------------------------------------------------------------------------------------- what is measured


def fgd_motion(poses: Tensor) -> Tensor:
    """The FGD encoder's input ``(1, T, 330)`` from axis-angle poses ``(T, 165)`` (SPEC §8.1).

    Prepared as the paper-era test loop did: axis-angle → matrix → 6D, then once more 6D → matrix (Gram–Schmidt)
    → 6D (``shared/spec/fgd_aeskconv.md`` §8).
    """
    rot6d = axis_angle_to_rot6d(rearrange(poses, "frames (joint xyz) -> frames joint xyz", xyz=3))
    rot6d = matrix_to_rot6d(rot6d_to_matrix(rot6d))
    return rearrange(rot6d, "frames joint six -> 1 frames (joint six)")


def face_signal(kinematics: Kinematics, motion: Mapping[str, Tensor], betas: Tensor | None) -> Tensor:
    """What the face metrics compare, per frame.

    With an SMPL-X model: the ``(T, 10475, 3)`` vertices of the jaw pose and expressions alone (every other joint
    and the translation zeroed, the ground truth's ``betas``), as the reference evaluation does. With the
    approximate skeleton (no mesh): the ``(T, 103)`` jaw axis-angle and 100 expression coefficients
    (:data:`~echomask.metrics.FACE_LABEL_PARAMETERS`).

    Args:
        motion: ``poses`` (T, 165) and ``expressions`` (T, 100).
        betas: ``(300,)`` body shape.
    """
    jaw = slice(3 * JAW_JOINT, 3 * JAW_JOINT + 3)
    poses, expressions = motion["poses"], motion["expressions"]
    if kinematics.is_approximate:
        return torch.cat([poses[:, jaw], expressions], dim=-1)
    face_poses = torch.zeros_like(poses)
    face_poses[:, jaw] = poses[:, jaw]
    return kinematics.vertices(face_poses, torch.zeros_like(motion["trans"]), expressions=expressions, betas=betas)


def face_label(kinematics: Kinematics) -> str:
    """Which face signal :func:`face_signal` gives with these kinematics."""
    return FACE_LABEL_PARAMETERS if kinematics.is_approximate else FACE_LABEL_VERTICES


# ------------------------------------------------------------------------------------- checkpoints and statistics


def find_fgd_checkpoint(corpus_root: Path, fgd_checkpoint: str | Path | None = None) -> Path:
    """The FGD feature extractor to use: the given file, else ``<corpus>/weights/AESKConv_240_100.bin``, else
    :data:`DEFAULT_EVALUATOR_CHECKPOINT` (relative to the working directory)."""
    if fgd_checkpoint is not None:
        path = Path(fgd_checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"FGD checkpoint {path} not found")
        return path
    shipped = corpus_root / AESKCONV_WEIGHTS
    if shipped.is_file():
        return shipped
    if DEFAULT_EVALUATOR_CHECKPOINT.is_file():
        return DEFAULT_EVALUATOR_CHECKPOINT
    raise FileNotFoundError(
        f"no FGD feature extractor: {shipped} does not exist and {DEFAULT_EVALUATOR_CHECKPOINT} has not been trained; "
        "run `make train-evaluator` (or pass --fgd-checkpoint)"
    )


def load_fgd_encoder(checkpoint: str | Path) -> nn.Module:
    """The frozen encoder ``(B, T, 330) -> (B, T/16, 240)`` of an AESKConv file or an evaluator checkpoint."""
    return MotionAutoencoder.from_checkpoint(checkpoint).encoder.eval().requires_grad_(False)


def resolve_joint_mean_speed(
    corpus_root: Path,
    train_split: Callable[[], np.ndarray],
    joint_mean_speed: np.ndarray | str | Path | None = None,
) -> tuple[np.ndarray, str]:
    """BC's ``(55,)`` per-joint mean speeds and where they come from: the given array or ``.npy`` file, else
    ``<corpus>/weights/mean_vel_smplxflame_30.npy``, else ``train_split()`` (the train split's statistic)."""
    if isinstance(joint_mean_speed, np.ndarray):
        return joint_mean_speed, "given"
    path = corpus_root / MEAN_SPEED_WEIGHTS if joint_mean_speed is None else Path(joint_mean_speed)
    if path.is_file():
        return np.load(path), str(path)
    if joint_mean_speed is not None:
        raise FileNotFoundError(f"joint mean speed file {path} not found")
    return train_split(), f"train split of {corpus_root}"


def gather_objects(value: object) -> list:
    """`value` from every rank (a one-element list without torch.distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


# ---------------------------------------------------------------------------------------------- the scorer


@dataclass(frozen=True)
class ScoredSequence:
    """One test sequence as a :class:`SequenceStatistic` sees it.

    ground_truth, generated: ``poses`` (T, 165), ``trans`` (T, 3), ``expressions`` (T, 100), one length T.
    joints: ``(T, 55, 3)`` joints of the generated motion. audio: ``(N,)`` speech at 16 kHz. betas: ``(300,)`` or
    None. kinematics: the scorer's (for joints of the ground truth). tokens: part -> (ground-truth, predicted) stage-1
    code indices, (L, N) each, when the caller has them (the generator's test loop), else None.
    """

    seq_id: str
    ground_truth: Mapping[str, Tensor]
    generated: Mapping[str, Tensor]
    joints: Tensor
    audio: np.ndarray
    betas: Tensor | None
    kinematics: Kinematics
    tokens: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None


class SequenceStatistic(Protocol):
    """An extra section of the report (e.g. motion statistics of ground truth and prediction).

    ``measure`` gives one sequence's JSON-ready values (stored as ``per_sequence[id][name]``); ``summarize`` turns
    every sequence's values, gathered from all ranks, into the run's section (``sections[name]``).
    """

    name: str

    def measure(self, sequence: ScoredSequence) -> dict: ...

    def summarize(self, per_sequence: Mapping[str, dict]) -> dict: ...

    def reset(self) -> None: ...


def _numpy_motion(motion: Mapping[str, Tensor]) -> dict[str, np.ndarray]:
    return {key: motion[key].detach().cpu().numpy() for key in SMPLX_KEYS}


class TokenStatisticsSection:
    """The report section ``token_statistics`` (:mod:`echomask.metrics.token_statistics`): per part and RVQ layer,
    the accuracy of the predicted tokens and the code usage of predicted and ground-truth tokens. Needs the
    sequences' tokens (``MotionScorer.add(..., tokens=...)``)."""

    name = "token_statistics"

    def measure(self, sequence: ScoredSequence) -> dict:
        if sequence.tokens is None:
            raise ValueError(
                f"sequence {sequence.seq_id}: token statistics need its ground-truth and predicted tokens "
                "(MotionScorer.add(..., tokens=...))"
            )
        ground_truth = {part: pair[0] for part, pair in sequence.tokens.items()}
        return compare_tokens(ground_truth, {part: pair[1] for part, pair in sequence.tokens.items()})

    def summarize(self, per_sequence: Mapping[str, dict]) -> dict:
        return aggregate_tokens(per_sequence.values())

    def reset(self) -> None:
        """Keeps nothing between sequences."""


class MotionStatisticsSection:
    """The report section ``motion_statistics`` (:mod:`echomask.metrics.motion_statistics`).

    Per sequence: :func:`~echomask.metrics.motion_statistics.compare_motion` of ground truth and prediction. Over the
    run: the frame-weighted pool of those, and with two or more sequences the distinctness of the outputs (which
    needs every sequence's motion: kept until :meth:`reset` and gathered from all ranks under DDP).
    """

    name = "motion_statistics"

    def __init__(self) -> None:
        self.motions: dict[str, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = {}

    def measure(self, sequence: ScoredSequence) -> dict:
        ground_truth, generated = _numpy_motion(sequence.ground_truth), _numpy_motion(sequence.generated)
        self.motions[sequence.seq_id] = (ground_truth, generated)
        return compare_motion(ground_truth, generated)

    def summarize(self, per_sequence: Mapping[str, dict]) -> dict:
        motions = {}
        for part in gather_objects(self.motions):
            motions.update(part)
        pooled = aggregate_statistics(per_sequence.values())
        if len(motions) >= 2:
            ids = sorted(motions)
            pooled.update(distinctness([motions[i][0] for i in ids], [motions[i][1] for i in ids]))
        return pooled

    def reset(self) -> None:
        self.motions = {}


@dataclass(frozen=True)
class Provenance:
    """What was scored, as the report names it: the corpus, the split and speakers, the predictions (None: the
    ground truth itself) and how predictions and ground truth were aligned."""

    data_root: str
    split: str
    speakers: list[int] | None
    predictions: str | None
    cropping: str


class MotionScorer:
    """The metric collection of one scoring run (module docstring).

    Args:
        kinematics: joints (and face vertices with an SMPL-X model) from poses.
        joint_mean_speed: BC's ``(55,)`` per-joint mean speeds; joint_mean_speed_source: where they come from.
        fgd_checkpoint: the FGD feature extractor (AESKConv file or evaluator checkpoint); None skips FGD.
        protocol: ``"paper"`` or ``"clean"`` (SPEC §8.1), for FGD, BC and face MSE.
        face: measure the face metrics (False for the ground truth alone: nothing to compare it with).
        statistics: extra per-sequence statistics, one report section each (after the built-in
            :class:`MotionStatisticsSection`).
    """

    def __init__(
        self,
        kinematics: Kinematics,
        joint_mean_speed: np.ndarray,
        joint_mean_speed_source: str,
        fgd_checkpoint: str | Path | None,
        protocol: str = "paper",
        face: bool = True,
        statistics: Sequence[SequenceStatistic] = (),
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        statistics = [MotionStatisticsSection(), *statistics]
        names = [statistic.name for statistic in statistics]
        if len(set(names)) != len(names) or set(names) & {"frames", "bc", "l1div", *FACE_METRICS}:
            raise ValueError(f"statistics need distinct names that are not metric names, got {names}")
        self.kinematics = kinematics
        self.protocol = protocol
        self.joint_mean_speed_source = joint_mean_speed_source
        self.fgd_checkpoint = None if fgd_checkpoint is None else str(fgd_checkpoint)
        self.statistics = list(statistics)
        self.fgd = None
        if fgd_checkpoint is not None:
            encoder = load_fgd_encoder(fgd_checkpoint)
            self.fgd = FrechetGestureDistance(encoder=encoder, encoder_name=self.fgd_checkpoint, protocol=protocol)
        self.bc = BeatConsistency(joint_mean_speed=joint_mean_speed, protocol=protocol)
        self.l1div = L1Diversity()
        self.face: dict[str, FaceVertexMSE | FaceLVDPaper | FaceVelocityError] = {}
        if face:
            label = face_label(kinematics)
            self.face = {
                name: metric(protocol=protocol, label=label) if name == "face_mse" else metric(label=label)
                for name, metric in FACE_METRICS.items()
            }
        self.per_sequence: dict[str, dict] = {}

    @property
    def metrics(self) -> dict[str, torch.nn.Module]:
        """The torchmetrics objects by result key."""
        found = {"fgd": self.fgd, "bc": self.bc, "l1div": self.l1div, **self.face}
        return {name: metric for name, metric in found.items() if metric is not None}

    def to(self, device: torch.device | str) -> MotionScorer:
        """Move the metrics, the FGD encoder and the kinematics to ``device``."""
        self.kinematics.to(device)
        for metric in self.metrics.values():
            metric.to(device)
        return self

    def reset(self) -> None:
        """Forget every sequence added so far."""
        for metric in self.metrics.values():
            metric.reset()
        for statistic in self.statistics:
            statistic.reset()
        self.per_sequence = {}

    @torch.no_grad()
    def add(
        self,
        seq_id: str,
        ground_truth: Mapping[str, Tensor],
        generated: Mapping[str, Tensor],
        audio: np.ndarray,
        betas: Tensor | None = None,
        tokens: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
        **details,
    ) -> dict:
        """Score one sequence; returns (and keeps) its per-sequence values.

        Args:
            ground_truth, generated: ``poses`` (T, 165), ``trans`` (T, 3), ``expressions`` (T, 100), cropped to one
                length T, on the device of the metrics.
            audio: ``(N,)`` the sequence's speech at 16 kHz (BC's onsets).
            betas: ``(300,)`` body shape of the ground truth (joints and face vertices), or None.
            tokens: part -> (ground-truth, predicted) stage-1 code indices, (L, N) each (for
                :class:`TokenStatisticsSection`).
            details: JSON-ready values stored with the sequence (e.g. ``npz``: where the prediction was written).
        """
        frames = {len(motion[key]) for motion in (ground_truth, generated) for key in SMPLX_KEYS}
        if len(frames) != 1:
            raise ValueError(f"sequence {seq_id}: ground truth and prediction must be cropped to one length first")
        if seq_id in self.per_sequence:
            raise ValueError(f"sequence {seq_id} was scored twice")
        joints = self.kinematics(generated["poses"], generated["trans"], betas=betas)
        if self.fgd is not None:
            self.fgd.update(fgd_motion(ground_truth["poses"]), real=True)
            self.fgd.update(fgd_motion(generated["poses"]), real=False)
        values = {"frames": frames.pop(), "bc": float(self.bc(joints, audio)), "l1div": float(self.l1div(joints))}
        if self.face:
            rec = face_signal(self.kinematics, generated, betas)
            tar = face_signal(self.kinematics, ground_truth, betas)
            face_values = {name: float(metric(rec, tar)) for name, metric in self.face.items()}
            values.update({name: face_values[name] for name in PER_SEQUENCE_FACE})
        sequence = ScoredSequence(seq_id, ground_truth, generated, joints, audio, betas, self.kinematics, tokens)
        values.update({statistic.name: statistic.measure(sequence) for statistic in self.statistics})
        self.per_sequence[seq_id] = {**values, **details}
        return self.per_sequence[seq_id]

    def compute(self) -> dict[str, float]:
        """The raw value of every metric over all sequences added (on every rank, under DDP)."""
        return {name: float(metric.compute()) for name, metric in self.metrics.items()}

    def report(self, name: str, provenance: Provenance, seconds: float) -> dict:
        """The report of the run (module docstring). Under DDP every rank must call it (it gathers)."""
        raw = self.compute()
        per_sequence = {}
        for part in gather_objects(self.per_sequence):
            per_sequence.update(part)
        per_sequence = dict(sorted(per_sequence.items()))
        sections = {}
        for statistic in self.statistics:
            values = {seq_id: sequence[statistic.name] for seq_id, sequence in per_sequence.items()}
            sections[statistic.name] = statistic.summarize(values)
        return {
            "name": name,
            "metrics": raw,
            "paper_scale": to_paper_scale(raw),
            "protocol": self.protocol,
            "fgd_checkpoint": FGD_SKIPPED if self.fgd_checkpoint is None else self.fgd_checkpoint,
            "kinematics": self.kinematics.label,
            "approximate_skeleton": self.kinematics.is_approximate,
            **({"face_label": face_label(self.kinematics)} if self.face else {}),
            "joint_mean_speed_source": self.joint_mean_speed_source,
            **asdict(provenance),
            "per_sequence": per_sequence,
            "num_sequences": len(per_sequence),
            "num_frames": sum(values["frames"] for values in per_sequence.values()),
            "seconds": seconds,
            SECTIONS_KEY: sections,
        }


# ---------------------------------------------------------------------------------------------------- reports


def check_report(report: object, source: str) -> dict:
    """``report`` if it holds every key of :data:`REPORT_KEYS`, else a ValueError naming ``source``."""
    missing = [key for key in REPORT_KEYS if not isinstance(report, dict) or key not in report]
    if missing:
        raise ValueError(f"{source}: not an evaluation result, missing {missing}")
    return report


def table_row(report: Mapping) -> dict:
    """One row of :func:`~echomask.metrics.format_table` from a report."""
    row = {"name": report["name"], **report["metrics"]}
    if "face_label" in report:
        row["face_label"] = report["face_label"]
    return row


def format_report(report: Mapping) -> str:
    """The paper-style table of one report, then how it was measured."""
    lines = [
        format_table([table_row(report)]),
        f"protocol: {report['protocol']} | FGD checkpoint: {report['fgd_checkpoint']} | "
        f"kinematics: {report['kinematics']}",
    ]
    if report["approximate_skeleton"]:
        lines.append(APPROXIMATE_NOTE)
    speakers = "all speakers" if report["speakers"] is None else f"speakers {report['speakers']}"
    lines.append(
        f"{report['num_sequences']} {report['split']} sequences ({speakers}, {report['num_frames']} frames) of "
        f"{report['data_root']}; {report['cropping']}; BC joint mean speeds: {report['joint_mean_speed_source']}; "
        f"{report['seconds']:.1f} s"
    )
    section = report.get(SECTIONS_KEY, {}).get(MotionStatisticsSection.name)
    if section is not None:
        lines += ["", "motion statistics (pooled over the sequences, frame-weighted):", statistics_table(section)]
    tokens = report.get(SECTIONS_KEY, {}).get(TokenStatisticsSection.name)
    if tokens is not None:
        lines += ["", f"stage-1 tokens, predicted vs ground truth ({tokens['tokens']} per part and layer):",
                  token_table(tokens)]
    return "\n".join(lines)


def write_report(report: Mapping, path_json: str | Path) -> Path:
    """Write a report as JSON (parent folders created) after checking its layout; returns the path."""
    path = Path(path_json)
    check_report(report, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path
