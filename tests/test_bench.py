"""The benchmark harness (bench/, SPEC §10): statistics, case selection, derived figures, and a smoke run
of `python -m bench.run` on its smallest settings with one repeat (no timing assertions)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import report
from bench.cases import CASES, MATMUL, STAGE1_STAGES
from bench.harness import rates, summarize
from bench.run import select_cases
from echomask.stages import STAGES

REPO = Path(__file__).resolve().parents[1]

SMOKE_CASES = (
    "train-vqvae-upper-tiny",
    "step-generator-tiny-release-fp32",
    "step-generator-tiny-shared-bf16",
    "infer-window-tiny-fp32",
    "infer-window-tiny-bf16",
    "infer-hubert-tiny-random",
    "render-skeleton",
    "render-video",
    "data-loader-vqvae-upper-w0",
)


def test_summarize_gives_median_and_spread():
    stats = summarize([4.0, 1.0, 3.0, 2.0, 100.0])
    assert stats["median"] == 3.0
    assert (stats["min"], stats["max"]) == (1.0, 100.0)
    assert (stats["q1"], stats["q3"]) == (2.0, 4.0)
    assert stats["repeats"] == 5
    assert stats["all"] == [4.0, 1.0, 3.0, 2.0, 100.0]  # in the order measured
    single = summarize([0.5])
    assert single["median"] == single["q1"] == single["q3"] == 0.5
    with pytest.raises(ValueError, match="no timings"):
        summarize([])


def test_rates_turn_wall_times_into_throughput_with_the_fastest_repeat_as_max():
    assert rates(60.0, summarize([2.0, 3.0, 6.0])) == {"median": 20.0, "min": 10.0, "max": 30.0}


def test_case_selection_puts_the_matmul_first_and_honours_quick():
    selected = select_cases("train-*-tiny", quick=False)
    assert selected[0] == MATMUL.name
    assert set(selected[1:]) == {name for name in CASES if name.startswith("train-") and name.endswith("-tiny")}
    quick = select_cases(None, quick=True)
    assert all(CASES[name].quick is not None for name in quick)
    assert "train-generator-paper" not in quick and "train-generator-paper" in select_cases(None, quick=False)
    with pytest.raises(SystemExit, match="no benchmark matches"):
        select_cases("no-such-benchmark", quick=False)


def test_repeats_override_every_case():
    for case in CASES.values():
        settings = case.settings(quick=False, repeats=1)
        assert settings["repeats"] == 1
        assert case.settings(quick=False, repeats=None)["repeats"] == case.full["repeats"]


def _ok(result: dict) -> dict:
    return {"status": "ok", "result": result}


def test_loader_versus_step_names_the_bottleneck():
    seconds = summarize([1.0])
    results = {
        "train-vqvae-face-tiny": _ok({"stage": "vqvae-face", "windows_per_second": {"median": 100.0}}),
        "train-generator-paper": _ok({"stage": "generator", "windows_per_second": {"median": 1.0}}),
        "data-loader-vqvae-upper-w0": _ok({"windows_per_second": {"median": 50.0}, "seconds": seconds}),
        "data-loader-vqvae-upper-w2": _ok({"windows_per_second": {"median": 80.0}, "seconds": seconds}),
        "data-loader-generator-w0": _ok({"windows_per_second": {"median": 40.0}, "seconds": seconds}),
    }
    rows = {row["training"]: row for row in report.loader_versus_step(results)}
    face = rows["train-vqvae-face-tiny"]
    assert face["loader"] == "vqvae-upper"  # stage-1 parts share one item list
    assert face["loader_w0_ratio"] == pytest.approx(0.5) and face["loader_w2_ratio"] == pytest.approx(0.8)
    assert face["loading_share_w0"] == pytest.approx(2 / 3)  # 1/50 s loading of 1/100 + 1/50 s per window
    assert face["bottleneck"] == "loader"
    generator = rows["train-generator-paper"]
    assert generator["loader_w0_ratio"] == pytest.approx(40.0) and "loader_w2_ratio" not in generator
    assert generator["bottleneck"] == "model"


def test_utilisation_and_end_to_end_real_time_factor():
    results = {
        "train-x": _ok({"flops_per_step": 50e9, "step_seconds": summarize([2.0])}),
        "infer-hubert-tiny-random": _ok({"audio_seconds": 60.0, "seconds": summarize([10.0]), "flops": 100e9}),
        "infer-generator-tiny": _ok({"audio_seconds": 60.0, "seconds": summarize([20.0]), "flops": 0}),
        "broken": {"status": "failed", "reason": "exception"},
    }
    report.add_utilisation(results, matmul_gflops=100.0)
    assert results["train-x"]["result"]["mfu"] == pytest.approx(0.25)  # 25 GFLOP/s of 100
    assert results["infer-hubert-tiny-random"]["result"]["mfu"] == pytest.approx(0.1)
    assert "mfu" not in results["infer-generator-tiny"]["result"]  # no FLOPs counted, no utilisation
    (row,) = report.end_to_end(results)
    assert row["real_time_factor"] == pytest.approx(2.0)  # 60 s of audio in 10 + 20 s
    assert row["hubert_share"] == pytest.approx(1 / 3)
    assert "FAILED: exception" in report.results_table({"broken": results["broken"]})


def test_busy_machine_is_flagged():
    machine = {"cpu_count": 2, "torch_threads": 2}
    quiet = [0.2, 0.2, 0.2]
    assert report.busy_warning(machine, quiet, [2.5, 2.0, 1.0]) is None  # the benchmark's own 2 threads
    assert "busy" in report.busy_warning(machine, quiet, [4.0, 2.0, 1.0])
    assert "busy" in report.busy_warning(machine, [1.5, 1.0, 1.0], [2.0, 2.0, 2.0])


@pytest.mark.e2e
def test_smoke_run_of_the_harness(tmp_path):
    """`python -m bench.run` end to end on the smallest settings: every selected benchmark runs in its own process and
    reports a positive throughput, FLOPs and peak memory; JSON and table are written."""
    command = [
        sys.executable,
        "-m",
        "bench.run",
        "--quick",
        "--repeats",
        "1",
        "--threads",
        "1",
        "--only",
        ",".join(SMOKE_CASES),
        "--out",
        str(tmp_path),
    ]
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    summary = json.loads((tmp_path / "results.json").read_text())
    assert list(summary["cases"]) == [MATMUL.name, *SMOKE_CASES]
    for name, entry in summary["cases"].items():
        assert entry["status"] == "ok", (name, entry.get("error"))
        assert entry["memory"]["peak_rss_mib"] > entry["memory"]["baseline_rss_mib"] > 0
        assert (tmp_path / "logs" / f"{name}.log").exists()
    assert summary["matmul_gflops"] > 0 and summary["matmul_bf16_gflops"] > 0
    machine = summary["machine"]
    assert machine["auto_precision"] in ("32-true", "bf16-mixed") and isinstance(machine["cpu_flags"], list)
    for name, precision, share_work in (
        ("step-generator-tiny-release-fp32", "32-true", False),
        ("step-generator-tiny-shared-bf16", "bf16-mixed", True),
    ):
        step = summary["cases"][name]["result"]
        assert (step["precision"], step["share_work"], step["batch_size"]) == (precision, share_work, 4)
        assert step["flops_per_step"] > 0 and 0 < step["mfu"] and 0 < step["mfu_bf16"]
    for precision in ("fp32", "bf16"):
        window = summary["cases"][f"infer-window-tiny-{precision}"]["result"]
        assert window["seconds"]["median"] > 0 and window["flops"] > 0
        assert window["profile"] and all(0 < row["share"] <= 1 for row in window["profile"])
    training = summary["cases"]["train-vqvae-upper-tiny"]["result"]
    assert training["step_seconds"]["repeats"] == 1
    assert training["windows_per_second"]["median"] > 0 and training["flops_per_step"] > 0
    assert 0 < training["mfu"]
    hubert = summary["cases"]["infer-hubert-tiny-random"]["result"]
    assert hubert["audio_seconds"] == 20.0 and hubert["real_time_factor"]["median"] > 0
    render = summary["cases"]["render-skeleton"]["result"]
    assert render["frames"] == 60 and render["frames_per_second"]["median"] > 0
    video = summary["cases"]["render-video"]["result"]
    assert (video["frames"], video["height"]) == (60, 512) and video["frames_per_second"]["median"] > 0
    assert summary["loader_vs_step"][0]["training"] == "train-vqvae-upper-tiny"
    table = (tmp_path / "results.md").read_text()
    assert all(name in table for name in SMOKE_CASES) and table in finished.stdout
    assert "60 frames:" in table and "frames/s" in table
    assert "Where an inference window's time goes" in table and "ms/window" in table and "release path" in table


def test_registry_names_the_stage_tables_stages_and_existing_functions():
    assert set(STAGE1_STAGES) | {"evaluator", "generator"} == set(STAGES)
    trained = {case.full["stage"] for case in CASES.values() if case.group == "train"}
    assert trained == set(STAGES)
    for case in CASES.values():
        assert callable(case.load()), case.name
