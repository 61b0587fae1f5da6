"""The result-inspection notebook (SPEC §9): `echomask.results` on tiny hand-made artefacts, the notebook run on
them, and the notebook run on the outputs of a real `echomask test` and `echomask generate` (the session's
`pipeline_outputs`, laid out as `make demo` leaves `outputs/`)."""
import contextlib
import io
import json
import os
import re
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

import echomask
from echomask import results
from echomask.data.beat2 import read_audio_checked, read_motion
from echomask.evaluation import evaluate_predictions
from echomask.inference import SMPLX_GENDER, SMPLX_MODEL, write_smplx_npz
from echomask.metrics.display import PAPER_SCALE
from echomask.render import write_video
from echomask.scoring import write_report

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "inspect_results.ipynb"

EVALUATE_RUN, GENERATOR_RUN = "evaluate", "generator"
GENERATED_SECONDS = 5  # shorter than the corpus' 6 s sequences: the evaluation crops to the common length
KERNEL_NAME = "echomask-test-python"


def generated_like(motion: dict, frames: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The first `frames` frames of a ground-truth motion with some pose noise, as BEAT2/SMPL-X npz arrays."""
    poses = motion["poses"][:frames] + rng.normal(scale=0.05, size=(frames, 165)).astype(np.float32)
    return {
        "poses": poses,
        "trans": motion["trans"][:frames].astype(np.float64),
        "expressions": motion["expressions"][:frames].astype(np.float64),
        "betas": motion["betas"],
        "mocap_frame_rate": np.array(30, dtype=np.int32),
        "gender": np.array(SMPLX_GENDER),
        "model": np.array(SMPLX_MODEL),
    }


def write_sqa(path: Path, audio: np.ndarray, frames: int, rng: np.random.Generator, with_mask: bool = True) -> dict:
    """Random SQA scores (normalised) over `audio`, with the top 30 % as the mask when `with_mask`."""
    scores = rng.random(frames).astype(np.float32)
    mask = scores > np.quantile(scores, 0.7) if with_mask else None
    results.write_sqa(path, scores / scores.sum(), audio, 16000, mask=mask)
    with np.load(path) as written:
        return dict(written)


@pytest.fixture(scope="module")
def root(synthetic_corpus, test_sequences, fgd_checkpoint, tmp_path_factory) -> Path:
    """A results root: `evaluate/` (metrics of the ground truth alone) and `generator/` (metrics, one generated npz
    per test sequence, an `_sqa.npz` and an mp4 for the first), plus a folder that is not a run."""
    root = tmp_path_factory.mktemp("outputs")
    checkpoint = fgd_checkpoint
    write_report(
        evaluate_predictions(None, synthetic_corpus, fgd_checkpoint=checkpoint, progress=False),
        root / EVALUATE_RUN / "metrics.json",
    )
    rng = np.random.default_rng(0)
    generator_run = root / GENERATOR_RUN
    for sequence in test_sequences:
        motion = generated_like(read_motion(sequence.motion_path), 30 * GENERATED_SECONDS, rng)
        write_smplx_npz(generator_run / f"{sequence.id}.npz", motion)
    write_report(
        evaluate_predictions(generator_run, synthetic_corpus, fgd_checkpoint=checkpoint, progress=False),
        generator_run / "metrics.json",
    )
    first = test_sequences[0]
    audio = read_audio_checked(first.audio_path)[: 16000 * GENERATED_SECONDS]
    write_sqa(generator_run / f"{first.id}_sqa.npz", audio, 30 * GENERATED_SECONDS, rng)
    write_video(np.zeros((4, 32, 32, 3), np.uint8), generator_run / f"{first.id}.mp4")
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("not a run")
    return root


@pytest.fixture(scope="module")
def generator_result(root) -> dict:
    return results.load_metrics(root / GENERATOR_RUN)


# ---------------------------------------------------------------------------------------------- finding runs


def test_results_root_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(results.RESULTS_VARIABLE, raising=False)
    assert results.results_root() == Path("outputs")
    assert results.results_root(default="../outputs") == Path("../outputs")
    monkeypatch.setenv(results.RESULTS_VARIABLE, str(tmp_path))
    assert results.results_root(default="../outputs") == tmp_path


def test_runs_are_the_folders_with_metrics_or_motion(root, tmp_path):
    runs = results.find_runs(root)
    assert runs == [root / EVALUATE_RUN, root / GENERATOR_RUN]
    assert results.find_runs(tmp_path / "absent") == []
    assert "2 run(s)" in results.describe_runs(root, runs)
    assert "no runs under" in results.describe_runs(tmp_path, [])


def test_picking_a_run_and_a_sequence(root, test_sequences):
    runs = results.find_runs(root)
    assert results.pick_run(runs) == root / EVALUATE_RUN
    assert results.pick_run(runs, GENERATOR_RUN) == root / GENERATOR_RUN
    with pytest.raises(ValueError, match="'nope': none of the runs match"):
        results.pick_run(runs, "nope")
    with pytest.raises(results.MissingArtefact, match="no runs found"):
        results.pick_run([])
    ids = sorted(sequence.id for sequence in test_sequences)
    assert results.sequence_ids(root / GENERATOR_RUN) == ids
    assert results.pick_sequence(root / GENERATOR_RUN) == ids[0]
    assert results.pick_sequence(root / GENERATOR_RUN, "x") == "x"
    with pytest.raises(results.MissingArtefact, match="holds no generated"):
        results.pick_sequence(root / EVALUATE_RUN)


def test_missing_artefacts_name_the_file(root):
    run = root / EVALUATE_RUN
    for find, name in [(results.motion_path, "a.npz"), (results.sqa_path, "a_sqa.npz"), (results.video_path, "a.mp4")]:
        with pytest.raises(results.MissingArtefact, match=name):
            find(run, "a")
    with pytest.raises(results.MissingArtefact, match="metrics.json"):
        results.load_metrics(root / "notes")


def test_videos_are_linked_relative_to_the_notebook_folder(root, test_sequences, monkeypatch):
    video = results.video_path(root / GENERATOR_RUN, test_sequences[0].id)
    monkeypatch.chdir(root / EVALUATE_RUN)
    assert results.video_src(video) == f"../{GENERATOR_RUN}/{test_sequences[0].id}.mp4"


def test_report_missing_prints_only_missing_artefacts(capsys):
    with results.report_missing():
        raise results.MissingArtefact("no such thing")
    assert "skipped: no such thing" in capsys.readouterr().out
    with pytest.raises(ValueError, match="broken"), results.report_missing():
        raise ValueError("broken")


# --------------------------------------------------------------------------------------------------- metrics


def test_bad_metrics_files_are_named(tmp_path):
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(ValueError, match="metrics.json: not valid JSON"):
        results.load_metrics(tmp_path)
    (tmp_path / "metrics.json").write_text(json.dumps({"name": "x", "metrics": {}}))
    with pytest.raises(ValueError, match="not an evaluation result, missing \\['paper_scale', 'protocol', "):
        results.load_metrics(tmp_path)


def test_metric_table_has_one_paper_scale_row_per_run(root, generator_result):
    table = results.metric_table(results.find_runs(root) + [root / "notes"])
    lines = table.splitlines()
    assert "FGD ×10⁻¹ ↓" in lines[0] and "MSE ×10⁻⁸ ↓" in lines[0]
    generator_line = next(line for line in lines if line.startswith(GENERATOR_RUN + " "))
    for key in ("fgd", "bc", "l1div", "face_mse"):
        assert f"{generator_result['paper_scale'][key]:.3f}" in generator_line
    assert any(line.startswith(EVALUATE_RUN + " ") for line in lines)
    assert f"{GENERATOR_RUN}: protocol=paper, fgd_encoder={generator_result['fgd_checkpoint']}" in table
    assert lines[-1] == "runs without metrics.json: notes"
    with pytest.raises(results.MissingArtefact, match="none of the 1 run"):
        results.metric_table([root / "notes"])


def test_per_sequence_table_lists_every_sequence_at_paper_scale(generator_result):
    lines = results.per_sequence_table(generator_result).splitlines()
    assert [cell.strip() for cell in lines[0].split(" | ")][:3] == ["sequence", "frames", "BC ×10⁻¹ ↑"]
    per_sequence = generator_result["per_sequence"]
    assert len(lines) == 2 + len(per_sequence)
    for line, (seq_id, values) in zip(lines[2:], per_sequence.items()):
        cells = [cell.strip() for cell in line.split(" | ")]
        assert cells[:2] == [seq_id, str(30 * GENERATED_SECONDS)]
        assert float(cells[2]) == pytest.approx(10 * values["bc"], abs=1e-3)
        assert float(cells[4]) == pytest.approx(1e8 * values["face_mse"], abs=1e-3)


def test_per_sequence_bars_are_the_paper_scale_values(generator_result):
    figure = results.plot_per_sequence(generator_result, "bc")
    axis = figure.axes[0]
    heights = [bar.get_height() for bar in axis.patches]
    assert heights == pytest.approx([10 * values["bc"] for values in generator_result["per_sequence"].values()])
    assert axis.lines[0].get_ydata()[0] == pytest.approx(generator_result["paper_scale"]["bc"])
    with pytest.raises(ValueError, match="'fgd' not in the result"):
        results.plot_per_sequence(generator_result, "fgd")
    assert results.figure_png(figure).startswith(b"\x89PNG")


# ---------------------------------------------------------------------------------------------------- SQA


def test_sqa_plot_shades_the_masked_frames(tmp_path):
    rng = np.random.default_rng(1)
    audio = rng.normal(size=16000).astype(np.float32)
    arrays = write_sqa(tmp_path / "a_sqa.npz", audio, 30, rng)
    score_axis = results.plot_sqa(tmp_path / "a_sqa.npz").axes[-1]
    assert np.asarray(score_axis.lines[0].get_ydata()) == pytest.approx(arrays["scores"])
    assert len(score_axis.patches) == arrays["mask"].sum() > 0
    write_sqa(tmp_path / "b_sqa.npz", audio, 30, rng, with_mask=False)
    figure = results.plot_sqa(tmp_path / "b_sqa.npz")
    assert not figure.axes[-1].patches and "no mask saved" in figure.axes[0].get_title()


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"scores": np.zeros(30, np.float32), "audio": np.zeros(100, np.float32)}, "missing \\['sample_rate'\\]"),
        (
            {"scores": np.zeros(30), "mask": np.zeros(29, bool), "audio": np.zeros(9), "sample_rate": 16000},
            "mask must be \\(T,\\) bool",
        ),
        ({"scores": np.zeros((30, 2)), "audio": np.zeros(9), "sample_rate": 16000}, "scores must be \\(T,\\)"),
        ({"scores": np.zeros(30), "audio": np.zeros((9, 2)), "sample_rate": 16000}, "audio must be a \\(N,\\)"),
    ],
)
def test_bad_sqa_files_are_named(tmp_path, arrays, message):
    path = tmp_path / "a_sqa.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=message) as error:
        results.load_sqa(path)
    assert str(path) in str(error.value)


# ----------------------------------------------------------------------------------------------- clip strip


def test_clip_strip_draws_the_motion_side_by_side(root, test_sequences):
    path = root / GENERATOR_RUN / f"{test_sequences[0].id}.npz"
    strip = results.clip_strip(path, frames=4, panel_size=96)
    assert strip.shape == (96, 4 * 96, 3) and strip.dtype == np.uint8
    for panel in np.split(strip, 4, axis=1):
        assert (panel < 128).any(), "every panel shows a skeleton"
    moved = dict(np.load(path))
    moved["poses"] = np.zeros_like(moved["poses"])
    write_smplx_npz(root / "moved.npz", moved)
    assert not np.array_equal(results.clip_strip(root / "moved.npz", frames=4, panel_size=96), strip)
    (root / "moved.npz").unlink()
    assert results.png_bytes(strip).startswith(b"\x89PNG")


# -------------------------------------------------------------------------------------------------- notebook


def test_the_committed_notebook_has_no_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code_cells and all(not cell.outputs and cell.execution_count is None for cell in code_cells)


@pytest.fixture
def kernel(tmp_path, monkeypatch) -> str:
    """A kernel spec running this interpreter (the project's venv), found before any user-installed one."""
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec_dir / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": KERNEL_NAME, "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    # the kernel (started in notebooks/) imports the echomask under test, wherever this process found it
    package_root = str(Path(echomask.__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    return KERNEL_NAME


def execute_notebook(kernel: str, parameters: dict[str, str] | None = None) -> list[dict]:
    """Run the notebook (parameters replace `NAME = None` lines of its first code cell); returns all outputs."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    first = next(cell for cell in notebook.cells if cell.cell_type == "code")
    for name, value in (parameters or {}).items():
        assert f"{name} = None" in first.source
        first.source = first.source.replace(f"{name} = None", f"{name} = {value!r}")
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name=kernel,
        resources={"metadata": {"path": NOTEBOOK.parent}},  # the kernel runs in notebooks/, as under Jupyter
    )
    client.execute()
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]


def text_of(outputs: list[dict]) -> str:
    return "".join(output.get("text", "") for output in outputs if output["output_type"] == "stream")


def displayed(outputs: list[dict], mime: str) -> list:
    return [output["data"][mime] for output in outputs if mime in output.get("data", {})]


def test_the_notebook_shows_every_section(root, kernel, monkeypatch, test_sequences):
    monkeypatch.setenv(results.RESULTS_VARIABLE, str(root))
    outputs = execute_notebook(kernel, {"RUN": GENERATOR_RUN})
    text = text_of(outputs)
    assert "2 run(s)" in text and "skipped" not in text
    assert "FGD ×10⁻¹ ↓" in text and f"\n{EVALUATE_RUN} " in text and f"\n{GENERATOR_RUN} " in text
    assert re.search(r"^sequence +\| frames +\| BC", text, flags=re.MULTILINE)
    for sequence in test_sequences:
        assert re.search(f"^{sequence.id} +\\| {30 * GENERATED_SECONDS} ", text, flags=re.MULTILINE)
    assert len(displayed(outputs, "image/png")) == 3  # per-sequence bars, SQA plot, clip strip
    videos = displayed(outputs, "text/html")
    assert len(videos) == 1 and "<video" in videos[0] and f"{test_sequences[0].id}.mp4" in videos[0]


def run_cells_here(notebook_path: Path) -> str:
    """Run the notebook's code cells in this process (no kernel to start, torch already imported); returns what
    they print."""
    notebook = nbformat.read(notebook_path, as_version=4)
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        for index, cell in enumerate(notebook.cells):
            if cell.cell_type == "code":
                exec(compile(cell.source, f"{notebook_path.name}[{index}]", "exec"), namespace)
    return printed.getvalue()


def test_the_notebook_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv(results.RESULTS_VARIABLE, str(tmp_path / "empty"))
    text = run_cells_here(NOTEBOOK)
    assert "no runs under" in text
    assert text.count("skipped: ") == 4


def test_runs_are_picked_per_section_by_what_they_hold(root):
    runs = results.find_runs(root)
    assert results.metric_runs(runs) == [root / EVALUATE_RUN, root / GENERATOR_RUN]
    assert results.generated_runs(runs) == [root / GENERATOR_RUN]  # the ground-truth run has no generated files


# ---------------------------------------------------------------------------------------- on real outputs


def paper_cells(result: dict) -> list[str]:
    """The metric table's cells of a run: its paper-scale values with 3 decimals, in the table's order."""
    return [f"{result['paper_scale'][key]:.3f}" for key in PAPER_SCALE if key in result["paper_scale"]]


@pytest.mark.e2e
def test_the_notebook_shows_a_real_test_and_generate_run(pipeline_outputs, kernel, monkeypatch):
    """`make demo`'s outputs (a real `echomask test` and `echomask generate`, tiny): no cell fails, nothing is
    skipped, and the metric table holds the test run's row with the values of its metrics.json."""
    monkeypatch.setenv(results.RESULTS_VARIABLE, str(pipeline_outputs))
    test_run, generate_run = pipeline_outputs / "generator" / "test", pipeline_outputs / "demo"
    outputs = execute_notebook(kernel)  # raises on the first cell error
    text = text_of(outputs)
    assert "2 run(s)" in text and "skipped" not in text
    row = next(line for line in text.splitlines() if line.startswith(f"{test_run.name} "))
    result = results.load_metrics(test_run)
    assert result["metrics"].keys() >= {"fgd", "bc", "l1div", "face_mse"}
    for cell in paper_cells(result):
        assert cell in row, (cell, row)
    for seq_id in result["per_sequence"]:
        assert re.search(f"^{seq_id} +\\| {result['per_sequence'][seq_id]['frames']} ", text, flags=re.MULTILINE)
    assert len(displayed(outputs, "image/png")) == 3  # per-sequence bars, SQA plot, clip strip
    videos = displayed(outputs, "text/html")
    assert len(videos) == 1 and f"{generate_run.name}/talk.mp4" in videos[0]
    arms = result["sections"]["motion_statistics"]["arms_speed_ratio"]
    assert re.search(rf"^arms angular speed \(rad/frame\) .*\| {arms:.2f}$", text, flags=re.MULTILINE)
    for seq_id in result["per_sequence"]:
        assert re.search(f"^  {seq_id} +x .* (ok|DRIFTS)$", text, flags=re.MULTILINE)
