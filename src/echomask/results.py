"""What ``notebooks/inspect_results.ipynb`` shows, as plain functions (SPEC §9).

Artefact layout
---------------
A *results root* (default ``outputs/``; the environment variable ``ECHOMASK_RESULTS`` overrides it) holds run
folders at any depth. A run folder is any folder holding a ``metrics.json`` or a generated motion file; in it:

``metrics.json``
    the report of a :class:`echomask.scoring.MotionScorer`, whichever path wrote it (``echomask evaluate``, the
    generator's ``echomask test``, the masking ablation): ``name``, ``metrics`` (raw), ``paper_scale``,
    ``protocol``, ``fgd_checkpoint``, ``kinematics``, ``per_sequence`` ({id: {frames, bc, l1div, face_mse, ...}}),
    ``sections`` (extra statistics), ... (the layout is described in :mod:`echomask.scoring`).
``<id>.npz``
    generated motion of sequence ``<id>`` in the BEAT2/SMPL-X layout (:func:`echomask.inference.write_smplx_npz`).
``<id>_sqa.npz`` (optional)
    the SQA view of that sequence (:func:`write_sqa`): ``scores`` (T,) float32 frame scores at 30 fps, ``mask``
    (T,) bool, the frames the SQA mask selects (may be absent), ``audio`` (N,) float32 waveform, ``sample_rate``
    int (16 kHz).
``<id>.mp4`` (optional)
    a rendered video of ``<id>.npz`` (:func:`echomask.render.write_video`).

Every function that needs an artefact raises :class:`MissingArtefact` (a ``FileNotFoundError``) with a message
saying what is missing and what writes it; :func:`report_missing` turns that into a printed line, so each section
of the notebook degrades to a message. Malformed artefacts raise ``ValueError`` naming the file.
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from echomask.data.beat2 import MOTION_FPS, read_motion
from echomask.lit.media import attention_mask_figure
from echomask.metrics.display import PAPER_HEADER, PAPER_SCALE, aligned_columns, format_table, to_paper_scale
from echomask.metrics.motion_statistics import drift_table, statistics_table
from echomask.motion.kinematics import Kinematics, build_kinematics
from echomask.render import render_skeleton_frames
from echomask.scoring import SECTIONS_KEY, MotionStatisticsSection, check_report, table_row

RESULTS_VARIABLE = "ECHOMASK_RESULTS"  # environment variable naming the results root
DEFAULT_RESULTS_ROOT = Path("outputs")  # SPEC §3: generated npz/videos and reports go under outputs/
METRICS_FILE = "metrics.json"
SQA_SUFFIX = "_sqa"  # <id>_sqa.npz
VIDEO_SUFFIX = ".mp4"


class MissingArtefact(FileNotFoundError):
    """An artefact a notebook section needs is not there; the message says which and what writes it."""


@contextmanager
def report_missing() -> Iterator[None]:
    """Run a notebook section; a :class:`MissingArtefact` is printed instead of raised (other errors propagate)."""
    try:
        yield
    except MissingArtefact as missing:
        print(f"skipped: {missing}")


# ------------------------------------------------------------------------------------------------ finding runs


def results_root(default: str | Path = DEFAULT_RESULTS_ROOT) -> Path:
    """The results root: ``$ECHOMASK_RESULTS`` when set, else ``default``."""
    return Path(os.environ.get(RESULTS_VARIABLE) or default)


def _is_motion_file(path: Path) -> bool:
    """A generated ``<id>.npz`` (not an ``<id>_sqa.npz``)."""
    return path.suffix == ".npz" and not path.stem.endswith(SQA_SUFFIX)


def _is_run_file(path: Path) -> bool:
    return path.is_file() and (path.name == METRICS_FILE or _is_motion_file(path))


def find_runs(root: str | Path) -> list[Path]:
    """The run folders under ``root`` (``root`` included), sorted; ``[]`` when ``root`` does not exist."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted({path.parent for path in root.rglob("*") if _is_run_file(path)})


