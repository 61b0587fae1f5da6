"""The experiment configs the benchmarks measure: the YAML files `make train-*` and `make demo` use.

Sizes: "paper" is a stage's config alone (paper sizes), "tiny" adds its `experiments/demo/` overlay,
in the order the Makefile applies them. The configs' data settings are kept except what must point
at the benchmark workspace (corpus, cache, HuBERT: the tiny random one, since training reads cached
features and their values do not change a step's cost).
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from echomask.lit.generator_module import rvqvae_arguments, translation_arguments
from echomask.motion.parts import PART_NAMES

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"
SIZES = ("tiny", "paper")


@dataclass(frozen=True)
class StageConfig:
    """files: the paper config files in order; tiny_overlay: the demo file inserted after the first one."""

    files: tuple[str, ...]
    tiny_overlay: str

    def paths(self, size: str) -> list[Path]:
        if size not in SIZES:
            raise ValueError(f"unknown size {size!r}; choose one of {SIZES}")
        names = list(self.files)
        if size == "tiny":
            names.insert(1, self.tiny_overlay)
        return [EXPERIMENTS / name for name in names]


STAGES = {
    **{
        f"vqvae-{part}": StageConfig(("vqvae/base.yaml", f"vqvae/{part}.yaml"), "demo/vqvae.yaml")
        for part in PART_NAMES
    },
    "translation": StageConfig(("vqvae/base.yaml", "vqvae/translation.yaml"), "demo/vqvae.yaml"),
    "evaluator": StageConfig(("evaluator.yaml",), "demo/evaluator.yaml"),
    "generator": StageConfig(("generator.yaml",), "demo/generator.yaml"),
}


def load_config(stage: str, size: str, overrides: dict | None = None) -> dict:
    """The merged, interpolation-resolved config of `stage` at `size`, with dotted-key `overrides` applied
    before resolving (so interpolations see them)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {sorted(STAGES)}")
    paths = STAGES[stage].paths(size)
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"config file(s) of {stage} ({size}) not found: {missing}")
    config = OmegaConf.create()
    for path in paths:
        layer = OmegaConf.load(path)
        _drop_arguments_of_replaced_class(config, layer)
        config = OmegaConf.merge(config, layer)
    for key, value in (overrides or {}).items():
        OmegaConf.update(config, key, value, merge=False)
    return OmegaConf.to_container(config, resolve=True)


def _class(class_path: str) -> type:
    module_name, _, class_name = class_path.rpartition(".")
    return getattr(importlib.import_module(module_name), class_name)


def _drop_arguments_of_replaced_class(config, layer) -> None:
    """Where `layer` replaces the model class, keep only the earlier init_args the new class accepts
    (as LightningCLI does, e.g. vqvae/base.yaml's `part` when vqvae/translation.yaml switches to
    TranslationModule)."""
    old_path = OmegaConf.select(config, "model.class_path")
    new_path = OmegaConf.select(layer, "model.class_path")
    if old_path is None or new_path is None or old_path == new_path:
        return
    accepted = inspect.signature(_class(new_path)).parameters
    arguments = OmegaConf.to_container(config.model.get("init_args", {}), resolve=False)
    kept = {name: value for name, value in arguments.items() if name in accepted}
    OmegaConf.update(config, "model.init_args", kept, merge=False)


def instantiate(spec: dict, **extra):
    """Build `{"class_path": "pkg.mod.Class", "init_args": {...}}` (LightningCLI's layout); `extra` adds arguments."""
    return _class(spec["class_path"])(**{**spec.get("init_args", {}), **extra})


def workspace_data_overrides(workspace, batch_size: int | None = None) -> dict:
    """Dotted-key overrides that point a config's data module at the benchmark workspace."""
    overrides = {
        "data.init_args.root": str(workspace.corpus),
        "data.init_args.cache_dir": str(workspace.cache),
        "data.init_args.speakers": None,
        "data.init_args.num_workers": 0,
        "data.init_args.hubert": "tiny-random",
    }
    if batch_size is not None:
        overrides["data.init_args.batch_size"] = batch_size
    return overrides


def stage1_architectures(size: str) -> dict[str, dict]:
    """What `GeneratorModule(stage1_hparams=...)` takes: the stage-1 architectures of the `size` configs
    (randomly initialised models are built from them; no checkpoint is read)."""
    architectures = {}
    for name in (*PART_NAMES, "translation"):
        stage = name if name == "translation" else f"vqvae-{name}"
        module = instantiate(load_config(stage, size)["model"])
        hparams = dict(module.hparams)
        if name == "translation":
            architectures[name] = translation_arguments(hparams)
        else:
            architectures[name] = rvqvae_arguments(hparams, name)
    return architectures


def generator_overrides(size: str) -> dict:
    """Model overrides that make a generator config buildable without files: stage 1 from its configs,
    no FGD encoder (only validation reads it)."""
    return {
        "model.init_args.stage1_hparams": stage1_architectures(size),
        "model.init_args.fgd_checkpoint": "none",
    }
