"""What every benchmark shares: repeated timing with warm-up, robust statistics, FLOP counting, peak memory.

A benchmark times a callable `repeats` times after `warmup` untimed calls and reports the median and
the spread (min, max, interquartile range) of the wall times. Work on an accelerator is synchronised
before every clock reading, so a timing covers the device work and not only its launch.
"""
from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

MIB = 2**20


def summarize(seconds: Sequence[float]) -> dict:
    """Median and spread of repeated wall times (seconds): median, min, max, q1, q3, repeats, all."""
    if not seconds:
        raise ValueError("summarize: no timings were taken (repeats must be at least 1)")
    ordered = sorted(seconds)
    if len(ordered) > 1:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        q1 = q3 = ordered[0]
    return {
        "median": statistics.median(ordered),
        "min": ordered[0],
        "max": ordered[-1],
        "q1": q1,
        "q3": q3,
        "repeats": len(ordered),
        "all": list(seconds),
    }


def rates(amount: float, seconds: dict) -> dict:
    """`amount` per second (median, min, max) from the wall-time statistics of :func:`summarize`: the fastest
    repeat gives the highest rate."""
    return {"median": amount / seconds["median"], "min": amount / seconds["max"], "max": amount / seconds["min"]}


def synchronize(device: torch.device) -> None:
    """Wait for queued work on `device` (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(function: Callable[[], object], device: torch.device) -> float:
    """Wall seconds of one call of `function`, device work included."""
    synchronize(device)
    start = time.perf_counter()
    function()
    synchronize(device)
    return time.perf_counter() - start


def time_repeats(function: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> dict:
    """`warmup` untimed calls, then `repeats` timed ones: the `summarize` of the timed ones."""
    if warmup < 0 or repeats < 1:
        raise ValueError(f"time_repeats: need warmup >= 0 and repeats >= 1, got warmup={warmup}, repeats={repeats}")
    for _ in range(warmup):
        function()
    return summarize([time_call(function, device) for _ in range(repeats)])


class _GlobalOnly:
    """Stands in for `FlopCounterMode`'s per-module tracker, so that every FLOP counts under "Global" only.

    The tracker is not needed for totals, adds a hook to every module call, and fails (torch 2.11) when a
    view of a parameter made under `no_grad` is a module's input (e.g. MAM's repeated speech queries)."""

    parents = frozenset({"Global"})

    def __enter__(self) -> "_GlobalOnly":
        return self

    def __exit__(self, *exc_info) -> None:
        return None


def flop_counter() -> FlopCounterMode:
    """A `FlopCounterMode` that counts totals only (matmuls, convolutions, attention; forward and backward;
    elementwise work is not counted)."""
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _GlobalOnly()
    return counter


def count_flops(function: Callable[[], object]) -> int:
    """FLOPs of one call of `function` (see `flop_counter`)."""
    counter = flop_counter()
    with counter:
        function()
    return counter.get_total_flops()


class FlopWindow:
    """A `flop_counter` opened and closed by two separate calls (e.g. two Lightning hooks)."""

    def __init__(self) -> None:
        self._counter: FlopCounterMode | None = None

    def open(self) -> None:
        self._counter = flop_counter()
        self._counter.__enter__()

    def close(self) -> int:
        """Stop counting; returns the FLOPs counted since `open`."""
        if self._counter is None:
            raise RuntimeError("FlopWindow.close() without open()")
        self._counter.__exit__(None, None, None)
        flops, self._counter = self._counter.get_total_flops(), None
        return flops


def current_rss_mib() -> float:
    """Resident memory of this process now (MiB), from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / MIB
    raise RuntimeError("no VmRSS line in /proc/self/status")


def peak_memory(device: torch.device) -> dict:
    """Peak memory so far: this process's resident set, its (reaped) child processes', and on a GPU
    the most memory torch allocated there (MiB)."""
    peaks = {
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MIB,  # Linux: kibibytes
        "peak_children_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / MIB,
    }
    if device.type == "cuda":
        peaks["peak_gpu_allocated_mib"] = torch.cuda.max_memory_allocated(device) / MIB
    return peaks
