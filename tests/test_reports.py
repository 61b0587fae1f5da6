"""One scorer, one report (issue 13): `echomask evaluate`, the generator's `echomask test` and the masking ablation
all write `MotionScorer`'s report, and `echomask.results` (what the notebook reads) loads every one of them; extra
per-sequence statistics land in the report's `sections`."""
from __future__ import annotations

import json
import re
import shutil
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.ablation_masking import score
from echomask import results
from echomask.cli import main
from echomask.evaluation import evaluate_predictions
from echomask.motion.kinematics import build_kinematics
from echomask.scoring import (
    REPORT_KEYS,
    SECTIONS_KEY,
    MotionScorer,
    Provenance,
    ScoredSequence,
    format_report,
    write_report,
)

PER_SEQUENCE_METRICS = {"frames", "bc", "l1div", "face_mse"}


class TranslationRange:
    """A toy extra statistic: how far each motion's root moves, for ground truth and prediction."""

    name = "translation_range"

    def measure(self, sequence: ScoredSequence) -> dict:
        return {
            side: float((motion["trans"].amax(0) - motion["trans"].amin(0)).norm())
            for side, motion in (("ground_truth", sequence.ground_truth), ("generated", sequence.generated))
        }

    def summarize(self, per_sequence: dict) -> dict:
        return {side: max(values[side] for values in per_sequence.values()) for side in ("ground_truth", "generated")}

    def reset(self) -> None:
        pass


@pytest.fixture(scope="module")
def test_run(pipeline_outputs) -> Path:
    """The session's `echomask test` output folder (metrics.json and one <id>.npz per test sequence)."""
    return pipeline_outputs / "generator" / "test"


@pytest.mark.e2e
def test_every_scoring_path_writes_a_report_the_notebook_loads(test_run, synthetic_corpus, fgd_checkpoint, tmp_path):
    evaluated = tmp_path / "evaluate"
    arguments = ["evaluate", "--pred", str(test_run), "--data-root", str(synthetic_corpus),
                 "--fgd-checkpoint", str(fgd_checkpoint), "--out", str(evaluated / "metrics.json")]  # fmt: skip
    assert main(arguments) == 0
    ablation = tmp_path / "ablation" / "pred"
    shutil.copytree(test_run, ablation)
    (ablation / "metrics.json").unlink()
    options = Namespace(data_root=str(synthetic_corpus), fgd_checkpoint=str(fgd_checkpoint), out=tmp_path / "ablation")
    score(ablation, "speech_queried", options)
    score(None, "ground truth", options)

    runs = (test_run, evaluated, ablation, tmp_path / "ablation" / "ground_truth")
    reports = {run: results.load_metrics(run) for run in runs}
    layouts = {run: set(report) - {"face_label"} for run, report in reports.items()}
    assert all(layout == set(REPORT_KEYS) | {SECTIONS_KEY} for layout in layouts.values()), layouts
    for run, report in reports.items():
        assert report["paper_scale"]["bc"] == pytest.approx(10 * report["metrics"]["bc"]), run
        expected = PER_SEQUENCE_METRICS - ({"face_mse"} if report["predictions"] is None else set())
        assert all(expected <= values.keys() for values in report["per_sequence"].values()), run
    # the generator's own test and `echomask evaluate` of what it wrote agree to float rounding
    for name, value in reports[test_run]["metrics"].items():
        assert value == pytest.approx(reports[evaluated]["metrics"][name], rel=1e-4), name
    assert reports[ablation]["name"] == "speech_queried"
    assert reports[ablation][SECTIONS_KEY]["bc_audio"].keys() == {"own", "next", "gap"}
    table = results.metric_table(list(reports))
    assert all(f"\n{run.name} " in f"\n{table}" for run in reports)


@pytest.mark.e2e
def test_extra_statistics_become_report_sections(test_run, synthetic_corpus, fgd_checkpoint, tmp_path):
    report = evaluate_predictions(
        test_run, synthetic_corpus, fgd_checkpoint=fgd_checkpoint, statistics=[TranslationRange()], progress=False
    )
    per_sequence = {seq_id: values["translation_range"] for seq_id, values in report["per_sequence"].items()}
    assert per_sequence and all(values["generated"] >= 0 for values in per_sequence.values())
    section = report[SECTIONS_KEY]["translation_range"]
    assert section["ground_truth"] == max(values["ground_truth"] for values in per_sequence.values()) > 0
    loaded = results.load_metrics(write_report(report, tmp_path / "run" / "metrics.json").parent)
    assert loaded[SECTIONS_KEY] == json.loads(json.dumps(report[SECTIONS_KEY]))


