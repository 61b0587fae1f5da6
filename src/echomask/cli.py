"""The `echomask` command line (SPEC §2).

`fit|validate|test|predict` are LightningCLI's subcommands (configs in `experiments/`, omegaconf
interpolation on). The other subcommands are plain argparse programs.

Every error a user can cause (a missing or malformed config, checkpoint, corpus or audio file, a
bad config value) ends the program with exit status 2 and ONE line on stderr,
`echomask <command>: error: <file>: <problem>`, never a traceback or a usage dump:

- config files are checked for YAML syntax before LightningCLI reads them, and LightningCLI's
  parser runs with `exit_on_error=False`, so its (multi-line) complaints come back as exceptions
  that :func:`describe_config_error` condenses and attributes to the file that set the bad key;
- a `ckpt_path` is loaded with :func:`echomask.checkpoints.load_checkpoint` before Lightning touches it;
- `ValueError`s and `OSError`s (our domain errors, e.g. `BEAT2FormatError`, `AudioError`,
  `CheckpointError`, `FileNotFoundError`) raised while a command runs are printed as one line.

Set the environment variable `ECHOMASK_DEBUG=1` to get the full traceback instead.
`--help` is untouched.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import yaml

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
DEBUG_VARIABLE = "ECHOMASK_DEBUG"
USER_ERRORS = (ValueError, OSError)  # FileNotFoundError is an OSError; our domain errors are ValueErrors
ERROR_STATUS = 2
CKPT_PATH_ALIASES = ("last", "best", "hpc")  # `ckpt_path` values Lightning resolves itself
MAX_VALUE_CHARS = 80  # how much of an offending value an error line quotes

log = logging.getLogger("echomask")


class ConfigError(ValueError):
    """A config file or option LightningCLI cannot use; the message names where it was set."""


# ---------------------------------------------------------------------------------------- config errors


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _shortened(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def config_file_arguments(command_line: list[str]) -> Iterator[tuple[int, str]]:
    """(position, value) of every `--config`/`-c` value in a LightningCLI command line."""
    for position, argument in enumerate(command_line):
        if argument in ("--config", "-c") and position + 1 < len(command_line):
            yield position + 1, command_line[position + 1]
        elif argument.startswith("--config="):
            yield position, argument.removeprefix("--config=")


def check_config_files(command_line: list[str]) -> None:
    """Check that every existing `--config` file is YAML with a mapping at the top level.

    A missing file is left to LightningCLI (a `--config` value may also be an inline YAML string),
    whose message names it. YAML syntax errors are caught here because LightningCLI's do not say
    which of several files they come from.
    """
    for _, value in config_file_arguments(command_line):
        path = Path(value)
        if not path.is_file():
            continue
        try:
            settings = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            raise ConfigError(f"{path}: not valid YAML ({_one_line(error.problem or error.context)}{where})") from error
        except (yaml.YAMLError, UnicodeDecodeError, OSError) as error:
            raise ConfigError(f"{path}: unreadable config ({_one_line(error)})") from error
        if settings is not None and not isinstance(settings, dict):
            raise ConfigError(f"{path}: expected a mapping of settings at the top level, got {type(settings).__name__}")


def _sets_key(settings: object, key: list[str]) -> bool:
    """Whether a config tree sets the dotted `key`; `init_args` levels may appear anywhere in the tree."""
    if not key:
        return True
    if not isinstance(settings, dict):
        return False
    if key[0] in settings and _sets_key(settings[key[0]], key[1:]):
        return True
    return "init_args" in settings and _sets_key(settings["init_args"], key)


def _without_init_args(dotted: str) -> list[str]:
    return [part for part in dotted.split(".") if part != "init_args"]


def setting_source(key: str, command_line: list[str]) -> str | None:
    """Where the last setting of the dotted `key` in a LightningCLI command line comes from.

    Returns the `--config` file or the `--option` that sets it (later ones override earlier ones),
    or None when neither does (a default, or a key given another way).
    """
    wanted = _without_init_args(key)
    config_positions = dict(config_file_arguments(command_line))
    for position in reversed(range(len(command_line))):
        argument = command_line[position]
        if position in config_positions:
            path = Path(config_positions[position])
            if path.is_file() and _sets_key(yaml.safe_load(path.read_text(encoding="utf-8")), wanted):
                return str(path)
        elif argument.startswith("--") and argument != "--config":
            option = argument[2:].split("=", 1)[0]
            given = _without_init_args(option)
            shorter = min(len(given), len(wanted))
            if given[:shorter] == wanted[:shorter]:  # `--model.lr` sets model.lr; `--model` sets all of model
                return f"--{option}"
    return None


_NOISE_LINES = (
    re.compile(r"Does not validate against any of the Union subtypes"),
    re.compile(r"Subtypes: "),
    re.compile(r"Errors:$"),
    re.compile(r"Given value type: "),
    re.compile(r"- Expected a <class 'NoneType'>$"),  # the `None` alternative of every Optional[...] option
)
_PARSER_KEY = re.compile(r'^Parser key "([^"]+)":\s*')
_CLASS_PATH = re.compile(r"class_path='([^']+)'")
_NAMED_KEYS = (  # how jsonargparse names the key at fault, outermost first
    re.compile(r'Parser key "([^"]+)"'),
    re.compile(r"[Oo]ption '([^']+)'"),
    re.compile(r'Key "([^"]+)" is not expected'),
)


def _condensed(details: str) -> str:
    """The lines of a jsonargparse error on one line, without the lists of Union alternatives."""
    parts: list[str] = []
    for line in details.splitlines():
        line = line.strip()
        if not line or any(noise.match(line) for noise in _NOISE_LINES):
            continue
        line = line.removeprefix("- ")
        if line.startswith("Given value: "):
            line = _shortened(line)
        parts.append(line if not parts else (" " if parts[-1].endswith(":") else "; ") + line)
    return "".join(parts)


def error_source(message: str, command_line: list[str]) -> str | None:
    """The `--config` file or `--option` that set the key a jsonargparse error `message` is about."""
    keys = [key for pattern in _NAMED_KEYS for key in pattern.findall(message)]
    for count in range(len(keys), 0, -1):  # the most specific key first: data.batch_size, then data
        source = setting_source(".".join(keys[:count]), command_line)
        if source is not None:
            return source
    return None


def describe_config_error(message: str, command_line: list[str]) -> str:
    """One line from jsonargparse's multi-line parse error `message`, naming the file that caused it.

    Lines that only list the alternatives of a Union type are dropped, a quoted value is shortened, and
    the offending key is looked up in the `--config` files and options of `command_line`
    (:func:`error_source`).
    """
    key_match = _PARSER_KEY.match(message)
    key = key_match.group(1) if key_match else None
    text = _condensed(message[key_match.end():] if key_match else message)
    if key == "config":
        return f"--config: {text}"
    source = error_source(message, command_line)
    if source is None:
        return f"{key}: {text}" if key else text
    if source.startswith("--") or key is None:  # an option names the key itself
        return f"{source}: {text}"
    return f"{source}: {key}: {text}"


# ---------------------------------------------------------------------------------------- Lightning


def check_ckpt_path(ckpt_path: str | None) -> None:
    """Load a `--ckpt_path` checkpoint once, so a missing, truncated or corrupt file is a one-line error.

    Lightning's own aliases (`last`, `best`, `hpc`) and remote URLs are left to Lightning.
    """
    from echomask.checkpoints import load_checkpoint

    if ckpt_path is None:
        return
    ckpt_path = str(ckpt_path)
    is_alias = ckpt_path in CKPT_PATH_ALIASES or ckpt_path.startswith("registry")
    if (is_alias and not Path(ckpt_path).exists()) or "://" in ckpt_path:
        return
    load_checkpoint(ckpt_path)


def _checked_lightning_cli_class() -> type:
    """LightningCLI (looked up when called, so tests may substitute it) that checks `ckpt_path` after parsing."""
    from lightning.pytorch import cli

    class CheckedLightningCLI(cli.LightningCLI):
        def parse_arguments(self, parser, args) -> None:
            super().parse_arguments(parser, args)
            subcommand = self.config.get("subcommand")
            if subcommand:
                check_ckpt_path(self.config[subcommand].get("ckpt_path"))

        def instantiate_classes(self) -> None:
            try:
                super().instantiate_classes()
            except ValueError as error:
                # jsonargparse reports what a model or data class raised while being built as a failed
                # match of its Union type; the user needs the class's own message
                if not isinstance(error.__cause__, USER_ERRORS):
                    raise
                built = _CLASS_PATH.search(str(error))
                raise ConfigError(f"{built.group(1) + ': ' if built else ''}{_one_line(error.__cause__)}") from error

    return CheckedLightningCLI


def run_lightning_cli(args: list[str] | None = None) -> int:
    """Run LightningCLI on `args` (the subcommand first; None: the process' command line).

    Model and data classes come from the config. Config problems raise :class:`ConfigError`.
    """
    command_line = sys.argv[1:] if args is None else list(args)
    check_config_files(command_line)

    import jsonargparse
    import lightning.pytorch as pl

    # Configs interpolate across sections with absolute paths such as ${model.init_args.part}.
    jsonargparse.set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
    try:
        _checked_lightning_cli_class()(
            model_class=pl.LightningModule,
            datamodule_class=pl.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            # errors come back as ArgumentError (condensed below) instead of a usage dump and exit
            parser_kwargs={"prog": "echomask", "parser_mode": "omegaconf+", "exit_on_error": False},
            save_config_kwargs={"overwrite": True},
            args=args,
        )
    except argparse.ArgumentError as error:
        raise ConfigError(describe_config_error(str(error), command_line)) from error
    return 0


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
    demo.set_defaults(run=demo_command)

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

    message = _one_line(error) or type(error).__name__
    if not isinstance(error, (ConfigError, CheckpointError, BEAT2FormatError, AudioError, FileNotFoundError)):
        message = f"{type(error).__name__}: {message} ({DEBUG_VARIABLE}=1 shows the traceback)"
    program = f"echomask {command}" if command else "echomask"
    return f"{program}: error: {message}"


def _run_command(arguments: list[str], from_command_line: bool) -> int:
    if arguments and arguments[0] in LIGHTNING_COMMANDS:
        return run_lightning_cli(None if from_command_line else arguments)
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
        return _run_command(arguments, from_command_line=argv is None)
    except USER_ERRORS as error:
        if debug_requested():
            raise
        print(error_line(arguments[0] if arguments else None, error), file=sys.stderr)
        return ERROR_STATUS
