"""What runs inside each benchmark's own process: one case, its peak memory, a message back to the runner."""
from __future__ import annotations

import inspect
import logging
import multiprocessing
import os
import sys
import time
import traceback
from pathlib import Path

import torch

from bench.cases import CASES
from bench.harness import current_rss_mib, peak_memory
from bench.workspace import prepare_workspace


def _redirect_output(log_path: Path) -> None:
    """Send this process's stdout and stderr (progress bars, warnings, library logs) to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    with open(log_path, "w") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    logging.getLogger("echomask").setLevel(logging.ERROR)  # e.g. the tiny-random HuBERT notice, once per process


def _configure(accelerator: str, threads: int | None) -> torch.device:
    # A process forked by the forkserver inherits its start method; DataLoader workers would then start
    # through a fresh forkserver (seconds of imports). Restore the platform default (listed first).
    multiprocessing.set_start_method(multiprocessing.get_all_start_methods()[0], force=True)
    if threads is not None:
        torch.set_num_threads(threads)
    device = torch.device(accelerator)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(0)
    return device


def run_case(
    name: str,
    settings: dict,
    accelerator: str,
    threads: int | None,
    workspace,
    log_path: Path,
    connection,
) -> None:
    """Run `CASES[name]` with `settings` (its output goes to `log_path`); send {"status": "ok", "result",
    "memory", "wall_seconds"} or {"status": "failed", "error"} through `connection`."""
    try:
        _redirect_output(log_path)
        device = _configure(accelerator, threads)
        function = CASES[name].load()
        if "workspace" in inspect.signature(function).parameters:
            settings = {**settings, "workspace": workspace}
        baseline = current_rss_mib()
        start = time.perf_counter()
        result = function(device=device, **settings)
        wall_seconds = time.perf_counter() - start
        memory = {**peak_memory(device), "baseline_rss_mib": baseline}
        connection.send({"status": "ok", "result": result, "memory": memory, "wall_seconds": wall_seconds})
    except Exception:  # reported to the runner, which carries on with the next case
        connection.send({"status": "failed", "error": traceback.format_exc()})
    finally:
        connection.close()


def run_prepare(root: Path, log_path: Path, connection) -> None:
    """Write the benchmark workspace under `root`; send {"status": "ok", "result": Workspace, ...} or a failure."""
    try:
        _redirect_output(log_path)
        start = time.perf_counter()
        workspace = prepare_workspace(root)
        connection.send({"status": "ok", "result": workspace, "wall_seconds": time.perf_counter() - start})
    except Exception:
        connection.send({"status": "failed", "error": traceback.format_exc()})
    finally:
        connection.close()
