"""Every YAML config in experiments/ parses and instantiates through the `echomask` CLI (SPEC §2, §3).

Configs are used in compositions, as the Makefile passes them:
- stage 1: experiments/vqvae/base.yaml [+ experiments/demo/vqvae.yaml] + experiments/vqvae/<part>.yaml;
- any other stage S: experiments/S.yaml [+ experiments/demo/S.yaml]; a demo file with its own
  `model.class_path` is a whole config and is also tried alone.
A YAML file that no composition uses fails the test, so a new config cannot go untested.

Each composition goes through `echomask.cli.run_lightning_cli` with LightningCLI's `run=False`:
the model, data module and trainer (logger, callbacks) are built, nothing is trained.
"""
from __future__ import annotations

import sys
from pathlib import Path

import lightning.pytorch as pl
import lightning.pytorch.cli
import pytest
import torch
import yaml

from echomask.cli import run_lightning_cli
from echomask.lit.callbacks import RNGStateCheckpoint
from echomask.lit.translation_module import TranslationModule
from echomask.lit.vqvae_module import VQVAEModule
from echomask.motion.parts import PART_NAMES

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"
STAGE1_DIR = EXPERIMENTS / "vqvae"
DEMO_DIR = EXPERIMENTS / "demo"
STAGE1_PARTS = (*PART_NAMES, "translation")


def is_whole_config(path: Path) -> bool:
    """Whether a YAML file names its model class itself (usable alone, not only as an overlay)."""
    model = (yaml.safe_load(path.read_text()) or {}).get("model") or {}
    return "class_path" in model


def stage1_composition(part: str, demo: bool) -> tuple[Path, ...]:
    demo_files = (DEMO_DIR / "vqvae.yaml",) if demo else ()
    return (STAGE1_DIR / "base.yaml", *demo_files, STAGE1_DIR / f"{part}.yaml")


def compositions() -> list[tuple[Path, ...]]:
    """Every config composition of experiments/, as lists of files in `--config` order."""
    found: list[tuple[Path, ...]] = []
    for part in STAGE1_PARTS:
        found.append(stage1_composition(part, demo=False))
        if (DEMO_DIR / "vqvae.yaml").exists():
            found.append(stage1_composition(part, demo=True))
        if part != "translation":  # the release's training rules, an overlay of the part RVQ-VAEs
            found.append((*stage1_composition(part, demo=False), STAGE1_DIR / "release.yaml"))
    for stage in sorted(EXPERIMENTS.glob("*.yaml")):
        found.append((stage,))
        demo = DEMO_DIR / stage.name
        if demo.exists():
            found.append((stage, demo))
            if is_whole_config(demo):
                found.append((demo,))
    return found


COMPOSITIONS = compositions()


def composition_id(files: tuple[Path, ...]) -> str:
    return "+".join(str(path.relative_to(EXPERIMENTS)) for path in files)


def test_every_yaml_file_is_in_a_composition():
    used = {path for files in COMPOSITIONS for path in files}
    unused = sorted(str(path.relative_to(REPO)) for path in EXPERIMENTS.rglob("*.yaml") if path not in used)
    assert not unused, f"configs no composition uses (add a rule to tests/test_configs.py): {unused}"
    assert all(path.exists() for path in used), "a composition names a file that does not exist"


def build_cli(files: tuple[Path, ...], *options: str) -> lightning.pytorch.cli.LightningCLI:
    """`run_lightning_cli` on `--config` files with LightningCLI's run=False; returns the LightningCLI object."""
    created = []

    class NotRunningCLI(lightning.pytorch.cli.LightningCLI):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "run": False})
            created.append(self)

    args = [argument for path in files for argument in ("--config", str(path))]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lightning.pytorch.cli, "LightningCLI", NotRunningCLI)
        patch.setattr(sys, "argv", ["echomask"])
        assert run_lightning_cli([*args, *options]) == 0
    return created[-1]


def is_demo(files: tuple[Path, ...]) -> bool:
    return any(path.parent == DEMO_DIR for path in files)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """`built(files)`: the LightningCLI of a composition, built once per module in a scratch working folder.

    Two folders, one for the demo compositions and one for the paper ones, hold untrained stage-1 checkpoints
    of the matching sizes at the paths `make train-vqvae` writes (logs/vqvae/<name>/checkpoints/last.ckpt),
    which stage-2 configs read when their model is built.
    """
    folders = {demo: tmp_path_factory.mktemp("demo" if demo else "paper") for demo in (True, False)}
    cache: dict[tuple[Path, ...], lightning.pytorch.cli.LightningCLI] = {}

    def get(files: tuple[Path, ...]) -> lightning.pytorch.cli.LightningCLI:
        if files not in cache:
            with pytest.MonkeyPatch.context() as patch:
                patch.chdir(folders[is_demo(files)])
                cache[files] = build_cli(files)
        return cache[files]

    for demo, folder in folders.items():
        for name in STAGE1_PARTS:
            module = get(stage1_composition(name, demo=demo)).model
            path = folder / "logs" / "vqvae" / name / "checkpoints" / "last.ckpt"
            path.parent.mkdir(parents=True)
            torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    return get


@pytest.mark.parametrize("files", COMPOSITIONS, ids=composition_id)
def test_config_instantiates(built, files):
    cli = built(files)
    assert isinstance(cli.model, pl.LightningModule)
    assert isinstance(cli.datamodule, pl.LightningDataModule)
    assert isinstance(cli.trainer, pl.Trainer)


@pytest.mark.parametrize("part", STAGE1_PARTS)
def test_stage1_configs_build_the_part_and_log_where_stage_2_reads(built, part):
    cli = built(stage1_composition(part, demo=False))
    if part == "translation":
        assert isinstance(cli.model, TranslationModule)
    else:
        assert isinstance(cli.model, VQVAEModule) and cli.model.part == part
    # interfaces: logs/vqvae/<part>/checkpoints/last.ckpt
    assert Path(cli.trainer.logger.log_dir) == Path("logs/vqvae") / part
    assert any(isinstance(callback, RNGStateCheckpoint) for callback in cli.trainer.callbacks)
    assert cli.model.hparams.smplx_model_dir == cli.datamodule.hparams.smplx_model_dir


@pytest.mark.parametrize("part", PART_NAMES)
def test_stage1_paper_sizes_and_tiny_demo_sizes(built, part):
    paper = built(stage1_composition(part, demo=False)).model
    # SPEC §5.1: 6 layers of 256 codes × 256 dims, width 256, 64 frames -> 16 tokens
    quantizer = paper.model.quantizer
    assert (quantizer.num_quantizers, quantizer.codebook_size, quantizer.code_dim) == (6, 256, 256)
    assert paper.model.frames_per_token == 4 and quantizer.quantizer_dropout == 0.2
    demo = built(stage1_composition(part, demo=True)).model
    assert demo.part == part
    paper_size, demo_size = (sum(p.numel() for p in m.parameters()) for m in (paper, demo))
    assert demo_size < paper_size / 4


@pytest.mark.parametrize(
    "files",
    [files for files in COMPOSITIONS if len(files) > 1 and is_demo(files)],
    ids=composition_id,
)
def test_demo_overlays_shrink_the_budget(built, files):
    full = tuple(path for path in files if path.parent != DEMO_DIR)
    assert built(files).trainer.max_epochs < built(full).trainer.max_epochs