def describe_runs(root: str | Path, runs: Sequence[Path]) -> str:
    """One line naming the runs found under ``root`` (or saying that there are none and what a run is)."""
    root = Path(root).resolve()
    if not runs:
        return (
            f"no runs under {root}: a run folder holds {METRICS_FILE} (`echomask evaluate`) or generated <id>.npz "
            f"files (`echomask generate`); set {RESULTS_VARIABLE} to another results root"
        )
    return f"{len(runs)} run(s) under {root}: " + ", ".join(run.name for run in runs)


def pick_run(runs: Sequence[Path], name: str | None = None) -> Path:
    """The run called ``name`` (its folder name or a trailing part of its path), or the first run when None."""
    if not runs:
        raise MissingArtefact("no runs found (see the first cell's output)")
    if name is None:
        return runs[0]
    matches = [run for run in runs if run.name == name or run.as_posix().endswith(f"/{name.strip('/')}")]
    if len(matches) != 1:
        found = "none" if not matches else "several"
        raise ValueError(f"run {name!r}: {found} of the runs match; runs: {[str(run) for run in runs]}")
    return matches[0]


def metric_runs(runs: Sequence[Path]) -> list[Path]:
    """The runs that hold a ``metrics.json`` (what the per-sequence section shows)."""
    return [run for run in runs if (Path(run) / METRICS_FILE).is_file()]


def generated_runs(runs: Sequence[Path]) -> list[Path]:
    """The runs that hold generated ``<id>.npz`` or ``<id>_sqa.npz`` files (what the SQA and clip sections show)."""
    return [run for run in runs if sequence_ids(run)]


def sequence_ids(run: str | Path) -> list[str]:
    """Sorted ids of the sequences with a generated ``<id>.npz`` or an ``<id>_sqa.npz`` in ``run``."""
    ids = set()
    for path in Path(run).glob("*.npz"):
        ids.add(path.stem if _is_motion_file(path) else path.stem.removesuffix(SQA_SUFFIX))
    return sorted(ids)


def pick_sequence(run: str | Path, seq_id: str | None = None) -> str:
    """``seq_id``, or when None the first of :func:`sequence_ids`."""
    if seq_id is not None:
        return seq_id
    ids = sequence_ids(run)
    if not ids:
        raise MissingArtefact(f"{run} holds no generated <id>.npz or <id>{SQA_SUFFIX}.npz files")
    return ids[0]


def motion_path(run: str | Path, seq_id: str) -> Path:
    """The generated motion ``<run>/<id>.npz``."""
    path = Path(run) / f"{seq_id}.npz"
    if not path.is_file():
        raise MissingArtefact(f"no generated motion {path} (written by `echomask generate` and the generator's test)")
    return path


def sqa_path(run: str | Path, seq_id: str) -> Path:
    """The SQA scores ``<run>/<id>_sqa.npz``."""
    path = Path(run) / f"{seq_id}{SQA_SUFFIX}.npz"
    if not path.is_file():
        raise MissingArtefact(f"no SQA scores {path} (written by `echomask generate` and the generator's test)")
    return path


def video_path(run: str | Path, seq_id: str) -> Path:
    """The rendered video ``<run>/<id>.mp4``."""
    path = Path(run) / f"{seq_id}{VIDEO_SUFFIX}"
    if not path.is_file():
        raise MissingArtefact(f"no video {path} (written by `echomask generate` unless --no-video)")
    return path


# ------------------------------------------------------------------------------------------------------ metrics


def load_metrics(run: str | Path) -> dict:
    """The evaluation result ``<run>/metrics.json`` (module docstring)."""
    path = Path(run) / METRICS_FILE
    if not path.is_file():
        raise MissingArtefact(f"no {path} (written by `echomask evaluate`, `echomask test` and the ablation)")
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    return check_report(result, str(path))


def metric_table(runs: Sequence[Path]) -> str:
    """The paper-scale table (:func:`~echomask.metrics.format_table`) of every run with a ``metrics.json``, one row
    per run named by its folder; how each was measured is listed under it, then the runs without metrics."""
    rows, without = [], []
    for run in runs:
        if not (Path(run) / METRICS_FILE).is_file():
            without.append(Path(run).name)
            continue
        result = load_metrics(run)
        provenance = {"protocol": result["protocol"], "fgd_encoder": result["fgd_checkpoint"]}
        rows.append({**table_row(result), "name": Path(run).name, **provenance})
    if not rows:
        raise MissingArtefact(f"none of the {len(runs)} run(s) has a {METRICS_FILE} (written by `echomask evaluate`)")
    lines = [format_table(rows)]
    if without:
        lines.append(f"runs without {METRICS_FILE}: " + ", ".join(without))
    return "\n".join(lines)


