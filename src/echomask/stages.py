"""The one table of pipeline stages: which config files make up each stage and where its checkpoint lands.

A stage is trained by ``echomask fit`` with its config files in order (paper sizes); the tiny size inserts the
stage's overlay from ``experiments/demo/`` after the first file, as `make demo`, `SIZE=tiny` and the tests do.
The Makefile, `echomask demo`, the benchmarks (`bench/`) and the tests read this table; nothing else names a
stage's config files. Other code reads the checkpoint paths from here (the generator's stage-1 defaults, the
evaluator `echomask evaluate` falls back to, the generator `echomask generate` loads).

    python -m echomask.stages                          # the table
    python -m echomask.stages names [--stage1]         # the stage names (or the stage-1 model names)
    python -m echomask.stages configs NAME [--size S] [--option O]  # the --config arguments of a stage (S: paper
                                                       # or tiny; O: a named overlay, e.g. release)
    python -m echomask.stages checkpoint NAME          # where `echomask fit` leaves its last checkpoint

NAME is a stage name or a stage-1 model name (face, upper, hands, lower, translation). This module imports
nothing heavy, so the Makefile can ask it for every command line.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

EXPERIMENTS = PurePosixPath("experiments")
SIZES = ("paper", "tiny")
LAST_CHECKPOINT = "checkpoints/last.ckpt"  # what ModelCheckpoint(save_last=True) writes in a logger's folder


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline.

    name: the stage's name (also the benchmarks'). configs: its config files under experiments/, in --config
    order, at paper sizes. tiny_overlay: the file under experiments/ the tiny size inserts after the first config.
    log_dir: the logger folder of its runs, which holds checkpoints/last.ckpt. stage1_model: the stage-1 model it
    trains (None for the other stages). summary: what it trains. options: named overlays under experiments/ that a
    user may add after the stage's files (e.g. ``release``: the release's behaviour where echomask's default differs).
    """

    name: str
    configs: tuple[str, ...]
    tiny_overlay: str
    log_dir: str
    summary: str
    stage1_model: str | None = None
    options: tuple[tuple[str, str], ...] = ()

    def config_files(
        self, size: str = "paper", root: str | Path | None = None, options: tuple[str, ...] = ()
    ) -> list[str]:
        """The config files of the stage at ``size`` with the named ``options`` last: paths relative to the
        repository root, or under ``root``."""
        if size not in SIZES:
            raise ValueError(f"unknown size {size!r}; choose one of {SIZES}")
        known = dict(self.options)
        unknown = [option for option in options if option not in known]
        if unknown:
            raise ValueError(f"stage {self.name!r} has no option {unknown[0]!r}; its options: {list(known)}")
        names = list(self.configs)
        if size == "tiny":
            names.insert(1, self.tiny_overlay)
        names += [known[option] for option in options]
        paths = [EXPERIMENTS / name for name in names]
        return [str(path if root is None else Path(root) / path) for path in paths]

    def config_arguments(
        self, size: str = "paper", root: str | Path | None = None, options: tuple[str, ...] = ()
    ) -> list[str]:
        """``["--config", file, ...]`` for ``echomask fit|validate|test`` (files as in :meth:`config_files`)."""
        return [argument for path in self.config_files(size, root, options) for argument in ("--config", path)]

    @property
    def checkpoint(self) -> str:
        """The last checkpoint ``echomask fit`` writes (relative to the working folder)."""
        return str(PurePosixPath(self.log_dir) / LAST_CHECKPOINT)


def _stage1(model: str) -> Stage:
    what = "the global-translation model" if model == "translation" else f"the {model} RVQ-VAE"
    return Stage(
        name="translation" if model == "translation" else f"vqvae-{model}",
        configs=("vqvae/base.yaml", f"vqvae/{model}.yaml"),
        tiny_overlay="demo/vqvae.yaml",
        log_dir=f"logs/vqvae/{model}",
        summary=f"stage 1: {what} (SPEC §5)",
        stage1_model=model,
        # the translation model differs from the release only at test time (--model.init_args.test_contact)
        # single_layer: one quantizer instead of the residual stack (the paper's ablation; all four parts)
        options=() if model == "translation" else (("release", "vqvae/release.yaml"), ("single_layer", "vqvae/single_layer.yaml")),
    )


