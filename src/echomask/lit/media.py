"""TensorBoard media helpers shared by the LightningModules: rendered clips and figures."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import lightning.pytorch as pl
import numpy as np
import torch

from echomask.render import frame_strip, render_skeleton_frames

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def tensorboard(module: pl.LightningModule):
    """The module's TensorBoard `SummaryWriter`, or None without a TensorBoard logger or off rank 0."""
    if module.trainer is None or module.trainer.global_rank != 0 or module.trainer.sanity_checking:
        return None
    for logger in module.loggers:
        writer = getattr(logger, "experiment", None)
        if hasattr(writer, "add_image"):
            return writer
    return None


def log_skeleton_clip(module: pl.LightningModule, tag: str, joints: list[torch.Tensor], titles: list[str]) -> None:
    """Render (T, 55, 3) joint sequences side by side and log a strip of frames as one image."""
    writer = tensorboard(module)
    if writer is None:
        return
    frames = render_skeleton_frames([j.detach().float().cpu().numpy() for j in joints], titles, panel_size=192)
    writer.add_image(tag, frame_strip(frames), module.global_step, dataformats="HWC")


def log_figure(module: pl.LightningModule, tag: str, draw: Callable[[], Figure]) -> None:
    """Log the matplotlib figure that `draw()` returns as an image; `draw` is only called when there is a writer."""
    writer = tensorboard(module)
    if writer is None:
        return
    writer.add_figure(tag, draw(), module.global_step, close=True)


def attention_mask_figure(
    waveform: np.ndarray,
    scores: np.ndarray,
    mask: np.ndarray,
    sample_rate: int = 16000,
    fps: int = 30,
    title: str = "SQA frame scores",
) -> Figure:
    """The SQA view of one window (SPEC §9): the waveform, the frame scores and the masked frames shaded.

    Args:
        waveform: (N,) audio of the window at `sample_rate`.
        scores: (T,) frame scores (non-negative; SQA's sum to 1 over the window).
        mask: (T,) bool, True where the frame is masked.
        fps: motion frames per second (frame t covers [t / fps, (t + 1) / fps) seconds).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if scores.shape != mask.shape or scores.ndim != 1:
        raise ValueError(f"scores and mask must both be (T,), got {scores.shape} and {mask.shape}")
    figure, (wave_axis, score_axis) = plt.subplots(2, 1, figsize=(8, 4), sharex=True)
    wave_axis.plot(np.arange(len(waveform)) / sample_rate, waveform, color="tab:gray", linewidth=0.5)
    wave_axis.set_ylabel("audio")
    wave_axis.set_title(title, fontsize=9)
    frame_starts = np.arange(len(scores)) / fps
    score_axis.step(frame_starts, scores, where="post", color="tab:blue", label="score")
    score_axis.set_ylabel("score")
    score_axis.set_xlabel("seconds")
    for axis in (wave_axis, score_axis):
        for frame in np.flatnonzero(mask):
            axis.axvspan(frame / fps, (frame + 1) / fps, color="tab:orange", alpha=0.25, linewidth=0)
    score_axis.plot([], [], color="tab:orange", alpha=0.5, linewidth=6, label="masked")
    score_axis.legend(loc="upper right", fontsize=7)
    figure.tight_layout()
    return figure
