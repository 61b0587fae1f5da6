"""Run the echomask benchmarks (SPEC §10) and write `<out>/results.json` and `<out>/results.md`.

From the repository root (`bench` is a package there):

    python -m bench.run --out bench/results                 # everything (about 25 min on a 2-core CPU)
    python -m bench.run --quick                             # a short run (under 2 min there)
    python -m bench.run --only 'train-*-tiny,data-*'        # a selection (shell-style patterns)
    python -m bench.run --accelerator cuda                  # on a GPU
    python -m bench.run --list                              # the benchmark names

Every benchmark runs in a process of its own (forked from a server that has imported torch and
echomask once), so its peak memory is its own and one failure does not stop the others. The machine's
fp32 matmul rate is measured first: it is the ceiling the model FLOP utilisation is reported against.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

from bench import report
from bench.cases import CASES, MATMUL
from bench.entry import call

DEFAULT_TIMEOUT_SECONDS = 900.0


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="folder for results.json/.md, logs/")
    parser.add_argument("--accelerator", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, short audio, fewer repeats")
    parser.add_argument("--only", default=None, help="comma-separated names or shell patterns (see --list)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats of every benchmark (default: its own)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--precision", default=None, help="Trainer precision of training (default: the config's)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS, help="seconds one benchmark may take")
    parser.add_argument("--list", action="store_true", help="print the benchmark names and exit")
    arguments = parser.parse_args(argv)
    if arguments.repeats is not None and arguments.repeats < 1:
        parser.error("--repeats must be at least 1")
    return arguments


def select_cases(only: str | None, quick: bool) -> list[str]:
    """Names to run, in registry order; the matmul rate always comes first (MFU needs it)."""
    names = [name for name, case in CASES.items() if case.settings(quick, None) is not None]
    if only is not None:
        patterns = [pattern.strip() for pattern in only.split(",") if pattern.strip()]
        unmatched = [pattern for pattern in patterns if not fnmatch.filter(CASES, pattern)]
        if unmatched:
            raise SystemExit(f"--only: no benchmark matches {unmatched}; see --list")
        names = [name for name in CASES if any(fnmatch.fnmatch(name, pattern) for pattern in patterns)]
        skipped_in_quick = [name for name in names if CASES[name].settings(quick, None) is None]
        if skipped_in_quick:
            print(f"not part of --quick, skipped: {', '.join(skipped_in_quick)}")
            names = [name for name in names if name not in skipped_in_quick]
    return [MATMUL.name] + [name for name in names if name != MATMUL.name]


def run_in_process(context, target: str, arguments: tuple, timeout: float) -> dict:
    """The function `target` ("module:function") called as `(*arguments, connection)` in a fresh process;
    the message it sends, or a failure (timeout, crash)."""
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=call, args=(target, *arguments, sender))
    process.start()
    sender.close()
    try:
        if not receiver.poll(timeout):
            process.kill()
            message = {"status": "failed", "reason": f"timed out after {timeout:g} s", "error": ""}
        else:
            message = receiver.recv()
    except EOFError:
        message = {"status": "failed", "reason": "the process died without an answer", "error": ""}
    process.join()
    if message["status"] == "failed" and process.exitcode not in (0, None):
        message["reason"] = f"{message.get('reason', 'exception')} (exit code {process.exitcode})"
    message.setdefault("reason", "exception" if message["status"] == "failed" else "")
    return message


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    if arguments.list:
        for name, case in CASES.items():
            print(f"{name:34s} {case.group:10s}{'' if case.quick is not None else ' (not in --quick)'}")
        return 0
    names = select_cases(arguments.only, arguments.quick)
    context = multiprocessing.get_context("forkserver")
    # torch, Lightning, transformers, echomask: imported once by the server, then every process is a fork of it
    context.set_forkserver_preload(["bench.worker", *sorted({CASES[name].module for name in names})])
    load_average_start = list(os.getloadavg())
    results: dict[str, dict] = {}
    started = time.perf_counter()
    arguments.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="echomask-bench-") as folder:
        print(f"preparing the benchmark corpus and cache in {folder} ...", flush=True)
        logs = arguments.out / "logs"
        prepare = (Path(folder), logs / "prepare.log")
        prepared = run_in_process(context, "bench.worker:run_prepare", prepare, arguments.timeout)
        if prepared["status"] != "ok":
            print(prepared["error"], file=sys.stderr)
            return 1
        workspace = prepared["result"]
        for number, name in enumerate(names, start=1):
            settings = CASES[name].settings(arguments.quick, arguments.repeats)
            if name.startswith("train-") and arguments.precision is not None:
                settings["precision"] = arguments.precision
            print(f"[{number}/{len(names)}] {name} ...", end=" ", flush=True)
            message = run_in_process(
                context,
                "bench.worker:run_case",
                (name, settings, arguments.accelerator, arguments.threads, workspace, logs / f"{name}.log"),
                arguments.timeout,
            )
            results[name] = {"group": CASES[name].group, "settings": settings, **message}
            took = message.get("wall_seconds")
            outcome = f" ({took:.1f} s)" if took is not None else f": {message['reason']}"
            print(message["status"] + outcome, flush=True)
            if message["status"] != "ok":
                print(message.get("error") or f"see {logs / name}.log", file=sys.stderr)

    matmul = results[MATMUL.name]["result"] if results.get(MATMUL.name, {}).get("status") == "ok" else None
    matmul_gflops = matmul["gflops_per_second"]["median"] if matmul else None
    bf16_matmul_gflops = matmul["bf16_gflops_per_second"]["median"] if matmul else None
    report.add_utilisation(results, matmul_gflops, bf16_matmul_gflops)
    summary = {
        "settings": {key: str(value) if isinstance(value, Path) else value for key, value in vars(arguments).items()},
        "machine": matmul["machine"] if matmul else {"cpu_count": os.cpu_count()},
        "load_average_start": load_average_start,
        "load_average_end": list(os.getloadavg()),
        "total_seconds": time.perf_counter() - started,
        "prepare_seconds": prepared["wall_seconds"],
        "matmul_gflops": matmul_gflops,
        "matmul_bf16_gflops": bf16_matmul_gflops,
        "cases": results,
        "loader_vs_step": report.loader_versus_step(results),
        "end_to_end": report.end_to_end(results),
    }
    markdown = report.markdown_report(summary)
    (arguments.out / "results.json").write_text(json.dumps(summary, indent=2))
    (arguments.out / "results.md").write_text(markdown)
    print()
    print(markdown)
    print(f"written: {arguments.out}/results.json and results.md ({summary['total_seconds']:.0f} s)")
    return 0 if all(entry["status"] == "ok" for entry in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
