"""What the machine can do: the fp32 and bf16 matmul rates (the ceilings for model FLOP utilisation) and a
description with the CPU's bf16-relevant flags and what `precision: auto` resolves to."""
from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from bench.harness import rates, time_repeats
from echomask.precision import BF16_CPU_FLAGS, SLOW_BF16_CPU_FLAG, cpu_flags, machine_precision

MATMUL_SIZE = 2048  # square matrices, as ENVIRONMENT.md's 92 GFLOP/s figure
REPORTED_FLAGS = (*BF16_CPU_FLAGS, "amx_tile", SLOW_BF16_CPU_FLAG, "avx512f", "avx2")  # what the report lists


def matmul_rate(device: torch.device, warmup: int, repeats: int, size: int = MATMUL_SIZE) -> dict:
    """fp32 and bf16 GFLOP/s of `size` x `size` matrix products (2·size³ FLOPs each), and `describe_machine`."""
    generator = torch.Generator().manual_seed(0)
    left, right = (torch.randn(size, size, generator=generator).to(device) for _ in range(2))
    seconds = time_repeats(lambda: left @ right, device, warmup=warmup, repeats=repeats)
    left, right = left.bfloat16(), right.bfloat16()
    bf16_seconds = time_repeats(lambda: left @ right, device, warmup=warmup, repeats=repeats)
    flops = 2 * size**3
    return {
        "size": size,
        "seconds": seconds,
        "gflops_per_second": rates(flops / 1e9, seconds),
        "bf16_seconds": bf16_seconds,
        "bf16_gflops_per_second": rates(flops / 1e9, bf16_seconds),
        "how": f"{size}x{size} fp32 and bf16 matmuls, TF32 {'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'}",
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
    """Python, torch, CPU, its bf16-relevant flags, thread count, the accelerator (if any) and what
    `precision: auto` resolves to there."""
    auto = machine_precision("auto", device.type)
    description = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_flags": [flag for flag in REPORTED_FLAGS if flag in cpu_flags()],
        "auto_precision": auto.precision,
        "auto_precision_reason": auto.reason,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        description["gpu"] = torch.cuda.get_device_name(device)
    return description
