"""Rendering speed, frames per second: the `generate` / test-loop video (`render_motion_video`) and the
TensorBoard clips (`render_skeleton_frames`)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from bench.harness import rates, time_repeats
from echomask.render import render_motion_video, render_skeleton_frames

JOINTS = 55
SMPLX_POSE_DIM = 165
EXPRESSION_DIM = 100


def _random_walk_joints(frames: int, rng: np.random.Generator) -> np.ndarray:
    """(T, 55, 3) joints drifting around a standing height: the cost depends on bones and pixels, not the pose."""
    rest = rng.normal(scale=0.3, size=(1, JOINTS, 3)) + np.array([0.0, 1.0, 0.0])
    return rest + np.cumsum(rng.normal(scale=0.002, size=(frames, JOINTS, 3)), axis=0)


def _random_smplx(frames: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """SMPL-X arrays of a slowly varying random pose walking 1 m along x."""
    poses = np.cumsum(rng.normal(scale=0.01, size=(frames, SMPLX_POSE_DIM)), axis=0).clip(-1.0, 1.0)
    trans = np.zeros((frames, 3))
    trans[:, 0] = np.linspace(0.0, 1.0, frames)
    expressions = rng.normal(scale=0.5, size=(frames, EXPRESSION_DIM))
    return {"poses": poses.astype(np.float32), "trans": trans.astype(np.float32), "expressions": expressions}


def render_rate(device: torch.device, frames: int, panels: int, warmup: int, repeats: int) -> dict:
    """Frames per second of `render_skeleton_frames` (the TensorBoard clips) for `panels` side-by-side
    256-pixel front views."""
    rng = np.random.default_rng(0)
    motions = [_random_walk_joints(frames, rng) for _ in range(panels)]
    seconds = time_repeats(lambda: render_skeleton_frames(motions), device, warmup=warmup, repeats=repeats)
    return {
        "frames": frames,
        "panels": panels,
        "seconds": seconds,
        "frames_per_second": rates(frames, seconds),
        "how": f"render_skeleton_frames: {frames} frames, {panels} panel(s) of 256x256 pixels, PIL",
    }


def video_rate(device: torch.device, frames: int, motions: int, height: int, warmup: int, repeats: int) -> dict:
    """Frames per second of `render_motion_video` (the video of `generate` and of the test loop) writing an
    H.264 mp4 with audio: forward kinematics, front + side views, face and hand panels, encoding."""
    rng = np.random.default_rng(0)
    arrays = {f"motion {index}": _random_smplx(frames, rng) for index in range(motions)}
    audio = rng.normal(scale=0.1, size=int(frames / 30.0 * 16000)).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.mp4"
        seconds = time_repeats(
            lambda: render_motion_video(path, arrays, audio=audio, height=height),
            device,
            warmup=warmup,
            repeats=repeats,
        )
    return {
        "frames": frames,
        "motions": motions,
        "height": height,
        "seconds": seconds,
        "frames_per_second": rates(frames, seconds),
        "how": f"render_motion_video: {frames} frames, {motions} motion(s), {height}-pixel views, mp4 with audio",
    }
