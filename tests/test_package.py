"""The package's structure (issue 13): no import cycle, even through imports inside functions; nothing but the
console entry point imports the CLI; every module imports on its own; `echomask demo` runs the stage table."""
from __future__ import annotations

import ast
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest

import echomask
from echomask.demo import TEST_OUTPUTS, demo_command, demo_steps
from echomask.stages import STAGES

PACKAGE = Path(echomask.__file__).resolve().parent
ENTRY_POINT = "echomask.__main__"


def module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


MODULES = module_names()


def imported_modules(name: str) -> set[str]:
    """The echomask modules `name` imports anywhere in its file (inside functions too)."""
    path = PACKAGE.parent.joinpath(*name.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {module for module in found if module in MODULES and module != name}


GRAPH = {name: imported_modules(name) for name in MODULES}


def test_no_import_cycle_even_through_function_level_imports():
    visiting, done, cycles = [], set(), []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            cycles.append(visiting[visiting.index(name):] + [name])
            return
        visiting.append(name)
        for imported in sorted(GRAPH[name]):
            visit(imported)
        visiting.pop()
        done.add(name)

    for name in MODULES:
        visit(name)
    assert not cycles, cycles


def test_only_the_console_entry_point_imports_the_cli():
    importers = sorted(name for name, imported in GRAPH.items() if "echomask.cli" in imported)
    assert importers == [ENTRY_POINT]


def test_every_module_imports_in_reverse_order():
    """One fresh interpreter imports every module, the deepest names first."""
    modules = sorted((name for name in MODULES if name != ENTRY_POINT), reverse=True)  # __main__ runs the CLI
    script = f"import importlib\nfor name in {modules!r}:\n    importlib.import_module(name)\n"
    finished = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]


def test_the_demo_runs_every_stage_of_the_table_then_test_and_generate(tmp_path, synthetic_corpus, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the demo reads outputs/ relative to the working directory: none here
    data_root = synthetic_corpus.parent  # holds beat_english_v2.0.0/: the demo writes no corpus there
    steps = demo_steps(str(data_root), "speech.wav", str(tmp_path / "out"))
    generator = STAGES["generator"]
    stage_names = list(STAGES)
    before_generator = stage_names.index("generator")
    expected = [*stage_names[:before_generator], "stage-1 round trip", *stage_names[before_generator:]]
    assert [name for name, _ in steps] == [*expected, "test metrics", "generate"]
    assert steps[before_generator][1][:3] == ["round-trip", "--data-root", str(data_root)]
    training = [step for step in steps if step[0] in STAGES]
    for (name, arguments), entry in zip(training, STAGES.values()):
        assert arguments == ["fit", *entry.config_arguments("tiny"), "--data.root", str(data_root)], name
    assert steps[-2][1][-2:] == ["--ckpt_path", generator.checkpoint]
    assert steps[-1][1][steps[-1][1].index("--ckpt") + 1] == generator.checkpoint

    ran = []
    options = Namespace(data_root=str(data_root), audio="speech.wav", out=str(tmp_path / "out"), seed=0)
    assert demo_command(options, run=lambda arguments: ran.append(arguments) or 0) == 0
    assert ran == [arguments for _, arguments in steps]
    printed = capsys.readouterr().out
    assert "demo finished" in printed and f"skipped: no {TEST_OUTPUTS}/metrics.json" in printed  # nothing really ran

    ran.clear()
    assert demo_command(options, run=lambda arguments: ran.append(arguments) or (2 if len(ran) == 3 else 0)) == 2
    assert len(ran) == 3 and "failed (exit status 2)" in capsys.readouterr().out


@pytest.mark.parametrize("query, expected", [(["names", "--stage1"], "face upper hands lower translation"),
                                             (["checkpoint", "upper"], "logs/vqvae/upper/checkpoints/last.ckpt")])
def test_the_stage_table_answers_the_makefile(query, expected):
    finished = subprocess.run([sys.executable, "-m", "echomask.stages", *query], capture_output=True, text=True)
    assert finished.returncode == 0 and finished.stdout.strip() == expected


def test_echomask_stages_prints_the_table_and_refuses_unknown_stages_in_one_line(capsys):
    from echomask.cli import main

    assert main(["stages", "configs", "generator", "--size", "tiny"]) == 0
    assert capsys.readouterr().out.split() == STAGES["generator"].config_arguments("tiny")
    assert main(["stages"]) == 0
    table = capsys.readouterr().out
    assert all(entry.checkpoint in table for entry in STAGES.values())
    assert main(["stages", "checkpoint", "tail"]) == 2
    assert "echomask stages: error: unknown stage 'tail'" in capsys.readouterr().err
