"""A per-item on-disk cache of feature arrays, keyed by everything that made them (SPEC §4.4).

Layout: `<root>/<first 16 hex digits of sha256(key JSON)>/<item_id>.npz`, plus a readable `key.json` in each key
folder. Each .npz holds the arrays, the key JSON (`__key__`) and a sha256 over the arrays' names, dtypes, shapes
and bytes (`__sha256__`). Reading checks all three, so an entry that is truncated, bit-flipped, unreadable or was
made with another key is reported (a `FeatureCacheWarning` naming the file) and treated as missing, and the
caller rebuilds it; it is never used silently. Writes are atomic (temporary file + `os.replace`), so a crash or
a concurrent reader never sees half a file.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

KEY_FIELD = "__key__"
CHECKSUM_FIELD = "__sha256__"
# Hex digits of the key hash used as the folder name (64 bits: collisions are caught by the stored key anyway).
KEY_FOLDER_DIGITS = 16


class FeatureCacheWarning(UserWarning):
    """A cache entry was corrupt or stale and will be rebuilt."""


def key_json(key: dict) -> str:
    """Canonical JSON of a cache key (sorted keys, no spaces); ValueError if the key is not JSON-able."""
    try:
        return json.dumps(key, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"a cache key must be a JSON-able dict ({error}): {key!r}") from None


def arrays_checksum(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of `arrays`, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


class FeatureCache:
    """Per-item feature arrays on disk under `root` (see the module docstring)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, item_id: str, key: dict) -> Path:
        """Where the entry of `item_id` under `key` lives."""
        _check_item_id(item_id)
        folder = hashlib.sha256(key_json(key).encode()).hexdigest()[:KEY_FOLDER_DIGITS]
        return self.root / folder / f"{item_id}.npz"

    def get(self, item_id: str, key: dict) -> dict[str, np.ndarray] | None:
        """The cached arrays, or None when the entry is missing (quietly) or corrupt/stale (with a warning)."""
        path = self.path(item_id, key)
        if not path.exists():
            return None
        try:
            with open(path, "rb") as file, np.load(file, allow_pickle=False) as npz:
                contents = {name: npz[name] for name in npz.files}
        # Damaged bytes reach zipfile, zlib and numpy's header parser, which raise many exception types
        # (BadZipFile, EOFError, ValueError, tokenize.TokenError, ...): any of them means "unreadable".
        except Exception as error:  # noqa: BLE001
            return _reject(path, f"unreadable ({type(error).__name__}: {error})")
        if KEY_FIELD not in contents or CHECKSUM_FIELD not in contents:
            return _reject(path, "no stored key or checksum")
        stored_key, stored_checksum = str(contents.pop(KEY_FIELD)), str(contents.pop(CHECKSUM_FIELD))
        if stored_key != key_json(key):
            return _reject(path, f"stale: made with key {stored_key}")
        if arrays_checksum(contents) != stored_checksum:
            return _reject(path, "checksum mismatch")
        return contents

    def put(self, item_id: str, key: dict, arrays: dict[str, np.ndarray]) -> Path:
        """Store `arrays` (numeric numpy arrays, names not starting with "__") atomically; returns the file."""
        path = self.path(item_id, key)
        arrays = {name: np.asarray(array) for name, array in arrays.items()}
        for name, array in arrays.items():
            if name.startswith("__"):
                raise ValueError(f"array names starting with '__' are reserved, got {name!r}")
            if array.dtype.hasobject:
                raise ValueError(f"array {name!r} has dtype {array.dtype}; only plain numeric arrays can be cached")
        path.parent.mkdir(parents=True, exist_ok=True)
        key_text = key_json(key)
        sidecar = path.parent / "key.json"
        if not sidecar.exists():
            _write_atomically(sidecar, lambda file: file.write(json.dumps(key, sort_keys=True, indent=2).encode()))
        stored = {**arrays, KEY_FIELD: np.array(key_text), CHECKSUM_FIELD: np.array(arrays_checksum(arrays))}
        _write_atomically(path, lambda file: np.savez(file, **stored))
        return path

    def get_or_compute(
        self,
        item_id: str,
        key: dict,
        compute: Callable[[], dict[str, np.ndarray]],
    ) -> dict[str, np.ndarray]:
        """The cached arrays, or `compute()`'s result after storing it (when missing, corrupt or stale)."""
        arrays = self.get(item_id, key)
        if arrays is None:
            arrays = {name: np.asarray(array) for name, array in compute().items()}
            self.put(item_id, key, arrays)
        return arrays


def _check_item_id(item_id: str) -> None:
    """An item id must be a plain file name (it becomes `<item_id>.npz`)."""
    if not isinstance(item_id, str) or not item_id or item_id in (".", "..") or any(
        separator in item_id for separator in ("/", "\\", os.sep)
    ):
        raise ValueError(f"a cache item id must be a non-empty file name without path separators, got {item_id!r}")


def _reject(path: Path, reason: str) -> None:
    """Report a corrupt or stale entry; the caller treats it as missing and rebuilds it."""
    warnings.warn(f"{path}: feature-cache entry ignored, {reason}; it will be rebuilt", FeatureCacheWarning,
                  stacklevel=3)
    return None


def _write_atomically(path: Path, write: Callable) -> None:
    """Write through `write(binary file)` into a temporary file next to `path`, then rename it over `path`."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
