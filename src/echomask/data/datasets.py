"""Map-style datasets over the corpus cache: fixed windows (train/val) and whole sequences (test).

An item is a dict whose keys are chosen per stage (`items`), from the cached arrays of
`corpus_cache.ARRAY_NAMES` plus `speaker` (BEAT2 speaker id − 1, an embedding index),
`id` and `start` (first frame of the window).
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from echomask.data.corpus_cache import ARRAY_NAMES, CachedSequence

META_ITEMS = ("speaker", "id", "start")


def check_items(items: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Validate an item list from a config; returns it as a tuple."""
    unknown = sorted(set(items) - set(ARRAY_NAMES) - set(META_ITEMS))
    if unknown:
        raise ValueError(f"unknown item(s) {unknown}; choose from {list(ARRAY_NAMES) + list(META_ITEMS)}")
    return tuple(items)


def _item(sequence: CachedSequence, items: tuple[str, ...], start: int, stop: int, samples_per_frame: float) -> dict:
    item: dict = {}
    for name in items:
        if name == "speaker":
            item[name] = torch.tensor(sequence.speaker - 1, dtype=torch.long)
        elif name == "id":
            item[name] = sequence.id
        elif name == "start":
            item[name] = torch.tensor(start, dtype=torch.long)
        elif name == "audio":
            first = int(round(start * samples_per_frame))
            count = int(round((stop - start) * samples_per_frame))
            item[name] = torch.from_numpy(np.array(sequence.array("audio")[first : first + count]))
        elif name == "betas":
            item[name] = torch.from_numpy(np.array(sequence.array("betas")))
        else:
            item[name] = torch.from_numpy(np.array(sequence.array(name)[start:stop]))
    return item


class WindowDataset(Dataset):
    """Fixed-length windows of every sequence: `window` frames every `stride` frames (§4.5: 64/20).

    Sequences shorter than one window contribute nothing.
    """

    def __init__(
        self,
        sequences: list[CachedSequence],
        items: tuple[str, ...],
        window: int = 64,
        stride: int = 20,
        samples_per_frame: float = 16000 / 30,
    ):
        if window < 1 or stride < 1:
            raise ValueError(f"window and stride must be positive, got window={window}, stride={stride}")
        self.sequences = sequences
        self.items = check_items(items)
        self.window = window
        self.samples_per_frame = samples_per_frame
        self.index = [
            (number, start)
            for number, sequence in enumerate(sequences)
            for start in range(0, sequence.num_frames - window + 1, stride)
        ]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, position: int) -> dict:
        number, start = self.index[position]
        return _item(self.sequences[number], self.items, start, start + self.window, self.samples_per_frame)


class SequenceDataset(Dataset):
    """Whole sequences, one item each (test split: batch size 1, sliding-window decoding §6.6)."""

    def __init__(self, sequences: list[CachedSequence], items: tuple[str, ...], samples_per_frame: float = 16000 / 30):
        self.sequences = sequences
        self.items = check_items(items)
        self.samples_per_frame = samples_per_frame

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, position: int) -> dict:
        sequence = self.sequences[position]
        return _item(sequence, self.items, 0, sequence.num_frames, self.samples_per_frame)
