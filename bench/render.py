"""Skeleton rendering speed (the `generate` video and the TensorBoard clips), frames per second."""
from __future__ import annotations

import numpy as np
import torch

from bench.harness import rates, time_repeats
from echomask.render import render_skeleton_frames

JOINTS = 55


def render_rate(device: torch.device, frames: int, panels: int, warmup: int, repeats: int) -> dict:
    """Frames per second of `render_skeleton_frames` for `panels` side-by-side 256-pixel panels of a random
    walk of 55 joints (the cost depends on the number of bones and pixels, not on the pose)."""
    rng = np.random.default_rng(0)
    rest = rng.normal(scale=0.3, size=(1, JOINTS, 3)) + np.array([0.0, 1.0, 0.0])
    motions = [rest + np.cumsum(rng.normal(scale=0.002, size=(frames, JOINTS, 3)), axis=0) for _ in range(panels)]
    seconds = time_repeats(lambda: render_skeleton_frames(motions), device, warmup=warmup, repeats=repeats)
    return {
        "frames": frames,
        "panels": panels,
        "seconds": seconds,
        "frames_per_second": rates(frames, seconds),
        "how": f"render_skeleton_frames: {frames} frames, {panels} panel(s) of 256x256 pixels, matplotlib Agg",
    }
