"""Skeleton renders: frames, strips for TensorBoard, and mp4 files with the audio muxed in.

A front view (x right, y up) of the 55 joints drawn as bones to their parents, one panel per
motion (e.g. GT next to generated). Rendering is matplotlib's Agg canvas; videos are written
with the ffmpeg binary that `imageio-ffmpeg` ships, so nothing needs installing by hand.
"""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np

from echomask.motion.skeleton import SMPLX_PARENTS


def _bones() -> list[tuple[int, int]]:
    return [(joint, parent) for joint, parent in enumerate(SMPLX_PARENTS) if parent >= 0]


def render_skeleton_frames(
    motions: list[np.ndarray],
    titles: list[str] | None = None,
    panel_size: int = 256,
    every: int = 1,
) -> np.ndarray:
    """Draw each frame of one or more joint sequences side by side.

    Args:
        motions: joint positions, each (T, 55, 3) in metres (y up); all must share T.
        titles: one title per panel.
        panel_size: pixels per (square) panel.
        every: draw every `every`-th frame.
    Returns:
        (T', H, W, 3) uint8 frames, T' = ceil(T / every).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    lengths = {len(m) for m in motions}
    if len(lengths) != 1:
        raise ValueError(f"all motions must have the same number of frames, got {sorted(lengths)}")
    if any(m.ndim != 3 or m.shape[1:] != (55, 3) for m in motions):
        raise ValueError(f"motions must be (T, 55, 3) joint positions, got {[m.shape for m in motions]}")
    titles = titles or [""] * len(motions)
    dpi = 100
    figure, axes = plt.subplots(
        1, len(motions), figsize=(panel_size * len(motions) / dpi, panel_size / dpi), dpi=dpi, squeeze=False
    )
    bones = np.array(_bones())
    collections = []
    for axis, motion, title in zip(axes[0], motions, titles):
        centre = motion[:, 0, [0, 1]].mean(axis=0)
        axis.set_xlim(centre[0] - 1.0, centre[0] + 1.0)
        axis.set_ylim(motion[..., 1].min() - 0.1, motion[..., 1].min() + 1.9)
        axis.set_aspect("equal")
        axis.axis("off")
        axis.text(0.5, 0.98, title, transform=axis.transAxes, ha="center", va="top", fontsize=8)
        # one collection of all bones per panel: a single artist to update and draw per frame
        collections.append(axis.add_collection(LineCollection([], colors="tab:blue", linewidths=1.5)))
    figure.tight_layout(pad=0.2)
    frames = []
    for t in range(0, next(iter(lengths)), every):
        for collection, motion in zip(collections, motions):
            collection.set_segments(motion[t][bones][..., :2])  # (bones, 2 ends, x/y)
        figure.canvas.draw()
        frames.append(np.asarray(figure.canvas.buffer_rgba())[..., :3].copy())
    plt.close(figure)
    return np.stack(frames)


def frame_strip(frames: np.ndarray, count: int = 6) -> np.ndarray:
    """`count` evenly spaced frames of (T, H, W, 3) placed one above the other: (count·H, W, 3).

    A still summary of a clip for TensorBoard's image tab.
    """
    picks = np.linspace(0, len(frames) - 1, num=min(count, len(frames))).round().astype(int)
    return np.concatenate([frames[i] for i in picks], axis=0)


def write_video(
    frames: np.ndarray,
    path: str | Path,
    fps: float = 30.0,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
) -> Path:
    """Write (T, H, W, 3) uint8 frames to an H.264 mp4, muxing in mono float audio when given."""
    import imageio_ffmpeg
    import soundfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames.shape[1:3]
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    with tempfile.TemporaryDirectory() as scratch:
        command = [ffmpeg, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24"]
        command += ["-s", f"{width}x{height}", "-r", str(fps), "-i", "-"]
        if audio is not None:
            wav = Path(scratch) / "audio.wav"
            soundfile.write(wav, np.asarray(audio, dtype=np.float32), sample_rate, subtype="PCM_16")
            command += ["-i", str(wav), "-c:a", "aac", "-shortest"]
        # even sizes are required by yuv420p
        command += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)]
        result = subprocess.run(command, input=np.ascontiguousarray(frames).tobytes(), capture_output=True)
    if result.returncode != 0:
        raise RuntimeError(f"ffmpeg could not write {path}: {result.stderr.decode(errors='replace').strip()}")
    return path
