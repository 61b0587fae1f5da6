"""Release-keyed state dicts rebuilt from a seeded weight recipe (``shared/golden/official/README.md``).

The golden outputs of the official EchoMask release were produced with weights that anyone can rebuild
without the release's code: every entry of the official module's ``state_dict()`` is listed in a
``state_dict.tsv`` (key, shape, source, dtype), and the entries whose source is ``recipe`` are drawn from
``numpy.random.default_rng(SeedSequence([weight_seed, crc32(key)]))`` and scaled by the kind of tensor.
Entries marked ``buffer-as-built`` are deterministic buffers of the official modules (positional-encoding
tables, counters); this module leaves them out (our modules rebuild their own) and reports their keys.
"""
from __future__ import annotations

import ast
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

RECIPE = "recipe"
BUFFER_AS_BUILT = "buffer-as-built"
TSV_HEADER = ["key", "shape", "source", "dtype"]


@dataclass(frozen=True)
class StateEntry:
    """One row of a ``state_dict.tsv``: a tensor of the official module."""

    key: str
    shape: tuple[int, ...]
    source: str  # RECIPE or BUFFER_AS_BUILT
    dtype: str


def read_state_dict_table(path: str | Path) -> list[StateEntry]:
    """The rows of a ``state_dict.tsv`` in file order.

    Raises:
        ValueError: the header or a row is not of the documented form (the message names the file and line).
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].split("\t") != TSV_HEADER:
        raise ValueError(f"{path}: expected the header {'<TAB>'.join(TSV_HEADER)}")
    entries = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != len(TSV_HEADER):
            raise ValueError(f"{path}:{number}: expected {len(TSV_HEADER)} tab-separated fields, got {len(fields)}")
        key, shape_text, source, dtype = fields
        shape = ast.literal_eval(shape_text)
        if not isinstance(shape, tuple) or not all(isinstance(size, int) for size in shape):
            raise ValueError(f"{path}:{number}: {key}: shape {shape_text!r} is not a tuple of integers")
        if source not in (RECIPE, BUFFER_AS_BUILT):
            raise ValueError(f"{path}:{number}: {key}: unknown source {source!r}")
        entries.append(StateEntry(key=key, shape=shape, source=source, dtype=dtype))
    return entries


def recipe_tensor(key: str, shape: tuple[int, ...], weight_seed: int) -> torch.Tensor:
    """The recipe's float32 tensor for ``key``: seeded by (weight_seed, crc32(key)), scaled by its kind."""
    rng = np.random.default_rng(np.random.SeedSequence([weight_seed, zlib.crc32(key.encode("utf-8"))]))
    values = rng.standard_normal(shape)
    if len(shape) >= 2:  # weights, embeddings, codebooks, queries
        values = values / math.sqrt(math.prod(shape[1:]))
    elif key.endswith("bias"):
        values = 0.02 * values
    elif key.endswith("weight"):  # 1-D weights (LayerNorm)
        values = 1.0 + 0.1 * values
    else:
        values = 0.5 * values
    return torch.from_numpy(values.astype(np.float32))


def recipe_state_dict(
    table: str | Path | list[StateEntry],
    weight_seed: int,
    keep=lambda key: True,
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The release-keyed state dict of a ``state_dict.tsv`` (its recipe entries, in file order).

    Args:
        table: the ``state_dict.tsv`` path or its parsed rows.
        weight_seed: ``weight_seed`` of the golden folder's ``golden.json``.
        keep: a predicate on keys; entries it rejects are not drawn (e.g. modules the release never uses).

    Returns:
        (state dict of the recipe entries, keys of the ``buffer-as-built`` entries).
    """
    entries = read_state_dict_table(table) if isinstance(table, (str, Path)) else table
    state = {entry.key: recipe_tensor(entry.key, entry.shape, weight_seed) for entry in entries
             if entry.source == RECIPE and keep(entry.key)}
    built = [entry.key for entry in entries if entry.source == BUFFER_AS_BUILT]
    return state, built
