"""The `echomask` command line (SPEC §2).

`fit|validate|test|predict` are LightningCLI's subcommands (configs in `experiments/`, omegaconf
interpolation on). The other subcommands are plain argparse programs. Every error a user can cause
(bad file, bad config value) ends the program with a one-line reason and exit status 2.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")

log = logging.getLogger("echomask")


def run_lightning_cli(args: list[str]) -> int:
    """Run LightningCLI on `args` (the subcommand first). Model and data classes come from the config."""
    import jsonargparse
    import lightning.pytorch as pl
    from lightning.pytorch.cli import LightningCLI

    # Configs interpolate across sections with absolute paths such as ${model.init_args.part}.
    jsonargparse.set_parsing_settings(omegaconf_absolute_to_relative_paths=True)

    LightningCLI(
        model_class=pl.LightningModule,
        datamodule_class=pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        parser_kwargs={"parser_mode": "omegaconf+"},
        save_config_kwargs={"overwrite": True},
        args=args,
    )
    return 0


def synth_data(options: argparse.Namespace) -> int:
    """Write the synthetic BEAT2-format corpus (SPEC §4.6)."""
    from echomask.data.synthetic import write_synthetic_corpus

    root = write_synthetic_corpus(
        Path(options.out),
        num_speakers=options.speakers,
        sequences_per_speaker=options.sequences_per_speaker,
        seconds_per_sequence=options.seconds,
        seed=options.seed,
    )
    print(f"synthetic BEAT2-format corpus written to {root}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="echomask",
        description="EchoMask co-speech motion generation. "
        f"Lightning subcommands: {', '.join(LIGHTNING_COMMANDS)} (see `echomask fit --help`).",
    )
    commands = parser.add_subparsers(dest="command", metavar="command")

    synth = commands.add_parser("synth-data", help="write the synthetic BEAT2-format corpus")
    synth.add_argument("--out", default="data/synthetic", help="output folder (default: data/synthetic)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--speakers", type=int, default=2, help="number of speakers")
    synth.add_argument("--sequences-per-speaker", type=int, default=8)
    synth.add_argument("--seconds", type=float, default=20.0, help="motion length of each sequence")
    synth.set_defaults(run=synth_data)

    from echomask.evaluation import add_evaluate_arguments, evaluate_command
    from echomask.generate import add_generate_arguments, generate_command

    evaluate = commands.add_parser("evaluate", help="test-split metrics of generated motion (or of the ground truth)")
    add_evaluate_arguments(evaluate)
    evaluate.set_defaults(run=evaluate_command)

    generate = commands.add_parser("generate", help="SMPL-X motion (npz) and a video for any audio file")
    add_generate_arguments(generate)
    generate.set_defaults(run=generate_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if argv and argv[0] in LIGHTNING_COMMANDS:
        return run_lightning_cli(argv)
    parser = build_parser()
    options = parser.parse_args(argv)
    if options.command is None:
        parser.print_help()
        return 2
    try:
        return options.run(options)
    except (ValueError, FileNotFoundError, OSError) as error:
        print(f"echomask {options.command}: error: {error}", file=sys.stderr)
        return 2
