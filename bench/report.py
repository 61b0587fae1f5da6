"""From case results to the figures SPEC §10 asks for: utilisation, loader vs step, end-to-end real-time
factor, and the printed table (also written as Markdown)."""
from __future__ import annotations

import math

# Which loader benchmark reads the items a training stage reads (stage 1 parts and the translation
# model share the vqvae configs' items).
LOADER_OF_STAGE = {"evaluator": "evaluator", "generator": "generator"}
STAGE1_LOADER = "vqvae-upper"
END_TO_END = (("tiny-random", "tiny"), ("large-random", "paper"))  # (HuBERT, generator size) pairs
# HuBERT-large + the released network's inference windows (bench.generator_step), per precision
WINDOW_END_TO_END = (("large-random", "fp32"), ("large-random-bf16", "bf16"))
FPS, WINDOW_STRIDE, SEED_FRAMES = 30, 60, 4  # SPEC §6.6: windows of 64 frames every 60, 4 seed frames


def _ok(results: dict, name: str) -> dict | None:
    entry = results.get(name)
    return entry["result"] if entry and entry["status"] == "ok" else None


def add_utilisation(results: dict, matmul_gflops: float | None, bf16_matmul_gflops: float | None = None) -> None:
    """Model FLOP utilisation (achieved FLOP/s over the measured matmul FLOP/s) of every training and
    inference result that counted its FLOPs, in place: `mfu` against the fp32 rate, `mfu_bf16` against the bf16
    rate (fractions)."""
    if not matmul_gflops:
        return
    for entry in results.values():
        if entry["status"] != "ok":
            continue
        result = entry["result"]
        flops = result.get("flops_per_step", result.get("flops"))
        seconds = result.get("step_seconds", result.get("seconds"))
        if flops and seconds and "median" in seconds:
            result["achieved_gflops_per_second"] = flops / seconds["median"] / 1e9
            result["mfu"] = result["achieved_gflops_per_second"] / matmul_gflops
            if bf16_matmul_gflops:
                result["mfu_bf16"] = result["achieved_gflops_per_second"] / bf16_matmul_gflops


def loader_versus_step(results: dict) -> list[dict]:
    """Per training result: the configured loader's windows/s (0 and 2 workers) over the step's windows/s.

    Below 1 the loader cannot keep up (with 0 workers loading also adds to every step:
    `loading_share_w0` is the part of the time spent loading)."""
    rows = []
    for name, entry in results.items():
        if entry["status"] != "ok" or not name.startswith("train-"):
            continue
        result = entry["result"]
        loader_stage = LOADER_OF_STAGE.get(result["stage"], STAGE1_LOADER)
        train_rate = result["windows_per_second"]["median"]
        row = {"training": name, "train_windows_per_second": train_rate, "loader": loader_stage}
        for workers in (0, 2):
            loader = _ok(results, f"data-loader-{loader_stage}-w{workers}")
            if loader is not None:
                loader_rate = loader["windows_per_second"]["median"]
                row[f"loader_w{workers}_windows_per_second"] = loader_rate
                row[f"loader_w{workers}_ratio"] = loader_rate / train_rate
        if "loader_w0_ratio" in row:
            row["loading_share_w0"] = 1 / (1 + row["loader_w0_ratio"])
        ratios = [row[key] for key in ("loader_w0_ratio", "loader_w2_ratio") if key in row]
        if ratios:
            row["bottleneck"] = "loader" if max(ratios) < 1 else "model"
        rows.append(row)
    return rows


def end_to_end(results: dict) -> list[dict]:
    """Real-time factor of HuBERT + generator for the same audio length (audio → motion, no file I/O)."""
    rows = []
    for hubert_model, size in END_TO_END:
        hubert = _ok(results, f"infer-hubert-{hubert_model}")
        generator = _ok(results, f"infer-generator-{size}")
        if hubert is None or generator is None or hubert["audio_seconds"] != generator["audio_seconds"]:
            continue
        seconds = hubert["seconds"]["median"] + generator["seconds"]["median"]
        rows.append(
            {
                "hubert": hubert_model,
                "generator": size,
                "audio_seconds": hubert["audio_seconds"],
                "seconds": seconds,
                "hubert_share": hubert["seconds"]["median"] / seconds,
                "real_time_factor": hubert["audio_seconds"] / seconds,
            }
        )
    for hubert_name, precision in WINDOW_END_TO_END:
        hubert = _ok(results, f"infer-hubert-{hubert_name}")
        window = _ok(results, f"infer-window-paper-{precision}")
        if hubert is None or window is None:
            continue
        audio_seconds = hubert["audio_seconds"]
        windows = max(1, math.ceil((audio_seconds * FPS - SEED_FRAMES) / WINDOW_STRIDE))
        seconds = hubert["seconds"]["median"] + windows * window["seconds"]["median"]
        rows.append(
            {
                "hubert": f"{hubert['model']} {hubert.get('precision', '32-true')}",
                "generator": f"paper MaskedGenerator.infer {window['precision']} x {windows} (no stage-1 decoding)",
                "audio_seconds": audio_seconds,
                "seconds": seconds,
                "hubert_share": hubert["seconds"]["median"] / seconds,
                "real_time_factor": audio_seconds / seconds,
            }
        )
    return rows