def _metric_keys(per_sequence: Mapping[str, Mapping[str, float]]) -> list[str]:
    """The metrics of :data:`PAPER_SCALE` that any sequence reports, in that order."""
    return [key for key in PAPER_SCALE if any(key in values for values in per_sequence.values())]


def per_sequence_table(result: Mapping, digits: int = 3) -> str:
    """One line per sequence of an evaluation result: its frame count and its metrics at paper scale."""
    per_sequence = result["per_sequence"]
    if not per_sequence:
        raise MissingArtefact(f"the result {result['name']!r} has no per-sequence metrics")
    keys = _metric_keys(per_sequence)
    header = ["sequence", "frames", *(PAPER_HEADER[key] for key in keys)]
    body = []
    for seq_id, values in per_sequence.items():
        scaled = to_paper_scale(values)
        cells = [f"{scaled[key]:.{digits}f}" if key in scaled else "–" for key in keys]
        body.append([seq_id, str(values["frames"]), *cells])
    return aligned_columns(header, body)


def motion_statistics_summary(result: Mapping) -> str:
    """Does the generated motion move like the ground truth? The run's pooled motion statistics (GT, generated,
    ratio; with the distinctness of the outputs) and each sequence's horizontal drift against its target."""
    name = MotionStatisticsSection.name
    section = result.get(SECTIONS_KEY, {}).get(name)
    if section is None:
        raise MissingArtefact(f"the result {result['name']!r} has no {name} (written before they were measured)")
    per_sequence = {seq_id: values[name] for seq_id, values in result["per_sequence"].items()}
    return "\n".join([statistics_table(section), "", drift_table(per_sequence)])


def plot_per_sequence(result: Mapping, key: str = "bc") -> Figure:
    """A bar per sequence of one metric at paper scale, with the run's overall value as a line."""
    per_sequence = result["per_sequence"]
    available = _metric_keys(per_sequence)
    if key not in available:
        raise ValueError(f"per-sequence metric {key!r} not in the result {result['name']!r}; available: {available}")
    ids = [seq_id for seq_id, values in per_sequence.items() if key in values]
    heights = [to_paper_scale(per_sequence[seq_id])[key] for seq_id in ids]
    figure = Figure(figsize=(max(4.0, 0.5 * len(ids) + 2.0), 3.0))
    axis = figure.subplots()
    axis.bar(range(len(ids)), heights, color="tab:blue")
    axis.set_xticks(range(len(ids)), ids, rotation=45, ha="right", fontsize=7)
    if key in result["paper_scale"]:
        axis.axhline(result["paper_scale"][key], color="tab:red", linewidth=1, label="whole run")
        axis.legend(fontsize=7)
    axis.set_ylabel(PAPER_HEADER[key])
    axis.set_title(f"{Path(result['name']).name}: {PAPER_HEADER[key]} per sequence", fontsize=9)
    figure.tight_layout()
    return figure


# -------------------------------------------------------------------------------------------------- SQA scores


