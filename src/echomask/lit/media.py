"""TensorBoard media helpers shared by the LightningModules: rendered clips and figures."""
from __future__ import annotations

import lightning.pytorch as pl
import torch

from echomask.render import frame_strip, render_skeleton_frames


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
