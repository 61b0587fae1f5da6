"""Test-split metrics of any model's generated motion against BEAT2-format ground truth (SPEC §8, `echomask evaluate`).

The predictions are a folder of BEAT2/SMPL-X motion files, one ``<id>.npz`` per sequence of the evaluated split
(``poses`` (T, 165), ``trans`` (T, 3), ``expressions`` (T, 100), ``betas`` (300,), ``mocap_frame_rate`` 30), as
EchoMask or any other model writes them. Each prediction and its ground truth are cropped to their common length.

What is measured (raw values; :mod:`echomask.metrics.display` gives the paper scales):

* FGD on the 55 joints in 6D through the FGD feature extractor: ``fgd_checkpoint`` if given, else the corpus'
  ``weights/AESKConv_240_100.bin``, else the evaluator trained by ``make train-evaluator``
  (:data:`~echomask.scoring.DEFAULT_EVALUATOR_CHECKPOINT`). The checkpoint used is part of the result.
* BC on the joints of the kinematics (SPEC §4.3) with the ground-truth audio; per-joint mean speeds from
  ``joint_mean_speed`` if given, else the corpus' ``weights/mean_vel_smplxflame_30.npy``, else the train split.
* L1 diversity on the same joints.
* Face MSE and the two LVDs on SMPL-X face vertices (body zeroed, jaw + expressions) with an SMPL-X model,
  else on the jaw axis-angle + 100 expression parameters (labelled so).

``pred_dir=None`` evaluates the ground truth itself (the "GT" row of a paper table: FGD(GT, GT) = 0, BC and
diversity of the ground truth, no face errors).

The sequences are scored by :class:`echomask.scoring.MotionScorer`, as the generator's test loop scores them; the
result is its report (``metrics.json``), which `echomask.results` and the notebook read.
"""
from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
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
from echomask.metrics.beat_consistency import PROTOCOLS
from echomask.motion.kinematics import Kinematics, build_kinematics
from echomask.scoring import (
    AESKCONV_WEIGHTS,
    DEFAULT_EVALUATOR_CHECKPOINT,
    SMPLX_KEYS,
    MotionScorer,
    Provenance,
    SequenceStatistic,
    find_fgd_checkpoint,
    format_report,
    resolve_joint_mean_speed,
    write_report,
)

log = logging.getLogger(__name__)

DEFAULT_DATA_ROOT = Path("data/synthetic")
DEFAULT_REPORT_PATH = Path("outputs/evaluate/metrics.json")
GROUND_TRUTH_NAME = "ground truth"
CROPPING_NOTE = "each prediction and its ground truth are cropped to their common length"


# ------------------------------------------------------------------------------------------------ statistics


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


# ------------------------------------------------------------------------------------------------ sequences


def read_prediction(pred_dir: Path, seq_id: str) -> dict[str, np.ndarray | int]:
    """The checked prediction ``<pred_dir>/<id>.npz`` of one sequence (see :func:`read_motion`)."""
    path = pred_dir / f"{seq_id}.npz"
    if not path.is_file():
        raise BEAT2FormatError(path, f"prediction missing for sequence {seq_id} (one <id>.npz per sequence expected)")
    return read_motion(path)


def _cropped_tensors(motion: dict[str, np.ndarray | int], frames: int) -> dict[str, Tensor]:
    """``poses``, ``trans`` and ``expressions`` of a read motion as tensors of their first ``frames`` frames."""
    return {key: torch.from_numpy(motion[key][:frames]) for key in SMPLX_KEYS}


# ----------------------------------------------------------------------------------------------- evaluation


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
    statistics: Iterable[SequenceStatistic] = (),
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
            :func:`~echomask.scoring.find_fgd_checkpoint`.
        protocol: ``"paper"`` or ``"clean"`` (SPEC §8.1), for FGD, BC and face MSE.
        smplx_model_dir: SMPL-X model folder; None uses the approximate skeleton (numbers labelled so).
        joint_mean_speed: BC's ``(55,)`` per-joint mean speeds or a ``.npy`` file; None: the corpus' shipped file,
            else the train split (:func:`~echomask.scoring.resolve_joint_mean_speed`).
        statistics: extra per-sequence statistics (report sections, :class:`~echomask.scoring.SequenceStatistic`).
        progress: show a progress bar over the sequences.

    Returns:
        The report of :class:`~echomask.scoring.MotionScorer` (its layout is described there); per sequence:
        ``frames`` (scored), ``gt_frames``, ``pred_frames``, BC, L1div and (with predictions) face MSE.
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
    speeds, speed_source = resolve_joint_mean_speed(
        corpus_root, lambda: train_split_joint_mean_speed(corpus_root, kinematics, speakers), joint_mean_speed
    )
    scorer = MotionScorer(
        kinematics,
        speeds,
        speed_source,
        fgd_checkpoint=checkpoint,
        protocol=protocol,
        face=pred_dir is not None,
        statistics=list(statistics),
    )
    log.info("evaluating %d %s sequences; FGD: %s; kinematics: %s", len(corpus), split, checkpoint, kinematics.label)

    for sequence in tqdm(corpus, desc=f"evaluating {split}", disable=not progress):
        gt_motion = read_motion(sequence.motion_path)
        generated_motion = gt_motion if pred_dir is None else read_prediction(pred_dir, sequence.id)
        frames = min(len(gt_motion["poses"]), len(generated_motion["poses"]))
        source = sequence.motion_path if pred_dir is None else pred_dir / f"{sequence.id}.npz"
        try:
            scorer.add(
                sequence.id,
                _cropped_tensors(gt_motion, frames),
                _cropped_tensors(generated_motion, frames),
                read_audio_checked(sequence.audio_path),
                torch.from_numpy(gt_motion["betas"]),
                gt_frames=len(gt_motion["poses"]),
                pred_frames=len(generated_motion["poses"]),
            )
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from error

    provenance = Provenance(
        data_root=str(corpus_root),
        split=split,
        speakers=speakers,
        predictions=None if pred_dir is None else str(pred_dir),
        cropping=CROPPING_NOTE,
    )
    name = GROUND_TRUTH_NAME if pred_dir is None else str(pred_dir)
    return scorer.report(name, provenance, seconds=time.perf_counter() - started)


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