def write_sqa(
    path: str | Path,
    scores: np.ndarray,
    audio: np.ndarray,
    sample_rate: int,
    mask: np.ndarray | None = None,
) -> Path:
    """Write an ``<id>_sqa.npz`` (module docstring): ``scores`` (T,), ``audio`` (N,), the sample rate and, when
    given, the ``mask`` (T,) bool. Parent folders are created; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        "scores": np.asarray(scores, dtype=np.float32),
        "audio": np.asarray(audio, dtype=np.float32),
        "sample_rate": np.int64(sample_rate),
    }
    if mask is not None:
        arrays["mask"] = np.asarray(mask, dtype=bool)
    np.savez(path, **arrays)
    return path


def load_sqa(path: str | Path) -> dict[str, np.ndarray | int | None]:
    """A checked ``<id>_sqa.npz``: ``scores`` (T,) float, ``mask`` (T,) bool or None, ``audio`` (N,) float,
    ``sample_rate`` int."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a readable .npz archive")
    with np.load(path, allow_pickle=False) as archive:
        missing = [key for key in ("scores", "audio", "sample_rate") if key not in archive.files]
        if missing:
            raise ValueError(f"{path}: missing {missing} (keys found: {archive.files})")
        sqa = {
            "scores": archive["scores"],
            "mask": archive["mask"] if "mask" in archive.files else None,
            "audio": archive["audio"],
            "sample_rate": archive["sample_rate"],
        }
    if sqa["scores"].ndim != 1 or sqa["scores"].dtype.kind != "f":
        raise ValueError(f"{path}: scores must be (T,) floats, got {sqa['scores'].shape} {sqa['scores'].dtype}")
    if sqa["mask"] is not None and (sqa["mask"].shape != sqa["scores"].shape or sqa["mask"].dtype != bool):
        raise ValueError(f"{path}: mask must be (T,) bool like scores, got {sqa['mask'].shape} {sqa['mask'].dtype}")
    if sqa["audio"].ndim != 1:
        raise ValueError(f"{path}: audio must be a (N,) waveform, got shape {sqa['audio'].shape}")
    if sqa["sample_rate"].size != 1 or sqa["sample_rate"].dtype.kind not in "iu":
        raise ValueError(f"{path}: sample_rate must be one integer, got {sqa['sample_rate']!r}")
    sqa["sample_rate"] = int(sqa["sample_rate"])
    return sqa


def plot_sqa(path: str | Path, fps: int = MOTION_FPS) -> Figure:
    """The SQA view of one sequence (SPEC §9): the waveform, the frame scores and the masked frames shaded.

    Args:
        path: an ``<id>_sqa.npz`` (module docstring); without a ``mask`` nothing is shaded.
        fps: frames per second of the scores (BEAT2: 30).
    """
    sqa = load_sqa(path)
    mask = np.zeros(sqa["scores"].shape, dtype=bool) if sqa["mask"] is None else sqa["mask"]
    title = Path(path).name if sqa["mask"] is not None else f"{Path(path).name} (no mask saved)"
    return attention_mask_figure(
        sqa["audio"],
        sqa["scores"],
        mask,
        sample_rate=sqa["sample_rate"],
        fps=fps,
        title=title,
    )


# ------------------------------------------------------------------------------------------------ rendered clip


def clip_strip(
    path: str | Path,
    frames: int = 6,
    panel_size: int = 192,
    kinematics: Kinematics | None = None,
) -> np.ndarray:
    """``frames`` evenly spaced frames of a BEAT2/SMPL-X npz drawn side by side: ``(panel_size, frames · panel_size,
    3)`` uint8, each panel titled with its time.

    Args:
        path: the motion file (read with :func:`~echomask.data.beat2.read_motion`).
        kinematics: joints from poses; default the approximate skeleton (``build_kinematics()``).
    """
    if frames < 1:
        raise ValueError(f"clip_strip: frames must be at least 1, got {frames}")
    motion = read_motion(path)
    picks = np.linspace(0, len(motion["poses"]) - 1, num=min(frames, len(motion["poses"]))).round().astype(int)
    kinematics = build_kinematics() if kinematics is None else kinematics
    with torch.no_grad():
        joints = kinematics(torch.from_numpy(motion["poses"][picks]), torch.from_numpy(motion["trans"][picks]))
    panels = [joints[index : index + 1].numpy() for index in range(len(picks))]
    titles = [f"{frame / motion['fps']:.1f} s" for frame in picks]
    return render_skeleton_frames(panels, titles, panel_size=panel_size)[0]


# ---------------------------------------------------------------------------------------------------- display


def video_src(path: str | Path) -> str:
    """A video's path relative to the working directory: the notebook's folder, from which Jupyter serves files
    to the browser (``IPython.display.Video(video_src(path), embed=False)``)."""
    return os.path.relpath(path, Path.cwd())


def png_bytes(image: np.ndarray) -> bytes:
    """An ``(H, W, 3)`` uint8 image as PNG bytes (for ``IPython.display.Image``)."""
    from matplotlib.image import imsave

    buffer = io.BytesIO()
    imsave(buffer, image, format="png")
    return buffer.getvalue()


def figure_png(figure: Figure) -> bytes:
    """A figure as PNG bytes; the figure is closed (works whichever matplotlib backend is active)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()
