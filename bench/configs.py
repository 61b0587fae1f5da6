"""The experiment configs the benchmarks measure: each stage's config files from the stage table
(`echomask.stages`: "paper" sizes, "tiny" = with the stage's `experiments/demo/` overlay), composed by
LightningCLI itself (`echomask.lightning_cli.compose`), exactly as `echomask fit` would compose them.

The configs' settings are kept except what must point at the benchmark workspace (corpus, cache, workers and
the HuBERT: the tiny random one, since training reads cached features and their values do not change a step's
cost) and, for the generator, what would need files (stage 1 from its configs, no FGD encoder).
"""
from __future__ import annotations

import json

from echomask.lightning_cli import compose
from echomask.stages import STAGE1_MODELS, stage

SIZES = ("tiny", "paper")


def compose_stage(name: str, size: str, *options: str, instantiate: bool = True):
    """The LightningCLI (model, data module, trainer built; nothing run) of stage `name` at `size` with `options`;
    `instantiate=False`: only the parsed config (`.config`)."""
    return compose(stage(name).config_arguments(size), *options, instantiate=instantiate)


def workspace_options(workspace, batch_size: int | None = None, num_workers: int = 0) -> list[str]:
    """Options that point a config's data module at the benchmark workspace."""
    options = [
        "--data.root", str(workspace.corpus),
        "--data.cache_dir", str(workspace.cache),
        "--data.speakers", "null",
        "--data.num_workers", str(num_workers),
        "--data.speech.hubert", "tiny-random",
    ]  # fmt: skip
    if batch_size is not None:
        options += ["--data.batch_size", str(batch_size)]
    return options


def stage1_architectures(size: str) -> dict[str, dict]:
    """What `GeneratorModule(stage1_hparams=...)` takes: the stage-1 architectures of the `size` configs
    (randomly initialised models are built from them; no checkpoint is read)."""
    from echomask.lit.translation_module import translation_arguments
    from echomask.lit.vqvae_module import rvqvae_arguments

    architectures = {}
    for name in STAGE1_MODELS:
        hparams = dict(compose_stage(name, size).model.hparams)
        is_translation = name == "translation"
        architectures[name] = translation_arguments(hparams) if is_translation else rvqvae_arguments(hparams, name)
    return architectures


def generator_options(size: str) -> list[str]:
    """Model options that make a generator config buildable without files: stage 1 from its configs, no FGD
    encoder (only validation reads it)."""
    return [
        "--model.init_args.stage1_hparams", json.dumps(stage1_architectures(size)),
        "--model.init_args.fgd_checkpoint", "none",
    ]  # fmt: skip