def test_a_report_without_the_layout_is_refused_when_written(tmp_path):
    with pytest.raises(ValueError, match="not an evaluation result, missing \\['paper_scale'"):
        write_report({"name": "x", "metrics": {"bc": 0.5}}, tmp_path / "metrics.json")
    assert not (tmp_path / "metrics.json").exists()


def motion(frames: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "poses": 0.1 * torch.randn(frames, 165, generator=generator),
        "trans": torch.zeros(frames, 3),
        "expressions": torch.zeros(frames, 100),
    }


def test_the_scorer_refuses_unaligned_or_repeated_sequences():
    scorer = MotionScorer(build_kinematics(), np.ones(55), "given", fgd_checkpoint=None)
    audio = np.sin(np.arange(16000 * 8) / 16000 * 2 * np.pi * 220) * (np.arange(16000 * 8) % 8000 < 2000)  # beeps
    with pytest.raises(ValueError, match="cropped to one length"):
        scorer.add("a", motion(240, 0), motion(239, 1), audio)
    scorer.add("a", motion(240, 0), motion(240, 1), audio)
    with pytest.raises(ValueError, match="scored twice"):
        scorer.add("a", motion(240, 0), motion(240, 1), audio)
    report = scorer.report("toy", Provenance("corpus", "test", None, "pred", "none"), seconds=0.0)
    assert report["fgd_checkpoint"] == "none (FGD skipped)" and "fgd" not in report["metrics"]
    assert report["num_frames"] == 240 and report["per_sequence"]["a"]["frames"] == 240
    with pytest.raises(ValueError, match="distinct names"):
        MotionScorer(build_kinematics(), np.ones(55), "given", None, statistics=[TranslationRange()] * 2)


def test_every_report_holds_the_motion_statistics_of_ground_truth_and_prediction():
    """A prediction that turns every joint at half the ground truth's angular speed and walks 1 m where the ground
    truth stands: the section's ratios say so, per sequence and pooled, and the printed report shows them."""
    scorer = MotionScorer(build_kinematics(), np.ones(55), "given", fgd_checkpoint=None)
    audio = np.sin(np.arange(16000 * 8) / 16000 * 2 * np.pi * 220) * (np.arange(16000 * 8) % 8000 < 2000)
    frames = torch.arange(240, dtype=torch.float32)[:, None]
    for seq_id, speed in (("a", 0.004), ("b", 0.008)):  # angles stay below pi: no wrap
        truth = {"poses": (speed * frames).expand(240, 165).contiguous() / 3**0.5, "trans": torch.zeros(240, 3),
                 "expressions": torch.zeros(240, 100)}  # fmt: skip
        generated = {**truth, "poses": truth["poses"] / 2, "trans": torch.zeros(240, 3)}
        generated["trans"][:, 0] = torch.linspace(0, 1, 240)
        scorer.add(seq_id, truth, generated, audio)
    report = scorer.report("toy", Provenance("corpus", "test", None, "pred", "none"), seconds=0.0)
    section = report[SECTIONS_KEY]["motion_statistics"]
    for values in [section, *(report["per_sequence"][i]["motion_statistics"] for i in "ab")]:
        assert values["arms_speed_ratio"] == pytest.approx(0.5, rel=1e-6)
        assert values["trans_x_range_pred"] == pytest.approx(1.0) and values["trans_x_range_gt"] == 0
    assert section["arms_speed_gt"] == pytest.approx(0.006, rel=1e-5)  # frame-weighted mean of 0.004 and 0.008
    assert section["distinctness_ratio"] == pytest.approx(0.5, rel=1e-4)
    assert re.search(r"arms angular speed \(rad/frame\) +\| 0\.0060 +\| 0\.0030 +\| 0\.50", format_report(report))
    scorer.reset()
    assert scorer.statistics[0].motions == {}
