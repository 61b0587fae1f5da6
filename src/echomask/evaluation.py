"""Test-split metrics of any model's generated motion against BEAT2-format ground truth (SPEC §8, `echomask evaluate`).

The predictions are a folder of BEAT2/SMPL-X motion files, one ``<id>.npz`` per sequence of the evaluated split
(``poses`` (T, 165), ``trans`` (T, 3), ``expressions`` (T, 100), ``betas`` (300,), ``mocap_frame_rate`` 30), as
EchoMask or any other model writes them. Each prediction and its ground truth are cropped to their common length.

What is measured (raw values; :mod:`echomask.metrics.display` gives the paper scales):

* FGD on the 55 joints in 6D through the FGD feature extractor: ``fgd_checkpoint`` if given, else the corpus'
  ``weights/AESKConv_240_100.bin``, else the evaluator trained by ``make train-evaluator``
  (:data:`DEFAULT_EVALUATOR_CHECKPOINT`). The checkpoint used is part of the result.
* BC on the joints of the kinematics (SPEC §4.3) with the ground-truth audio; per-joint mean speeds from
  ``joint_mean_speed`` if given, else the corpus' ``weights/mean_vel_smplxflame_30.npy``, else the train split.
* L1 diversity on the same joints.
* Face MSE and the two LVDs on SMPL-X face vertices (body zeroed, jaw + expressions) with an SMPL-X model,
  else on the jaw axis-angle + 100 expression parameters (labelled so).

``pred_dir=None`` evaluates the ground truth itself (the "GT" row of a paper table: FGD(GT, GT) = 0, BC and
diversity of the ground truth, no face errors).
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from torch import Tensor, nn
from tqdm.auto import tqdm

from echomask.data.beat2 import (
    AUDIO_SAMPLE_RATE,
    MOTION_FPS,
    SPLIT_TYPES,
    BEAT2Corpus,
    BEAT2FormatError,
    Sequence,
    check_audio_header,
    read_audio_checked,
    read_motion,
    resolve_corpus_root,
)
from echomask.data.corpus_cache import crop_lengths, mean_joint_speed
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
from echomask.models.motion_autoencoder import MotionAutoencoder
from echomask.motion.kinematics import Kinematics, build_kinematics
from echomask.motion.rotations import axis_angle_to_rot6d, matrix_to_rot6d, rot6d_to_matrix
from echomask.motion.skeleton import JAW_JOINT

log = logging.getLogger(__name__)

DEFAULT_DATA_ROOT = Path("data/synthetic")
DEFAULT_EVALUATOR_CHECKPOINT = Path("logs/evaluator/checkpoints/last.ckpt")  # written by `make train-evaluator`
DEFAULT_REPORT_PATH = Path("outputs/evaluate/metrics.json")
AESKCONV_WEIGHTS = Path("weights/AESKConv_240_100.bin")  # §4.1, relative to the corpus folder
MEAN_SPEED_WEIGHTS = Path("weights/mean_vel_smplxflame_30.npy")  # §4.1, relative to the corpus folder
GROUND_TRUTH_NAME = "ground truth"
CROPPING_NOTE = "each prediction and its ground truth are cropped to their common length"
APPROXIMATE_NOTE = "approximate skeleton: not comparable with papers"


# ------------------------------------------------------------------------------------------- what is measured


def fgd_motion(poses: Tensor) -> Tensor:
    """The FGD encoder's input ``(1, T, 330)`` from axis-angle poses ``(T, 165)`` (SPEC §8.1).

    Prepared as the paper-era test loop did: axis-angle → matrix → 6D, then once more 6D → matrix (Gram–Schmidt)
    → 6D (``shared/spec/fgd_aeskconv.md`` §8).
    """
    rot6d = axis_angle_to_rot6d(rearrange(poses, "frames (joint xyz) -> frames joint xyz", xyz=3))
    rot6d = matrix_to_rot6d(rot6d_to_matrix(rot6d))
    return rearrange(rot6d, "frames joint six -> 1 frames (joint six)")


def face_signal(kinematics: Kinematics, motion: dict[str, Tensor], betas: Tensor) -> Tensor:
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


def train_split_joint_mean_speed(
    data_root: str | Path,
    kinematics: Kinematics,
    speakers: Iterable[int] | None = None,
    fps: int = MOTION_FPS,
) -> np.ndarray:
    """Per-joint mean speed ``(55,)`` over the ground truth of the train split, cropped like the corpus cache.

    The same statistic as :meth:`echomask.data.corpus_cache.CorpusCache.joint_mean_speed` (one implementation,
    :func:`~echomask.data.corpus_cache.mean_joint_speed`), without building the cache.
    """
    corpus = BEAT2Corpus(data_root, speakers=speakers, splits=["train"])
    return mean_joint_speed((_train_joints(sequence, kinematics, fps) for sequence in corpus), fps=fps)


def _train_joints(sequence: Sequence, kinematics: Kinematics, fps: int) -> np.ndarray:
    """``(T, 55, 3)`` joints of one sequence, cropped to the whole seconds shared with its audio (§4.5)."""
    motion = read_motion(sequence.motion_path, fps=fps)
    audio_samples = check_audio_header(sequence.audio_path)
    frames, _ = crop_lengths(len(motion["poses"]), audio_samples, fps, AUDIO_SAMPLE_RATE)
    with torch.no_grad():
        joints = kinematics(torch.from_numpy(motion["poses"][:frames]), torch.from_numpy(motion["trans"][:frames]))
    return joints.numpy()


def resolve_joint_mean_speed(
    corpus_root: Path,
    kinematics: Kinematics,
    speakers: Iterable[int] | None,
    joint_mean_speed: np.ndarray | str | Path | None = None,
) -> tuple[np.ndarray, str]:
    """BC's per-joint mean speeds and where they come from: the given array or ``.npy`` file, else
    ``<corpus>/weights/mean_vel_smplxflame_30.npy``, else the train split (:func:`train_split_joint_mean_speed`)."""
    if isinstance(joint_mean_speed, np.ndarray):
        return joint_mean_speed, "given"
    path = corpus_root / MEAN_SPEED_WEIGHTS if joint_mean_speed is None else Path(joint_mean_speed)
    if path.is_file():
        return np.load(path), str(path)
    if joint_mean_speed is not None:
        raise FileNotFoundError(f"joint mean speed file {path} not found")
    speeds = train_split_joint_mean_speed(corpus_root, kinematics, speakers)
    return speeds, f"train split of {corpus_root}"


# ------------------------------------------------------------------------------------------------ sequences


def read_prediction(pred_dir: Path, seq_id: str) -> dict[str, np.ndarray | int]:
    """The checked prediction ``<pred_dir>/<id>.npz`` of one sequence (see :func:`read_motion`)."""
    path = pred_dir / f"{seq_id}.npz"
    if not path.is_file():
        raise BEAT2FormatError(path, f"prediction missing for sequence {seq_id} (one <id>.npz per sequence expected)")
    return read_motion(path)


def _cropped_tensors(motion: dict[str, np.ndarray | int], frames: int) -> dict[str, Tensor]:
    """``poses``, ``trans`` and ``expressions`` of a read motion as tensors of their first ``frames`` frames."""
    return {key: torch.from_numpy(motion[key][:frames]) for key in ("poses", "trans", "expressions")}


class _Metrics:
    """The metric objects of one evaluation run and the per-sequence values they report."""

    def __init__(
        self,
        encoder: nn.Module,
        encoder_name: str,
        joint_speed: np.ndarray,
        protocol: str,
        face: str | None,
    ) -> None:
        """``face``: the face label (None: no face metrics, as for the ground truth alone)."""
        self.fgd = FrechetGestureDistance(encoder=encoder, encoder_name=encoder_name, protocol=protocol)
        self.bc = BeatConsistency(joint_mean_speed=joint_speed, protocol=protocol)
        self.l1div = L1Diversity()
        self.face = {}
        if face is not None:
            self.face = {
                "face_mse": FaceVertexMSE(protocol=protocol, label=face),
                "face_lvd_paper": FaceLVDPaper(label=face),
                "face_velocity_error": FaceVelocityError(label=face),
            }

    def add(
        self,
        ground_truth: dict[str, Tensor],
        generated: dict[str, Tensor],
        joints: Tensor,
        audio: np.ndarray,
        faces: tuple[Tensor, Tensor] | None,
    ) -> dict[str, float]:
        """Add one sequence; returns its own BC, L1div and (with faces) face MSE.

        Args:
            ground_truth, generated: ``poses`` (T, 165), ``trans`` (T, 3), ``expressions`` (T, 100).
            joints: ``(T, 55, 3)`` joints of the generated motion.
            audio: ``(N,)`` ground-truth speech at 16 kHz.
            faces: generated and ground-truth :func:`face_signal`, or None.
        """
        self.fgd.update(fgd_motion(ground_truth["poses"]), real=True)
        self.fgd.update(fgd_motion(generated["poses"]), real=False)
        values = {"bc": float(self.bc(joints, audio)), "l1div": float(self.l1div(joints))}
        if faces is not None:
            rec, tar = faces
            per_sequence = {name: float(metric(rec, tar)) for name, metric in self.face.items()}
            values["face_mse"] = per_sequence["face_mse"]
        return values

    def compute(self) -> dict[str, float]:
        results = {"fgd": self.fgd.compute(), "bc": self.bc.compute(), "l1div": self.l1div.compute()}
        results.update({name: metric.compute() for name, metric in self.face.items()})
        return {name: float(value) for name, value in results.items()}


# ----------------------------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate_predictions(
    pred_dir: str | Path | None,
    data_root: str | Path,
    *,
    speakers: Iterable[int] | None = None,
    split: str = "test",
    fgd_checkpoint: str | Path | None = None,
    protocol: str = "paper",
    smplx_model_dir: str | Path | None = None,
    joint_mean_speed: np.ndarray | str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Score the predictions in ``pred_dir`` against the ground truth of a split (module docstring).

    Args:
        pred_dir: folder with one BEAT2-format ``<id>.npz`` per sequence of the split; ``None`` scores the ground
            truth itself.
        data_root: the corpus (holding ``beat_english_v2.0.0/`` or being it).
        speakers: speaker numbers to evaluate (the BEAT2 benchmark: ``[2]``); None: all.
        split: which split of ``train_test_split.csv``.
        fgd_checkpoint: FGD feature extractor (AESKConv file or evaluator checkpoint); None: see
            :func:`find_fgd_checkpoint`.
        protocol: ``"paper"`` or ``"clean"`` (SPEC §8.1), for FGD, BC and face MSE.
        smplx_model_dir: SMPL-X model folder; None uses the approximate skeleton (numbers labelled so).
        joint_mean_speed: BC's ``(55,)`` per-joint mean speeds or a ``.npy`` file; None: see
            :func:`resolve_joint_mean_speed`.
        progress: show a progress bar over the sequences.

    Returns:
        A JSON-ready dict: ``name``, ``metrics`` (raw), ``paper_scale``, ``protocol``, ``fgd_checkpoint``,
        ``kinematics``, ``approximate_skeleton``, ``face_label`` (with predictions), ``joint_mean_speed_source``,
        ``data_root``, ``split``, ``speakers``, ``predictions``, ``cropping``, ``per_sequence`` (by id: frames,
        BC, L1div and face MSE), ``num_sequences``, ``num_frames``, ``seconds``.
    """
    started = time.perf_counter()
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if split not in SPLIT_TYPES:
        raise ValueError(f"split must be one of {SPLIT_TYPES}, got {split!r}")
    speakers = None if speakers is None else sorted(int(speaker) for speaker in speakers)
    if pred_dir is not None:
        pred_dir = Path(pred_dir)
        if not pred_dir.is_dir():
            raise FileNotFoundError(f"prediction folder {pred_dir} not found")
    corpus_root = resolve_corpus_root(data_root)
    corpus = BEAT2Corpus(corpus_root, speakers=speakers, splits=[split])
    kinematics = build_kinematics(smplx_model_dir)
    checkpoint = find_fgd_checkpoint(corpus_root, fgd_checkpoint)
    joint_speed, speed_source = resolve_joint_mean_speed(corpus_root, kinematics, speakers, joint_mean_speed)
    face = None if pred_dir is None else face_label(kinematics)
    metrics = _Metrics(load_fgd_encoder(checkpoint), str(checkpoint), joint_speed, protocol, face)
    log.info("evaluating %d %s sequences; FGD: %s; kinematics: %s", len(corpus), split, checkpoint, kinematics.label)

    per_sequence = {}
    for sequence in tqdm(corpus, desc=f"evaluating {split}", disable=not progress):
        gt_motion = read_motion(sequence.motion_path)
        generated_motion = gt_motion if pred_dir is None else read_prediction(pred_dir, sequence.id)
        frames = min(len(gt_motion["poses"]), len(generated_motion["poses"]))
        ground_truth = _cropped_tensors(gt_motion, frames)
        generated = _cropped_tensors(generated_motion, frames)
        betas = torch.from_numpy(gt_motion["betas"])
        joints = kinematics(generated["poses"], generated["trans"], betas=betas)
        faces = None
        if pred_dir is not None:
            faces = (face_signal(kinematics, generated, betas), face_signal(kinematics, ground_truth, betas))
        audio = read_audio_checked(sequence.audio_path)
        source = sequence.motion_path if pred_dir is None else pred_dir / f"{sequence.id}.npz"
        try:
            values = metrics.add(ground_truth, generated, joints, audio, faces)
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from error
        per_sequence[sequence.id] = {
            "frames": frames,
            "gt_frames": len(gt_motion["poses"]),
            "pred_frames": len(generated_motion["poses"]),
            **values,
        }

    raw = metrics.compute()
    return {
        "name": GROUND_TRUTH_NAME if pred_dir is None else str(pred_dir),
        "metrics": raw,
        "paper_scale": to_paper_scale(raw),
        "protocol": protocol,
        "fgd_checkpoint": str(checkpoint),
        "kinematics": kinematics.label,
        "approximate_skeleton": kinematics.is_approximate,
        **({} if face is None else {"face_label": face}),
        "joint_mean_speed_source": speed_source,
        "data_root": str(corpus_root),
        "split": split,
        "speakers": speakers,
        "predictions": None if pred_dir is None else str(pred_dir),
        "cropping": CROPPING_NOTE,
        "per_sequence": per_sequence,
        "num_sequences": len(per_sequence),
        "num_frames": sum(values["frames"] for values in per_sequence.values()),
        "seconds": time.perf_counter() - started,
    }


