"""The `echomask` command line (SPEC §2): the console entry point.

`fit|validate|test|predict` are LightningCLI's subcommands (`echomask.lightning_cli`: configs in
`experiments/`, omegaconf interpolation on). The other subcommands are plain argparse programs, each
defined in its own module; `echomask demo` gets this module's `main` as the runner of its stages.

Every error a user can cause (a missing or malformed config, checkpoint, corpus or audio file, a
bad config value) ends the program with exit status 2 and ONE line on stderr,
`echomask <command>: error: <file>: <problem>`, never a traceback or a usage dump: config problems
come from `echomask.lightning_cli` as `ConfigError`s that name the file or option at fault, and
`ValueError`s and `OSError`s (our domain errors, e.g. `BEAT2FormatError`, `AudioError`,
`CheckpointError`, `FileNotFoundError`) raised while a command runs are printed as one line.

Set the environment variable `ECHOMASK_DEBUG=1` to get the full traceback instead.
`--help` is untouched.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from echomask.lightning_cli import USER_ERRORS, ConfigError, one_line, run_lightning_cli

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
DEBUG_VARIABLE = "ECHOMASK_DEBUG"
ERROR_STATUS = 2

log = logging.getLogger("echomask")


# ---------------------------------------------------------------------------------------- other commands


def synth_data(options: argparse.Namespace) -> int:
    """Write the synthetic BEAT2-format corpus (SPEC §4.6)."""
    from echomask.data.synthetic import write_synthetic_corpus

    root = write_synthetic_corpus(
        Path(options.out),
        num_speakers=options.speakers,
        sequences_per_speaker=options.sequences_per_speaker,
        seconds_per_sequence=options.seconds,
        val_per_speaker=options.val_per_speaker,
        test_per_speaker=options.test_per_speaker,
        seed=options.seed,
    )
    print(f"synthetic BEAT2-format corpus written to {root}")
    return 0


def run_generate(options: argparse.Namespace) -> int:
    """`echomask generate`, with an existing checkpoint verified first (Lightning's loader reports a truncated
    file as an internal zip error); a missing one is left to the command, whose message says how to train one."""
    from echomask.checkpoints import verify_checkpoint_file
    from echomask.generate import generate_command

    if Path(options.ckpt).exists():
        verify_checkpoint_file(options.ckpt)
    return generate_command(options)


def run_stages(options: argparse.Namespace) -> int:
    """`echomask stages`: the stage table, or one stage's configs or checkpoint; an unknown stage or size is a
    config error (named in one line)."""
    from echomask.stages import stages_command

    try:
        return stages_command(options)
    except ValueError as error:
        raise ConfigError(one_line(error)) from error


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="echomask",
        description="EchoMask co-speech motion generation. "
        f"Lightning subcommands: {', '.join(LIGHTNING_COMMANDS)} (see `echomask fit --help`).",
        epilog=f"Errors are reported in one line; set {DEBUG_VARIABLE}=1 for the full traceback.",
    )
    commands = parser.add_subparsers(dest="command", metavar="command")

    synth = commands.add_parser("synth-data", help="write the synthetic BEAT2-format corpus")
    synth.add_argument("--out", default="data/synthetic", help="output folder (default: data/synthetic)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--speakers", type=int, default=2, help="number of speakers")
    synth.add_argument("--sequences-per-speaker", type=int, default=8)
    synth.add_argument("--seconds", type=float, default=20.0, help="motion length of each sequence")
    synth.add_argument("--val-per-speaker", type=int, default=1, help="recordings per speaker in the val split")
    synth.add_argument("--test-per-speaker", type=int, default=1, help="recordings per speaker in the test split")
    synth.set_defaults(run=synth_data)

    from echomask.evaluation import add_evaluate_arguments, evaluate_command
    from echomask.generate import add_generate_arguments

    evaluate = commands.add_parser("evaluate", help="test-split metrics of generated motion (or of the ground truth)")
    add_evaluate_arguments(evaluate)
    evaluate.set_defaults(run=evaluate_command)

    generate = commands.add_parser("generate", help="SMPL-X motion (npz) and a video for any audio file")
    add_generate_arguments(generate)
    generate.set_defaults(run=run_generate)

    from echomask.demo import add_demo_arguments, demo_command

    demo = commands.add_parser("demo", help="the whole pipeline on the synthetic corpus with the tiny configs")
    add_demo_arguments(demo)
    demo.set_defaults(run=lambda options: demo_command(options, run=main))

    from echomask.stages import add_stage_arguments

    stages = commands.add_parser("stages", help="the stage table: config files and checkpoint of every stage")
    add_stage_arguments(stages)
    stages.set_defaults(run=run_stages)

    from echomask.round_trip import add_round_trip_arguments, round_trip_command

    round_trip = commands.add_parser("round-trip", help="stage 1: test motion through the tokenizers and back, compared")
    add_round_trip_arguments(round_trip)
    round_trip.set_defaults(run=round_trip_command)

    from echomask.official.importer import add_import_official_arguments, import_official_command

    imports = commands.add_parser("import-official", help="the release's checkpoint files as echomask checkpoints")
    add_import_official_arguments(imports)
    imports.set_defaults(run=import_official_command)
    return parser


# ---------------------------------------------------------------------------------------- entry point


class CurrentStderrHandler(logging.StreamHandler):
    """A log handler writing to whatever `sys.stderr` is at the time (tests and notebooks replace it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        """Ignored: the stream is always the current `sys.stderr`."""


def show_package_logs() -> None:
    """Print echomask's INFO messages on stderr (Lightning prints its own; a root handler would repeat them)."""
    if not log.handlers:
        handler = CurrentStderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def debug_requested() -> bool:
    """Whether `ECHOMASK_DEBUG` asks for full tracebacks (any value but empty, 0, false, no)."""
    return os.environ.get(DEBUG_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def error_line(command: str | None, error: BaseException) -> str:
    """`echomask <command>: error: <message>` on one line.

    Errors about a named file (ours, and FileNotFoundError) speak for themselves; any other error may
    be a bug, so the line says how to get its traceback.
    """
    from echomask.audio.io import AudioError
    from echomask.checkpoints import CheckpointError
    from echomask.data.beat2 import BEAT2FormatError

    message = one_line(error) or type(error).__name__
    if not isinstance(error, (ConfigError, CheckpointError, BEAT2FormatError, AudioError, FileNotFoundError)):
        message = f"{type(error).__name__}: {message} ({DEBUG_VARIABLE}=1 shows the traceback)"
    program = f"echomask {command}" if command else "echomask"
    return f"{program}: error: {message}"


def _run_command(arguments: list[str]) -> int:
    if arguments and arguments[0] in LIGHTNING_COMMANDS:
        return run_lightning_cli(arguments)
    parser = build_parser()
    options = parser.parse_args(arguments)
    if options.command is None:
        parser.print_help()
        return ERROR_STATUS
    return options.run(options)


def main(argv: list[str] | None = None) -> int:
    """Run one `echomask` command; `argv` defaults to the process' command line. Returns the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    show_package_logs()
    try:
        return _run_command(arguments)
    except USER_ERRORS as error:
        if debug_requested():
            raise
        print(error_line(arguments[0] if arguments else None, error), file=sys.stderr)
        return ERROR_STATUS
