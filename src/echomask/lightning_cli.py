"""LightningCLI as the `echomask fit|validate|test|predict` commands build it, with one-line config errors.

Configs are `experiments/` YAML files (omegaconf interpolation on); model and data classes come from the
config. Every problem a user can cause is raised as :class:`ConfigError` (a ValueError) with one line that
names the file or option at fault:

- config files are checked for YAML syntax before LightningCLI reads them, and LightningCLI's
  parser runs with `exit_on_error=False`, so its (multi-line) complaints come back as exceptions
  that :func:`describe_config_error` condenses and attributes to the file that set the bad key;
- a `ckpt_path` is loaded with :func:`echomask.checkpoints.load_checkpoint` before Lightning touches it, and
  only for its weights: the model is built from the configs and options (never from the checkpoint's
  hyper-parameters, which Lightning would otherwise put over them);
- what a model or data class raises while being built is reported with the class's own message;
- `trainer.precision: auto` (echomask.precision) is resolved on this machine when the Trainer is built, and logged.

LightningCLI reads the command line from `sys.argv`; :func:`build_lightning_cli` shows it the given arguments
there for the whole run (so a DDP launcher that re-runs the command line starts the same command, and
LightningCLI has no reason to warn about arguments given twice).
"""
from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

USER_ERRORS = (ValueError, OSError)  # FileNotFoundError is an OSError; our domain errors are ValueErrors
CKPT_PATH_ALIASES = ("last", "best", "hpc")  # `ckpt_path` values Lightning resolves itself
MAX_VALUE_CHARS = 80  # how much of an offending value an error line quotes
PROGRAM = "echomask"


class ConfigError(ValueError):
    """A config file or option LightningCLI cannot use; the message names where it was set."""


# ---------------------------------------------------------------------------------------- config errors


def one_line(text: object) -> str:
    """`text` with every run of whitespace (newlines too) turned into one space."""
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
            raise ConfigError(f"{path}: not valid YAML ({one_line(error.problem or error.context)}{where})") from error
        except (yaml.YAMLError, UnicodeDecodeError, OSError) as error:
            raise ConfigError(f"{path}: unreadable config ({one_line(error)})") from error
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


def _checked_lightning_cli_class(instantiate: bool = True) -> type:
    """LightningCLI that checks `ckpt_path` after parsing and reports what a class refuses in one line;
    without `instantiate` it stops after parsing."""
    from lightning.pytorch import cli

    class CheckedLightningCLI(cli.LightningCLI):
        def parse_arguments(self, parser, args) -> None:
            super().parse_arguments(parser, args)
            subcommand = self.config.get("subcommand")
            if subcommand:
                check_ckpt_path(self.config[subcommand].get("ckpt_path"))

        def _parse_ckpt_path(self) -> None:
            """Lightning would merge a `--ckpt_path` checkpoint's hyper-parameters over the parsed config, silently
            dropping what the config files and options say about the model (e.g. `test`'s
            `--model.init_args.output_dir`; Lightning-AI/pytorch-lightning#21455). Here the configs build the model
            and the checkpoint gives its weights (a mismatched architecture fails to load, naming the keys)."""

        def instantiate_classes(self) -> None:
            if not instantiate:
                return
            try:
                super().instantiate_classes()
            except ValueError as error:
                # jsonargparse reports what a model or data class raised while being built as a failed
                # match of its Union type; the user needs the class's own message
                if not isinstance(error.__cause__, USER_ERRORS):
                    raise
                built = _CLASS_PATH.search(str(error))
                raise ConfigError(f"{built.group(1) + ': ' if built else ''}{one_line(error.__cause__)}") from error

    return CheckedLightningCLI


@contextmanager
def command_line_of(args: list[str]) -> Iterator[None]:
    """`sys.argv` reads `echomask <args>` inside the block (LightningCLI and DDP launchers read it there)."""
    saved = sys.argv
    sys.argv = [saved[0] if saved else PROGRAM, *args]
    try:
        yield
    finally:
        sys.argv = saved


def build_lightning_cli(
    args: list[str],
    run: bool = True,
    trainer_defaults: dict | None = None,
    instantiate: bool = True,
):
    """LightningCLI on `args` (the subcommand first when `run`; none without), as `echomask` builds it.

    `run=False` only builds the model, data module and trainer (for tools and tests that compose a stage from
    its configs, `echomask.stages`); with `instantiate=False` as well, nothing is built and only the parsed
    config (`.config`, interpolations resolved) is there. `trainer_defaults` add Trainer arguments (e.g.
    callbacks). Config problems raise :class:`ConfigError`. Returns the LightningCLI object.
    """
    command_line = list(args)
    check_config_files(command_line)

    import jsonargparse
    import lightning.pytorch as pl

    from echomask.lit.trainer import AutoPrecisionTrainer

    # Configs interpolate across sections with absolute paths such as ${model.init_args.part}.
    jsonargparse.set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
    try:
        with command_line_of(command_line):
            return _checked_lightning_cli_class(instantiate)(
                model_class=pl.LightningModule,
                datamodule_class=pl.LightningDataModule,
                trainer_class=AutoPrecisionTrainer,  # accepts `trainer.precision: auto`
                subclass_mode_model=True,
                subclass_mode_data=True,
                # errors come back as ArgumentError (condensed below) instead of a usage dump and exit
                parser_kwargs={"prog": PROGRAM, "parser_mode": "omegaconf+", "exit_on_error": False},
                save_config_kwargs={"overwrite": True},
                trainer_defaults=trainer_defaults or {},
                run=run,
            )
    except argparse.ArgumentError as error:
        raise ConfigError(describe_config_error(str(error), command_line)) from error


def run_lightning_cli(args: list[str]) -> int:
    """Run `echomask <args>` (`fit|validate|test|predict` first); returns the exit status 0 (errors raise)."""
    build_lightning_cli(args)
    return 0


def compose(config_arguments: list[str], *options: str, instantiate: bool = True):
    """The model, data module and trainer of config files and options, built but not run (a LightningCLI);
    `instantiate=False`: only their parsed config (`.config`)."""
    return build_lightning_cli([*config_arguments, *options], run=False, instantiate=instantiate)
