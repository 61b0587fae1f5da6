"""Every metric gives the same value with two DDP processes (gloo, CPU) as with one (SPEC §7, §8).

One spawn runs all metrics: each rank updates its share of the same synthetic data (uneven shares, so the
number of update calls differs between ranks) and rank 0 saves what ``compute()`` returns after the sync.
"""
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from echomask.metrics import (
    BeatConsistency,
    FaceLVDPaper,
    FaceVelocityError,
    FaceVertexMSE,
    FrechetGestureDistance,
    L1Diversity,
)

WORLD_SIZE = 2
FPS = 30
SAMPLE_RATE = 16000


def _synthetic_joints(rng: np.random.Generator, num_frames: int) -> np.ndarray:
    """(T, 55, 3) smooth joint trajectories: a few sinusoids per coordinate with a slow envelope."""
    t = np.arange(num_frames)[:, None, None] / FPS
    frequencies = rng.uniform(0.3, 1.5, size=(3, 55, 3))
    phases = rng.uniform(0, 2 * np.pi, size=(3, 55, 3))
    waves = sum(np.sin(2 * np.pi * frequencies[k] * t + phases[k]) / frequencies[k] for k in range(3))
    envelope = 0.2 + np.sin(2 * np.pi * 0.1 * t + rng.uniform(0, 2 * np.pi, size=(1, 55, 1))) ** 2
    return (0.05 * envelope * waves + rng.normal(0, 1e-4, size=(num_frames, 55, 3))).astype(np.float32)


def _synthetic_speech(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """(N,) 16 kHz clicks: 20 ms decaying noise bursts every 0.3-0.6 s over faint noise."""
    audio = rng.normal(0, 1e-3, size=int(seconds * SAMPLE_RATE))
    burst = int(0.02 * SAMPLE_RATE)
    start = int(0.1 * SAMPLE_RATE)
    while start + burst < len(audio):
        audio[start : start + burst] += rng.normal(0, 0.5, burst) * np.exp(-np.arange(burst) / (0.004 * SAMPLE_RATE))
        start += int(rng.uniform(0.3, 0.6) * SAMPLE_RATE)
    return audio.astype(np.float32)


def _dataset() -> dict:
    rng = np.random.default_rng(7)
    joints = [_synthetic_joints(rng, num_frames) for num_frames in (190, 230, 171)]
    speeds = np.linalg.norm(np.diff(joints[0], axis=0), axis=-1) * FPS
    return {
        "fgd": [
            (torch.from_numpy(rng.normal(i % 2, 1.0, size=(n, 16))), i % 2 == 0)
            for i, n in enumerate((30, 25, 20, 17, 9))
        ],
        "joints": [torch.from_numpy(positions) for positions in joints],
        "audio": [_synthetic_speech(rng, len(positions) / FPS + 1.0) for positions in joints],
        "mean_speed": speeds.mean(axis=0),
        "face": [
            (torch.from_numpy(rng.normal(size=(n, 60))), torch.from_numpy(rng.normal(size=(n, 60))))
            for n in (12, 7, 20, 5)
        ],
    }


def _metric_values(rank: int, world_size: int) -> dict[str, float]:
    """Every metric updated with items ``rank, rank + world_size, ...`` of the data set, then computed."""
    data = _dataset()

    def mine(items: list) -> list:
        return items[rank::world_size]

    fgd = {protocol: FrechetGestureDistance(feature_dim=16, protocol=protocol) for protocol in ("paper", "clean")}
    for features, real in mine(data["fgd"]):
        for metric in fgd.values():
            metric.update(features, real=real)
    bc = {
        protocol: BeatConsistency(joint_mean_speed=data["mean_speed"], protocol=protocol)
        for protocol in ("paper", "clean")
    }
    for positions, audio in mine(list(zip(data["joints"], data["audio"]))):
        for metric in bc.values():
            metric.update(positions, audio)
    diversity = L1Diversity()
    diversity.update(mine(data["joints"]))
    face = {
        "face_mse_paper": FaceVertexMSE(protocol="paper"),
        "face_mse_clean": FaceVertexMSE(protocol="clean"),
        "face_lvd_paper": FaceLVDPaper(),
        "face_velocity_error": FaceVelocityError(),
    }
    for rec, tar in mine(data["face"]):
        for metric in face.values():
            metric.update(rec, tar)
    metrics = {
        **{f"fgd_{protocol}": metric for protocol, metric in fgd.items()},
        **{f"bc_{protocol}": metric for protocol, metric in bc.items()},
        "l1div": diversity,
        **face,
    }
    return {name: metric.compute().item() for name, metric in metrics.items()}


def _worker(rank: int, world_size: int, port: int, out_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        values = _metric_values(rank, world_size)
        if rank == 0:
            torch.save(values, out_file)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.ddp
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_processes_agree_with_one(tmp_path: Path):
    out_file = tmp_path / "ddp_values.pt"
    mp.spawn(_worker, args=(WORLD_SIZE, _free_port(), str(out_file)), nprocs=WORLD_SIZE, join=True)
    distributed = torch.load(out_file)
    single = _metric_values(rank=0, world_size=1)
    assert distributed.keys() == single.keys()
    for name, value in single.items():
        assert distributed[name] == pytest.approx(value, rel=1e-9), name
