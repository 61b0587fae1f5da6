"""Every `echomask` command reports a missing or malformed input in ONE line on stderr (issue 7).

The line is `echomask <command>: error: <file or option>: <problem>`, the exit status 2, and there is
no traceback and no usage dump. Most cases run `echomask.cli.main` in-process (LightningCLI builds
its parser in well under a second once imported); one runs `python -m echomask` in a subprocess for
the real exit status and stderr. Set ECHOMASK_DEBUG=1 to get tracebacks instead.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# Imported at collection: Lightning's log handler keeps the stderr of its import time, which must
# outlive a single test's `capsys`.
import lightning.pytorch  # noqa: F401
import numpy as np
import pytest
import soundfile
import torch

from echomask.checkpoints import CheckpointError
from echomask.cli import DEBUG_VARIABLE, main
from echomask.lightning_cli import check_ckpt_path
from echomask.data.beat2 import BEAT2Corpus, BEAT2FormatError
from echomask.stages import stage

REPO = Path(__file__).resolve().parents[1]
STAGE1_CONFIGS = stage("face").config_arguments("tiny", root=REPO)
ERROR_STATUS = 2

CONFIGS = {
    "bad_syntax.yaml": "model:\n  init_args:\n    lr: [1, 2\n",
    "unknown_key.yaml": "model:\n  init_args:\n    bogus_key: 3\n",
    "wrong_type.yaml": "data:\n  init_args:\n    batch_size: many\n",
    "unknown_section.yaml": "no_such_section:\n  value: 1\n",
    "top_level_list.yaml": "- fit\n- test\n",
}


@pytest.fixture(autouse=True)
def command_line(monkeypatch):
    """pytest's own arguments are not the CLI's; tracebacks off unless a test asks."""
    monkeypatch.setattr(sys, "argv", ["echomask"])
    monkeypatch.delenv(DEBUG_VARIABLE, raising=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """The bad configs, a truncated checkpoint and audio files of every broken kind."""
    folder = tmp_path_factory.mktemp("bad_inputs")
    for name, text in CONFIGS.items():
        (folder / name).write_text(text)
    torch.save({"state_dict": {"w": torch.randn(256, 256)}}, folder / "whole.ckpt")
    (folder / "truncated.ckpt").write_bytes((folder / "whole.ckpt").read_bytes()[:100_000])
    rate = 16000
    speech = (0.3 * np.sin(np.linspace(0, 2000, 2 * rate))).astype(np.float32)
    soundfile.write(folder / "speech.wav", speech, rate)
    soundfile.write(folder / "silent.wav", np.zeros(2 * rate, np.float32), rate)
    soundfile.write(folder / "short.wav", speech[: rate // 4], rate)
    (folder / "noise.wav").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    return folder


def error_line(status: int, capsys, command: str, *, only_line: bool = True) -> str:
    """The error line of a failed command, after checking status, format and the absence of dumps.

    `only_line=False` for failures after a run started: progress bars and logs may come before it.
    """
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert status == ERROR_STATUS, err
    assert lines, "nothing on stderr"
    assert "Traceback" not in err and "usage:" not in err, err
    if only_line:
        assert len(lines) == 1, err
    assert lines[-1].startswith(f"echomask {command}: error: "), lines[-1]
    return lines[-1]


# --- configs through LightningCLI ------------------------------------------------------------------


@pytest.mark.parametrize(
    "command, config, expected",
    [
        ("fit", "missing.yaml", ["missing.yaml", "does not exist"]),
        ("validate", "bad_syntax.yaml", ["bad_syntax.yaml: not valid YAML", "line 4"]),
        ("test", "unknown_key.yaml", ["unknown_key.yaml: model: ", "'bogus_key' is not accepted"]),
        ("predict", "wrong_type.yaml", ["wrong_type.yaml: data: ", "batch_size", "Expected a <class 'int'>"]),
        ("fit", "unknown_section.yaml", ["unknown_section.yaml: ", "does not accept option 'no_such_section.value'"]),
        ("fit", "top_level_list.yaml", ["top_level_list.yaml: expected a mapping of settings", "got list"]),
    ],
)
def test_a_bad_config_file_is_named_in_one_line(files, capsys, command, config, expected):
    status = main([command, *STAGE1_CONFIGS, "--config", str(files / config)])
    line = error_line(status, capsys, command)
    for fragment in expected:
        assert fragment in line


def test_a_bad_option_value_is_named_in_one_line(capsys):
    line = error_line(main(["fit", *STAGE1_CONFIGS, "--trainer.max_epochs", "many"]), capsys, "fit")
    assert "--trainer.max_epochs: Expected a <class 'int'>" in line


def test_help_is_still_the_full_multi_line_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--ckpt_path" in out and "--trainer.max_epochs" in out and len(out.splitlines()) > 50


@pytest.mark.parametrize("command", ["fit", "validate", "test", "predict"])
@pytest.mark.parametrize("checkpoint, problem", [("absent.ckpt", "checkpoint not found"),
                                                 ("truncated.ckpt", "truncated or corrupt checkpoint")])
def test_a_missing_or_truncated_ckpt_path_is_reported_before_lightning_reads_it(
    files, capsys, command, checkpoint, problem
):
    status = main([command, *STAGE1_CONFIGS, "--ckpt_path", str(files / checkpoint)])
    assert f"{files / checkpoint}: {problem}" in error_line(status, capsys, command)


def test_lightning_aliases_and_good_checkpoints_pass_the_check(files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no file called "last" here
    for alias in ("last", "best", "hpc", None):
        check_ckpt_path(alias)
    check_ckpt_path(str(files / "whole.ckpt"))
    with pytest.raises(CheckpointError):
        check_ckpt_path(str(files / "truncated.ckpt"))


def test_a_class_that_refuses_its_arguments_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status = main(["validate", *STAGE1_CONFIGS, "--data.items", "[bogus]"])
    line = error_line(status, capsys, "validate", only_line=False)  # Lightning logs the seed before
    assert "BEAT2DataModule: unknown item(s) ['bogus']" in line


def test_a_domain_error_inside_the_run_is_one_line_or_a_traceback_on_request(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    missing_root = tmp_path / "no_corpus"
    args = ["validate", *STAGE1_CONFIGS, "--data.root", str(missing_root), "--trainer.logger", "false"]
    line = error_line(main(args), capsys, "validate", only_line=False)  # after Lightning's start-up log
    assert f"{missing_root}: corpus root not found" in line
    monkeypatch.setenv(DEBUG_VARIABLE, "1")
    with pytest.raises(BEAT2FormatError, match="corpus root not found"):
        main(args)


# --- evaluate ----------------------------------------------------------------------------------------


def predictions_with(corpus: Path, out: Path, change) -> tuple[Path, Path]:
    """Copies of the test split's ground truth as predictions, the first one passed through `change`."""
    out.mkdir()
    sequences = list(BEAT2Corpus(corpus, splits=["test"]))
    for sequence in sequences:
        (out / f"{sequence.id}.npz").write_bytes(sequence.motion_path.read_bytes())
    first = out / f"{sequences[0].id}.npz"
    np.savez(first, **change(dict(np.load(first))))
    return out, first


