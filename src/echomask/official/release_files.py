"""Reading the release's checkpoint files and checking them against a model's tensor layout.

The release saves ``torch.save({"model_state": model.state_dict(), ...})``; a model trained under
DataParallel/DistributedDataParallel has every tensor name prefixed ``module.``. Files are loaded with
torch's weights-only unpickler (no arbitrary code runs). Every problem is one line naming the file:
not a checkpoint, not the release's layout, a wrong model (a tensor of another shape: the key and both
shapes), missing or unexpected tensors.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from echomask.checkpoints import CheckpointError, load_checkpoint

RELEASE_STATE_KEY = "model_state"
WRAPPER_PREFIX = "module."
LISTED_NAMES = 6  # names shown in an error before "... (n more)"


def listing(names: list[str], limit: int = LISTED_NAMES) -> str:
    """Up to `limit` names, then how many more."""
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def read_release_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict stored in a release checkpoint, ``module.`` prefixes removed.

    Raises:
        FileNotFoundError: nothing at `path`.
        CheckpointError: not a (complete, weights-only loadable) torch file, or no ``model_state`` dict of tensors.
    """
    checkpoint = load_checkpoint(path)
    state = checkpoint.get(RELEASE_STATE_KEY)
    if not isinstance(state, Mapping):
        raise CheckpointError(
            path,
            f"not a checkpoint of the release: no '{RELEASE_STATE_KEY}' state dict "
            f"(top-level keys: {listing(sorted(map(str, checkpoint)))})",
        )
    not_tensors = [str(name) for name, value in state.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(path, f"'{RELEASE_STATE_KEY}' holds entries that are not tensors: {listing(not_tensors)}")
    return {name.removeprefix(WRAPPER_PREFIX): tensor for name, tensor in state.items()}


def check_release_state(
    path: str | Path, state: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]], model: str
) -> None:
    """Raise a one-line `CheckpointError` unless `state` has exactly the tensors of `expected` (name -> shape).

    `model` names what the file should hold (e.g. "the release's face RVQ-VAE") in the messages. Shapes are
    checked first: a checkpoint of another part has the same names with other shapes.
    """
    for name, shape in expected.items():
        if name in state and tuple(state[name].shape) != tuple(shape):
            raise CheckpointError(
                path,
                f"not {model}: tensor {name} has shape {tuple(state[name].shape)}, {model} has {tuple(shape)} "
                "(a checkpoint of another part or model?)",
            )
    missing = [name for name in expected if name not in state]
    if missing:
        raise CheckpointError(path, f"not {model}: {len(missing)} tensor(s) missing: {listing(missing)}")
    unexpected = [name for name in state if name not in expected]
    if unexpected:
        raise CheckpointError(path, f"not {model}: {len(unexpected)} unexpected tensor(s): {listing(unexpected)}")