# ---------------------------------------------------------------------------------------------------- reports


def table_row(result: dict) -> dict:
    """One row of :func:`~echomask.metrics.format_table` from an :func:`evaluate_predictions` result."""
    row = {"name": result["name"], **result["metrics"]}
    if "face_label" in result:
        row["face_label"] = result["face_label"]
    return row


def format_report(result: dict) -> str:
    """The paper-style table of one result, then how it was measured."""
    lines = [
        format_table([table_row(result)]),
        f"protocol: {result['protocol']} | FGD checkpoint: {result['fgd_checkpoint']} | "
        f"kinematics: {result['kinematics']}",
    ]
    if result["approximate_skeleton"]:
        lines.append(APPROXIMATE_NOTE)
    speakers = "all speakers" if result["speakers"] is None else f"speakers {result['speakers']}"
    lines.append(
        f"{result['num_sequences']} {result['split']} sequences ({speakers}, {result['num_frames']} frames) of "
        f"{result['data_root']}; {result['cropping']}; BC joint mean speeds: {result['joint_mean_speed_source']}; "
        f"{result['seconds']:.1f} s"
    )
    return "\n".join(lines)


def write_report(result: dict, path_json: str | Path) -> Path:
    """Write ``result`` as JSON (parent folders created); returns the path."""
    path = Path(path_json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return path


# -------------------------------------------------------------------------------------------------------- CLI


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``echomask evaluate``."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--pred", metavar="DIR", help="folder of generated <id>.npz files (BEAT2/SMPL-X format)")
    source.add_argument("--gt-only", action="store_true", help="score the ground truth itself (the GT row)")
    parser.add_argument(
        "--data-root",
        default=str(DEFAULT_DATA_ROOT),
        help=f"corpus with the ground truth (default: {DEFAULT_DATA_ROOT})",
    )
    parser.add_argument("--speakers", type=int, nargs="+", help="speaker numbers (BEAT2 benchmark: 2); default: all")
    parser.add_argument("--split", default="test", choices=SPLIT_TYPES, help="split to evaluate (default: test)")
    parser.add_argument(
        "--fgd-checkpoint",
        help=f"FGD feature extractor (default: <corpus>/{AESKCONV_WEIGHTS} if present, "
        f"else {DEFAULT_EVALUATOR_CHECKPOINT})",
    )
    parser.add_argument(
        "--protocol",
        default="paper",
        choices=PROTOCOLS,
        help="metric protocol, SPEC §8.1 (default: paper)",
    )
    parser.add_argument("--smplx-model-dir", help="SMPL-X model folder (default: the approximate skeleton)")
    parser.add_argument(
        "--out",
        default=str(DEFAULT_REPORT_PATH),
        help=f"JSON report path (default: {DEFAULT_REPORT_PATH})",
    )


def evaluate_command(options: argparse.Namespace) -> int:
    """Run ``echomask evaluate``: print the report and write it as JSON."""
    result = evaluate_predictions(
        None if options.gt_only else options.pred,
        options.data_root,
        speakers=options.speakers,
        split=options.split,
        fgd_checkpoint=options.fgd_checkpoint,
        protocol=options.protocol,
        smplx_model_dir=options.smplx_model_dir,
    )
    print(format_report(result))
    print(f"metrics written to {write_report(result, options.out)}")
    return 0