def evaluate(corpus: Path, fgd_checkpoint: Path, *options: str) -> int:
    return main(["evaluate", "--data-root", str(corpus), "--fgd-checkpoint", str(fgd_checkpoint),
                 "--out", str(Path(fgd_checkpoint).parent / "metrics.json"), *options])


def test_evaluate_missing_prediction_folder_and_corpus(synthetic_corpus, fgd_checkpoint, tmp_path, capsys):
    line = error_line(evaluate(synthetic_corpus, fgd_checkpoint, "--pred", str(tmp_path / "nothing")), capsys,
                      "evaluate")
    assert f"prediction folder {tmp_path / 'nothing'} not found" in line
    line = error_line(evaluate(tmp_path / "no_corpus", fgd_checkpoint, "--gt-only"), capsys, "evaluate")
    assert f"{tmp_path / 'no_corpus'}: corpus root not found" in line


def test_evaluate_names_a_prediction_holding_nan(synthetic_corpus, fgd_checkpoint, tmp_path, capsys):
    def with_nan(arrays):
        arrays["poses"][5, 7] = np.nan
        return arrays

    pred_dir, bad = predictions_with(synthetic_corpus, tmp_path / "pred", with_nan)
    status = evaluate(synthetic_corpus, fgd_checkpoint, "--pred", str(pred_dir))
    line = error_line(status, capsys, "evaluate", only_line=False)
    assert f"{bad}: array 'poses' holds 1 NaN/inf value(s)" in line


def test_evaluate_refuses_a_prediction_too_short_for_the_metrics(synthetic_corpus, fgd_checkpoint, tmp_path, capsys):
    def shortened(arrays):  # 100 frames: BC ignores 60 at each end
        for key in ("poses", "trans", "expressions"):
            arrays[key] = arrays[key][:100]
        return arrays

    pred_dir, short = predictions_with(synthetic_corpus, tmp_path / "pred", shortened)
    status = evaluate(synthetic_corpus, fgd_checkpoint, "--pred", str(pred_dir))
    line = error_line(status, capsys, "evaluate", only_line=False)
    assert f"{short}: " in line and "too short" in line


def test_evaluate_reports_a_truncated_fgd_checkpoint(synthetic_corpus, fgd_checkpoint, tmp_path, capsys):
    truncated = tmp_path / "evaluator.ckpt"
    truncated.write_bytes(fgd_checkpoint.read_bytes()[:-1000])
    line = error_line(evaluate(synthetic_corpus, truncated, "--gt-only"), capsys, "evaluate")
    assert f"{truncated}: truncated or corrupt checkpoint" in line


# --- generate ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "audio, problem",
    [
        ("missing.wav", "audio file not found"),
        ("noise.wav", "unreadable or unsupported audio"),
        ("silent.wav", "silent"),
        ("short.wav", "too short"),
    ],
)
def test_generate_names_bad_audio(files, capsys, audio, problem):
    status = main(["generate", "--audio", str(files / audio), "--ckpt", str(files / "whole.ckpt"),
                   "--out", str(files / "out"), "--no-video"])
    line = error_line(status, capsys, "generate")
    assert f"{files / audio}: " in line and problem in line


@pytest.mark.parametrize("checkpoint, problem", [("absent.ckpt", "no generator checkpoint"),
                                                 ("truncated.ckpt", "truncated or corrupt checkpoint")])
def test_generate_names_a_missing_or_truncated_checkpoint(files, capsys, checkpoint, problem):
    status = main(["generate", "--audio", str(files / "speech.wav"), "--ckpt", str(files / checkpoint),
                   "--out", str(files / "out"), "--no-video"])
    assert f"{files / checkpoint}: {problem}" in error_line(status, capsys, "generate")


# --- the real process ----------------------------------------------------------------------------------


def test_the_console_command_exits_2_with_one_line(files):
    """`python -m echomask` in a real process: exit status 2 and nothing on stderr but the line (no warnings)."""
    process = subprocess.run(
        [sys.executable, "-m", "echomask", "fit", *STAGE1_CONFIGS, "--config", "unknown_key.yaml"],
        cwd=files,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == ERROR_STATUS, process.stderr
    assert process.stderr.startswith("echomask fit: error: unknown_key.yaml: model: "), process.stderr
    assert len(process.stderr.strip().splitlines()) == 1, process.stderr
