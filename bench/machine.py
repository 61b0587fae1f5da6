"""What the machine can do: the fp32 matmul rate (the ceiling for model FLOP utilisation) and a description."""
from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from bench.harness import rates, time_repeats

MATMUL_SIZE = 2048  # square fp32 matrices, as ENVIRONMENT.md's 92 GFLOP/s figure


def matmul_rate(device: torch.device, warmup: int, repeats: int, size: int = MATMUL_SIZE) -> dict:
    """fp32 GFLOP/s of `size` x `size` matrix products (2·size³ FLOPs each), and `describe_machine`."""
    generator = torch.Generator().manual_seed(0)
    left, right = (torch.randn(size, size, generator=generator).to(device) for _ in range(2))
    seconds = time_repeats(lambda: left @ right, device, warmup=warmup, repeats=repeats)
    flops = 2 * size**3
    return {
        "size": size,
        "seconds": seconds,
        "gflops_per_second": rates(flops / 1e9, seconds),
        "how": f"{size}x{size} fp32 matmul, TF32 {'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'}",
        "machine": describe_machine(device),
    }


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def describe_machine(device: torch.device) -> dict:
    """Python, torch, CPU, thread count and the accelerator (if any)."""
    description = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        description["gpu"] = torch.cuda.get_device_name(device)
    return description
