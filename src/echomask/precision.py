"""`precision: auto`: the numeric precision that follows the hardware (issue 17).

bf16 mixed precision (fp32 weights and optimizer, matmuls and convolutions in bf16 under autocast) pays where
the hardware multiplies bf16 faster than fp32: CUDA GPUs that support bf16, and CPUs with AMX (``amx_bf16``:
bf16 matmuls about 4x the fp32 rate on the Intel Xeon of issue 17). AVX-512 BF16 alone (``avx512_bf16``, no
AMX) is not enough: on the Intel Xeon development machine (avx512_bf16, AMX not exposed) torch's bf16 matmuls
(oneDNN ``brg_matmul:avx512_core_bf16``) ran at 0.55-0.75x the fp32 rate (1 thread: 2048^3 70.6 vs 125.6
GFLOP/s; 192x768x2048 67.7 vs 105.2), and a CPU without bf16 instructions emulates it. So:

    auto -> "bf16-mixed"  on a bf16 CUDA GPU, or a CPU with amx_bf16
         -> "32-true"     otherwise (the reason names avx512_bf16 when the CPU has it without AMX)

:func:`resolve_precision` is the rule on given facts (tests pass fake flag sets); :func:`machine_precision`
reads them from this machine (``/proc/cpuinfo`` flags, or torch's CPU checks where there is no such file).
Every other precision value is passed through unchanged. The resolution is logged where it is made (the
LightningCLI trainer, HuBERT features, ``echomask generate``).
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

AUTO = "auto"
BF16_MIXED = "bf16-mixed"
FP32 = "32-true"
BF16_CPU_FLAGS = ("amx_bf16",)  # /proc/cpuinfo flags of bf16 matmuls faster than fp32 ones
SLOW_BF16_CPU_FLAG = "avx512_bf16"  # native bf16 dot products, but slower matmuls than fp32 (module docstring)
GPU_ACCELERATORS = ("auto", "gpu", "cuda")  # Trainer accelerators that use a CUDA GPU when there is one
CPUINFO = Path("/proc/cpuinfo")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resolution:
    """A resolved precision (a Lightning precision string, or the value given when it was not ``auto``) and why."""

    precision: str
    reason: str

    @property
    def bf16(self) -> bool:
        """Whether this precision computes in bf16 under autocast."""
        return self.precision == BF16_MIXED

    def describe(self, requested: str | int | None = AUTO) -> str:
        """One log line, e.g. ``precision auto -> bf16-mixed (CPU has amx_bf16)``."""
        return f"precision {requested} -> {self.precision} ({self.reason})"


def resolve_precision(
    requested: str | int | None,
    *,
    cpu_flags: Iterable[str],
    gpu: bool = False,
    gpu_bf16: bool = False,
    gpu_name: str = "GPU",
) -> Resolution:
    """The precision ``requested`` means on a machine with ``cpu_flags`` (and a CUDA GPU when ``gpu``, with bf16
    support when ``gpu_bf16``). Only ``"auto"`` is resolved; any other value comes back as it is."""
    if requested != AUTO:
        return Resolution(str(requested) if requested is not None else FP32, "given")
    if gpu:
        if gpu_bf16:
            return Resolution(BF16_MIXED, f"{gpu_name} supports bf16")
        return Resolution(FP32, f"{gpu_name} has no bf16 support")
    flags = set(cpu_flags)
    present = [flag for flag in BF16_CPU_FLAGS if flag in flags]
    if present:
        return Resolution(BF16_MIXED, f"CPU has {' and '.join(present)}")
    if SLOW_BF16_CPU_FLAG in flags:
        return Resolution(FP32, f"CPU has {SLOW_BF16_CPU_FLAG} but no AMX: its bf16 matmuls are slower than fp32")
    return Resolution(FP32, f"CPU has no bf16 instructions ({', '.join(BF16_CPU_FLAGS)}): bf16 would be emulated")


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The ``flags`` of the first processor in ``/proc/cpuinfo`` text (empty when there is no such line)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """This CPU's flags: from ``/proc/cpuinfo`` (Linux), else the bf16 ones from torch's own CPU checks."""
    if CPUINFO.is_file():
        flags = parse_cpu_flags(CPUINFO.read_text())
        if flags:
            return flags
    import torch

    checks = {"amx_bf16": "_is_amx_tile_supported", SLOW_BF16_CPU_FLAG: "_is_avx512_bf16_supported"}
    return frozenset(flag for flag, check in checks.items() if getattr(torch.cpu, check, bool)())


def machine_precision(requested: str | int | None = AUTO, accelerator: str = "auto") -> Resolution:
    """:func:`resolve_precision` on this machine: the GPU rule when ``accelerator`` may use CUDA and a CUDA GPU is
    there, the CPU rule otherwise."""
    if requested != AUTO:
        return resolve_precision(requested, cpu_flags=())
    import torch

    gpu = str(accelerator) in GPU_ACCELERATORS and torch.cuda.is_available()
    return resolve_precision(
        requested,
        cpu_flags=cpu_flags(),
        gpu=gpu,
        gpu_bf16=gpu and torch.cuda.is_bf16_supported(),
        gpu_name=torch.cuda.get_device_name() if gpu else "GPU",
    )


def autocast(device, precision: str | Resolution):
    """A bf16 autocast context on ``device`` for a bf16 precision, else a context that does nothing."""
    import torch

    bf16 = precision.bf16 if isinstance(precision, Resolution) else precision == BF16_MIXED
    if not bf16:
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
