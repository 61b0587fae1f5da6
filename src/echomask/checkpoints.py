"""Reading checkpoint files with one-line errors that name the file (issue 7).

``torch.save`` writes a zip archive whose table of contents (the central directory) sits at the very
end and which stores a CRC-32 of every member. A save that was interrupted half-way leaves a file
without that table; a damaged file has members whose checksums no longer match. Left to
``torch.load``, the first fails deep inside torch with a message about "miniz", and the second can load
silently with wrong weights. :func:`verify_checkpoint_file` finds both before anything is unpickled;
:func:`load_checkpoint` adds the (weights-only) load and turns any failure into a
:class:`CheckpointError`. Files in torch's pre-1.6 (non-zip) format are loaded without the archive check.
"""
from __future__ import annotations

import re
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import torch

CORRUPT = "truncated or corrupt checkpoint"
ZIP_SIGNATURE = b"PK\x03\x04"  # first bytes of every zip archive, hence of every torch.save file since torch 1.6
UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")  # how torch names what weights_only refuses


class CheckpointError(ValueError):
    """A checkpoint file cannot be used; the one-line message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def _one_line(error: BaseException) -> str:
    """The type and message of ``error`` on one line (torch's messages span several)."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _starts_like_a_zip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(ZIP_SIGNATURE)) == ZIP_SIGNATURE


def verify_checkpoint_file(path: str | Path, check_crc: bool = True) -> Path:
    """Check that ``path`` is a complete, undamaged checkpoint archive without unpickling it.

    Checks: the file exists and is not empty; a zip archive has its central directory (a truncated
    save has not) and, with ``check_crc``, every member matches its CRC-32 (this reads the whole file,
    at disk speed). A non-zip file is accepted as torch's legacy format, which only a load can check.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        FileNotFoundError: nothing at ``path``.
        CheckpointError: a folder, an empty file, a truncated or a damaged archive.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    if not path.is_file():
        raise CheckpointError(path, "not a checkpoint file (a folder or a special file)")
    if path.stat().st_size == 0:
        raise CheckpointError(path, f"{CORRUPT} (empty file)")
    if not zipfile.is_zipfile(path):
        if _starts_like_a_zip(path):
            raise CheckpointError(
                path, f"{CORRUPT} (the zip archive ends before its table of contents, as after an interrupted save)"
            )
        return path
    try:
        with zipfile.ZipFile(path) as archive:
            damaged_member = archive.testzip() if check_crc else None
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, ValueError) as error:
        raise CheckpointError(path, f"{CORRUPT} ({_one_line(error)})") from error
    if damaged_member is not None:
        raise CheckpointError(path, f"{CORRUPT} (archive member {damaged_member} fails its CRC-32 check)")
    return path


def load_checkpoint(
    path: str | Path,
    map_location: str | torch.device | Callable | None = "cpu",
    weights_only: bool = True,
) -> dict:
    """``torch.load`` of a verified checkpoint (:func:`verify_checkpoint_file`) whose top level is a dict.

    Args:
        path: a ``torch.save`` file (Lightning ``.ckpt``, ``AESKConv_240_100.bin``, ...).
        map_location: as for ``torch.load``.
        weights_only: refuse arbitrary pickled Python objects (torch's safe loader); set False only for a
            file from a trusted source.

    Raises:
        FileNotFoundError: nothing at ``path``.
        CheckpointError: the file is truncated, damaged, not a torch file, holds objects a weights-only
            load refuses, or its top level is not a dict.
    """
    path = verify_checkpoint_file(path)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=weights_only)
    except Exception as error:  # unpickling a damaged stream fails in many ways (IndexError, EOFError, ...)
        refused = UNSUPPORTED_GLOBAL.search(str(error)) if weights_only else None
        if refused:
            raise CheckpointError(
                path,
                f"holds a Python object that a weights-only load refuses ({refused.group(1)}); "
                "load it with weights_only=False only if you trust where the file comes from",
            ) from error
        raise CheckpointError(path, f"{CORRUPT} or not a torch.save file ({_one_line(error)})") from error
    if not isinstance(checkpoint, dict):
        raise CheckpointError(path, f"expected a dict at the top level, got {type(checkpoint).__name__}")
    return checkpoint
