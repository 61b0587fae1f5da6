"""Every YAML config in experiments/ belongs to a stage of the stage table (`echomask.stages`), and every stage
composes at both sizes through LightningCLI as `echomask fit` composes it (`echomask.lightning_cli.compose`: the
model, data module and trainer with its logger and callbacks are built, nothing is trained).

Nothing but the table names a stage's config files: a YAML file outside it, or a config path written into the
Makefile or bench/, fails a test here.
"""
from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from echomask.lightning_cli import compose
from echomask.lit.callbacks import RNGStateCheckpoint
from echomask.lit.translation_module import TranslationModule
from echomask.lit.vqvae_module import VQVAEModule
from echomask.motion.parts import PART_NAMES
from echomask.stages import SIZES, STAGE1_MODELS, STAGES, stage

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"
CASES = [(name, size) for name in STAGES for size in SIZES]


def owned_files() -> set[str]:
    return {
        path
        for entry in STAGES.values()
        for size in SIZES
        for options in ((), tuple(name for name, _ in entry.options))
        for path in entry.config_files(size, options=options)
    }


def test_the_stage_table_owns_every_config_file():
    on_disk = {str(path.relative_to(REPO)) for path in EXPERIMENTS.rglob("*.yaml")}
    assert on_disk == owned_files(), "every experiments/ YAML file belongs to a stage of echomask.stages"


def test_the_makefile_and_bench_name_no_config_file():
    sources = [REPO / "Makefile", *sorted((REPO / "bench").glob("*.py"))]
    named = {(path.name, name) for path in sources for name in re.findall(r"experiments/\S+?\.yaml", path.read_text())}
    assert not named, f"config files named outside the stage table: {sorted(named)}"


def test_the_stage1_models_are_the_body_parts_and_the_translation():
    assert STAGE1_MODELS == (*PART_NAMES, "translation")
    assert [entry.stage1_model for entry in STAGES.values() if entry.stage1_model] == list(STAGE1_MODELS)
    assert stage("upper") is STAGES["vqvae-upper"] and stage("translation") is STAGES["translation"]
    with pytest.raises(ValueError, match="unknown stage 'tail'"):
        stage("tail")
    with pytest.raises(ValueError, match="unknown size"):
        STAGES["generator"].config_files("huge")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """`built(name, size)`: the composed LightningCLI of a stage, built once per module in a scratch working folder.

    One folder per size holds untrained stage-1 checkpoints of that size at the table's paths, which the
    generator config reads when its model is built.
    """
    folders = {size: tmp_path_factory.mktemp(size) for size in SIZES}
    cache: dict[tuple[str, str], object] = {}

    def get(name: str, size: str):
        if (name, size) not in cache:
            with pytest.MonkeyPatch.context() as patch:
                patch.chdir(folders[size])
                cache[name, size] = compose(stage(name).config_arguments(size, root=REPO))
        return cache[name, size]

    for size, folder in folders.items():
        for name in STAGE1_MODELS:
            module = get(name, size).model
            path = folder / stage(name).checkpoint
            path.parent.mkdir(parents=True)
            torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    return get


@pytest.mark.parametrize("name, size", CASES, ids=[f"{name}-{size}" for name, size in CASES])
def test_stage_composes_and_fit_leaves_its_checkpoint_where_the_table_says(built, name, size):
    cli = built(name, size)
    assert isinstance(cli.model, pl.LightningModule)
    assert isinstance(cli.datamodule, pl.LightningDataModule)
    assert isinstance(cli.trainer, pl.Trainer)
    (checkpointing,) = [callback for callback in cli.trainer.callbacks if isinstance(callback, ModelCheckpoint)]
    # an explicit dirpath is made absolute (under the scratch folder the stage was composed in)
    last = (Path(checkpointing.dirpath or Path(cli.trainer.logger.log_dir) / "checkpoints") / "last.ckpt").as_posix()
    assert checkpointing.save_last and f"/{last}".endswith(f"/{stage(name).checkpoint}"), last


@pytest.mark.parametrize("size", SIZES)
def test_the_generator_takes_the_data_modules_speech_settings(built, size):
    cli = built("generator", size)
    assert cli.model.speech == cli.datamodule.speech
    assert cli.model.speech.hubert == ("signal" if size == "tiny" else "facebook/hubert-large-ls960-ft")


@pytest.mark.parametrize("part", STAGE1_MODELS)
def test_stage1_configs_build_the_part(built, part):
    cli = built(part, "paper")
    if part == "translation":
        assert isinstance(cli.model, TranslationModule)
    else:
        assert isinstance(cli.model, VQVAEModule) and cli.model.part == part
    assert any(isinstance(callback, RNGStateCheckpoint) for callback in cli.trainer.callbacks)
    assert cli.model.hparams.smplx_model_dir == cli.datamodule.hparams.smplx_model_dir


@pytest.mark.parametrize("part", PART_NAMES)
def test_stage1_paper_sizes_and_tiny_sizes(built, part):
    paper = built(part, "paper").model
    # SPEC §5.1: 6 layers of 256 codes × 256 dims, width 256, 64 frames -> 16 tokens
    quantizer = paper.model.quantizer
    assert (quantizer.num_quantizers, quantizer.codebook_size, quantizer.code_dim) == (6, 256, 256)
    assert paper.model.frames_per_token == 4 and quantizer.quantizer_dropout == 0.2
    tiny = built(part, "tiny").model
    assert tiny.part == part
    paper_size, tiny_size = (sum(p.numel() for p in m.parameters()) for m in (paper, tiny))
    assert tiny_size < paper_size / 4


@pytest.mark.parametrize("name", STAGES)
def test_tiny_overlays_shrink_the_budget(built, name):
    assert built(name, "tiny").trainer.max_epochs < built(name, "paper").trainer.max_epochs


def test_composing_from_another_command_gives_no_lightning_warning(monkeypatch):
    """`echomask demo` runs every stage in-process: LightningCLI must not warn that `sys.argv` holds other
    arguments than the ones it is given."""
    monkeypatch.setattr(sys, "argv", ["echomask", "demo"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compose(stage("upper").config_arguments("tiny", root=REPO))
    assert not [warning for warning in caught if "args parameter" in str(warning.message)]
    assert sys.argv == ["echomask", "demo"]


@pytest.mark.parametrize("part", PART_NAMES)
def test_the_release_option_composes_with_the_release_rules(part, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = compose(stage(part).config_arguments("paper", root=REPO, options=("release",))).model
    assert model.model.quantizer.quantizer_dropout == 0.0
    with pytest.raises(ValueError, match="has no option 'fast'"):
        stage(part).config_files(options=("fast",))


@pytest.mark.parametrize("part", PART_NAMES)
def test_stage1_input_normalisation_is_off_at_paper_size_and_on_in_the_demo_except_for_the_face(built, part):
    assert built(part, "paper").model.model.normalize is False  # the release
    assert built(part, "tiny").model.model.normalize is (part != "face")