# ------------------------------------------------------------------------------------------------ table


def _spread(seconds: dict) -> str:
    return f"{seconds['median']:.3g} ({seconds['min']:.3g}–{seconds['max']:.3g})"


def _headline(result: dict) -> tuple[str, str]:
    """(what was measured, the main time statistic) of one result."""
    if "gflops_per_second" in result:
        bf16 = result.get("bf16_gflops_per_second")
        extra = f", bf16 {bf16['median']:.1f}" if bf16 else ""
        return f"fp32 {result['gflops_per_second']['median']:.1f}{extra} GFLOP/s", _spread(result["seconds"])
    if "share_work" in result:
        path = "shared step" if result["share_work"] else "release path"
        rate = result["windows_per_second"]["median"]
        return f"{path}, {result['precision']}, B={result['batch_size']}: {rate:.3g} windows/s", _spread(
            result["step_seconds"]
        )
    if "profile" in result:
        return f"{result['precision']}: {1000 * result['seconds']['median']:.4g} ms/window", _spread(result["seconds"])
    if "stage" in result and "step_seconds" in result:
        rate = result["windows_per_second"]
        return f"B={result['batch_size']}: {rate['median']:.3g} windows/s", _spread(result["step_seconds"])
    if "real_time_factor" in result:
        extra = f", {result['seconds_per_window']:.3g} s/window" if "seconds_per_window" in result else ""
        return (
            f"{result['audio_seconds']:g} s audio: {result['real_time_factor']['median']:.3g}x real time{extra}",
            _spread(result["seconds"]),
        )
    if "frames_per_second" in result:
        return (
            f"{result['frames']} frames: {result['frames_per_second']['median']:.4g} frames/s",
            _spread(result["seconds"]),
        )
    if "motion_seconds_per_second" in result:
        return (
            f"{result['motion_seconds']:g} s motion: {result['motion_seconds_per_second']:.3g} s scored/s",
            _spread(result["seconds"]),
        )
    if "corpus_seconds_per_second" in result:
        return (
            f"{result['corpus_seconds']:g} s corpus: build {result['corpus_seconds_per_second']:.3g} s/s "
            f"(first build {result['first_build_seconds']:.2g} s), "
            f"verify {result['verify_corpus_seconds_per_second']:.3g} s/s",
            _spread(result["build_seconds"]),
        )
    rate = result["windows_per_second"]
    return (
        f"B={result['batch_size']}: {rate['median']:.4g} windows/s (first batch {result['first_batch_seconds']:.2g} s)",
        _spread(result["seconds"]),
    )


def _flops(result: dict) -> str:
    flops = result.get("flops_per_step", result.get("flops"))
    return f"{flops / 1e9:.4g}" if flops else ""


def _memory(entry: dict) -> str:
    memory = entry.get("memory", {})
    if not memory:
        return ""
    text = f"{memory['peak_rss_mib']:.0f}"
    if "peak_gpu_allocated_mib" in memory:
        text += f" (GPU {memory['peak_gpu_allocated_mib']:.0f})"
    return text