STAGE1_MODELS = ("face", "upper", "hands", "lower", "translation")  # the four body parts, then the translation

STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in (
        Stage(
            name="evaluator",
            configs=("evaluator.yaml",),
            tiny_overlay="demo/evaluator.yaml",
            log_dir="logs/evaluator",
            summary="the FGD feature extractor (SPEC §8.2)",
        ),
        *(_stage1(model) for model in STAGE1_MODELS),
        Stage(
            name="generator",
            configs=("generator.yaml",),
            tiny_overlay="demo/generator.yaml",
            log_dir="logs/generator",
            summary="stage 2: the speech-queried masked generator (SPEC §6)",
        ),
    )
}


def stage(name: str) -> Stage:
    """The stage called ``name`` (a stage name or a stage-1 model name)."""
    for candidate in STAGES.values():
        if name in (candidate.name, candidate.stage1_model):
            return candidate
    raise ValueError(f"unknown stage {name!r}; stages: {list(STAGES)}; stage-1 models: {list(STAGE1_MODELS)}")


def stage1_checkpoint(model: str) -> str:
    """Where ``echomask fit`` leaves the checkpoint of a stage-1 model (face, upper, hands, lower, translation)."""
    if model not in STAGE1_MODELS:
        raise ValueError(f"unknown stage-1 model {model!r}; known: {list(STAGE1_MODELS)}")
    return stage(model).checkpoint


def table() -> str:
    """The stages as text: name, checkpoint, paper configs, tiny overlay, what each trains."""
    lines = []
    for entry in STAGES.values():
        lines.append(f"{entry.name}: {entry.summary}")
        lines.append(f"  configs:    {' '.join(entry.config_files())}")
        lines.append(f"  tiny:       {' '.join(entry.config_files('tiny'))}")
        lines.append(f"  checkpoint: {entry.checkpoint}")
        for option, path in entry.options:
            lines.append(f"  option {option}: {EXPERIMENTS / path}")
    return "\n".join(lines)


def add_stage_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``python -m echomask.stages`` and ``echomask stages``."""
    queries = parser.add_subparsers(dest="query", metavar="query")
    names = queries.add_parser("names", help="the stage names, on one line")
    names.add_argument("--stage1", action="store_true", help="the stage-1 model names instead")
    configs = queries.add_parser("configs", help="the --config arguments of a stage")
    configs.add_argument("name", help="a stage or stage-1 model name")
    configs.add_argument("--size", default="paper", choices=SIZES, help="tiny: with the demo overlay")
    configs.add_argument("--option", action="append", default=[], help="a named overlay of the stage (repeatable)")
    checkpoint = queries.add_parser("checkpoint", help="where `echomask fit` leaves the stage's last checkpoint")
    checkpoint.add_argument("name", help="a stage or stage-1 model name")


def stages_command(options: argparse.Namespace) -> int:
    """Print what ``options.query`` asks for (the table without a query)."""
    if options.query is None:
        print(table())
    elif options.query == "names":
        print(" ".join(STAGE1_MODELS if options.stage1 else STAGES))
    elif options.query == "configs":
        print(" ".join(stage(options.name).config_arguments(options.size, options=tuple(options.option))))
    else:
        print(stage(options.name).checkpoint)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m echomask.stages", description=__doc__.split("\n\n")[0])
    add_stage_arguments(parser)
    options = parser.parse_args(argv)
    try:
        return stages_command(options)
    except ValueError as error:
        parser.error(str(error))


if __name__ == "__main__":
    raise SystemExit(main())