def results_table(results: dict) -> str:
    """One Markdown row per case: result, seconds median (min–max), GFLOP per step/call, MFU, peak RSS."""
    lines = [
        "| benchmark | result | seconds: median (min–max) | GFLOP | MFU | peak RSS MiB |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in results.items():
        if entry["status"] != "ok":
            lines.append(f"| {name} | {entry['status'].upper()}: {entry.get('reason', 'see results.json')} | | | | |")
            continue
        result = entry["result"]
        headline, seconds = _headline(result)
        mfu = f"{100 * result['mfu']:.1f} %" if "mfu" in result else ""
        if "mfu_bf16" in result:
            mfu += f" (of bf16: {100 * result['mfu_bf16']:.1f} %)"
        lines.append(f"| {name} | {headline} | {seconds} | {_flops(result)} | {mfu} | {_memory(entry)} |")
    return "\n".join(lines)


def loader_table(rows: list[dict]) -> str:
    lines = [
        "| training step | step windows/s | loader | loader/step (0 workers) | loader/step (2 workers) | bottleneck |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratios = [f"{row[key]:.3g}" if key in row else "" for key in ("loader_w0_ratio", "loader_w2_ratio")]
        lines.append(
            f"| {row['training']} | {row['train_windows_per_second']:.3g} | {row['loader']} | "
            f"{ratios[0]} | {ratios[1]} | {row.get('bottleneck', '')} |"
        )
    return "\n".join(lines)


def end_to_end_table(rows: list[dict]) -> str:
    lines = ["| HuBERT | generator | audio s | wall s | HuBERT share | real-time factor |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['hubert']} | {row['generator']} | {row['audio_seconds']:g} | {row['seconds']:.3g} | "
            f"{100 * row['hubert_share']:.0f} % | {row['real_time_factor']:.3g}x |"
        )
    return "\n".join(lines)


def profile_table(results: dict) -> str:
    """The operators an inference window's time goes to, per `infer-window-*` case (the largest size run)."""
    lines = ["| window | operator | ms per window | share | calls per window |", "|---|---|---|---|---|"]
    for name, entry in results.items():
        if not name.startswith("infer-window-") or entry["status"] != "ok":
            continue
        for row in entry["result"]["profile"]:
            lines.append(
                f"| {name} | {row['operator']} | {row['ms_per_window']:.3g} | {100 * row['share']:.0f} % | "
                f"{row['calls_per_window']:g} |"
            )
    return "\n".join(lines)


def busy_warning(machine: dict, load_average_start: list[float], load_average_end: list[float]) -> str | None:
    """A warning when other work shared the CPU, else None: the 1-minute load average before the run, or at
    its end minus the benchmark's own threads, reaches half the cores.

    The benchmarks use every core, so on a busy machine their timings say little (threads wait for each other)."""
    cores = machine["cpu_count"] or 1
    loads = (load_average_start[0], load_average_end[0])
    others_at_end = loads[1] - machine.get("torch_threads", cores)
    if loads[0] < cores / 2 and others_at_end < cores / 2:
        return None
    return (
        f"WARNING: the machine was busy (load average {loads[0]:.1f} at start, {loads[1]:.1f} at end, "
        f"{cores} cores): these timings are not representative; rerun on an idle machine."
    )


def markdown_report(report: dict) -> str:
    """The whole report (machine line, the three tables) as Markdown."""
    machine = report["machine"]
    header = (
        f"Machine: {machine['cpu']} ({machine['torch_threads']} torch threads), device {machine['device']}, "
        f"torch {machine['torch']}; fp32 matmul {report['matmul_gflops']:.1f} GFLOP/s, bf16 "
        f"{report.get('matmul_bf16_gflops') or 0:.1f} GFLOP/s; CPU flags {', '.join(machine.get('cpu_flags', []))}; "
        f"precision auto -> {machine.get('auto_precision')} ({machine.get('auto_precision_reason')}); "
        f"load average at start "
        f"{report['load_average_start'][0]:.2f}, at end {report['load_average_end'][0]:.2f}. "
        f"Mode: {'quick' if report['settings']['quick'] else 'full'}."
    ) if report.get("matmul_gflops") else "Machine: unknown (the matmul benchmark failed)."
    sections = [header]
    warning = busy_warning(machine, report["load_average_start"], report["load_average_end"])
    if warning:
        sections += ["", warning]
    sections += ["", results_table(report["cases"])]
    if report["loader_vs_step"]:
        title = "Loader vs training step (ratio < 1: the loader cannot keep up):"
        sections += ["", title, "", loader_table(report["loader_vs_step"])]
    if any(name.startswith("infer-window-") and entry["status"] == "ok" for name, entry in report["cases"].items()):
        title = "Where an inference window's time goes (torch.profiler, self CPU time, top operators):"
        sections += ["", title, "", profile_table(report["cases"])]
    if report["end_to_end"]:
        title = "Audio → motion (HuBERT + sliding-window generator):"
        sections += ["", title, "", end_to_end_table(report["end_to_end"])]
    return "\n".join(sections) + "\n"
