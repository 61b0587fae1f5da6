"""`BEAT2DataModule`: the one data module every stage uses (SPEC §4.5, §7).

`prepare_data` (local rank 0 only, Lightning's rule) builds or repairs the disk cache;
`setup` opens it on every rank; Lightning adds the distributed sampler under DDP, so each rank
reads its own shard. What an item holds is chosen per stage with `items` / `test_items`.

The training order depends only on a seed and the epoch (`EpochShuffleSampler`; under DDP,
Lightning's `DistributedSampler`, seeded by `seed_everything`), so a run resumed from an end-of-epoch
checkpoint sees the batches the uninterrupted run would have seen.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from echomask.audio.speech_settings import SpeechSettings
from echomask.data.beat2 import BEAT2Corpus
from echomask.data.corpus_cache import CorpusCache
from echomask.data.datasets import SequenceDataset, WindowDataset, check_items
from echomask.motion.kinematics import build_kinematics

log = logging.getLogger(__name__)

GLOBAL_SEED_VARIABLE = "PL_GLOBAL_SEED"
"""Where `seed_everything` leaves its seed; Lightning's `DistributedSampler` reads its seed from it too."""


class EpochShuffleSampler(RandomSampler):
    """A fresh random order of the dataset every epoch that depends only on (seed, epoch).

    Lightning calls `set_epoch` before every training epoch. Being a `RandomSampler`, it is replaced under
    DDP by Lightning's `DistributedSampler`, which shuffles the same way (seeded, `set_epoch`).
    """

    def __init__(self, data_source: Dataset, seed: int):
        super().__init__(data_source)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(len(self.data_source), generator=generator).tolist())


class BEAT2DataModule(pl.LightningDataModule):
    """BEAT2 (or any BEAT2-format corpus) as training windows and whole test sequences.

    Args:
        root: corpus folder (holding `beat_english_v2.0.0/` or being it). Default: the synthetic corpus.
        speakers: speaker ids to keep (the benchmark uses `[2]`); None keeps all.
        cache_dir: where the feature cache lives.
        items: what a train/val window holds (see `data.datasets`).
        test_items: what a whole test sequence holds.
        window: frames per training window (§4.5: 64).
        stride: frames between window starts (§4.5: 20).
        batch_size: windows per training batch.
        num_workers: DataLoader worker processes.
        train_splits, val_splits, test_splits: which split-csv types feed each loader.
        speech: how speech becomes features (`SpeechSettings`: HuBERT model and layers, feature size,
            projection seed); in a config a mapping, e.g. ``speech: {hubert: signal, feature_dim: 64}``.
        smplx_model_dir: SMPL-X model folder; None uses the approximate skeleton.
        on_error: "raise" or "skip" for sequences with bad files.
        verify_cache: check every cached array's checksum before use.
        seed: seed of the single-process training order (`EpochShuffleSampler`); None: the seed given to
            `seed_everything` (0 without one). Under DDP, Lightning's `DistributedSampler` takes over and
            always uses `seed_everything`'s seed.
    """

    def __init__(
        self,
        root: str = "data/synthetic",
        speakers: list[int] | None = None,
        cache_dir: str = "data/cache",
        items: list[str] = ("motion", "expressions"),
        test_items: list[str] = ("motion", "expressions", "joints", "audio", "speaker", "id"),
        window: int = 64,
        stride: int = 20,
        batch_size: int = 64,
        num_workers: int = 0,
        train_splits: list[str] = ("train",),
        val_splits: list[str] = ("val",),
        test_splits: list[str] = ("test",),
        speech: SpeechSettings = SpeechSettings(),
        smplx_model_dir: str | None = None,
        on_error: str = "raise",
        verify_cache: bool = True,
        fps: int = 30,
        sample_rate: int = 16000,
        seed: int | None = None,
    ):
        super().__init__()
        self.speech = SpeechSettings.of(speech)
        self.save_hyperparameters()
        self.hparams["speech"] = self.speech.as_dict()  # plain data: checkpoints load with weights_only=True
        self.items = check_items(items)
        self.test_items = check_items(test_items)
        self._cache: CorpusCache | None = None
        self.datasets: dict[str, Dataset] = {}

    @property
    def cache(self) -> CorpusCache:
        """The corpus cache (reads and validates the corpus listing on first use)."""
        if self._cache is None:
            hp = self.hparams
            all_splits = sorted({*hp.train_splits, *hp.val_splits, *hp.test_splits})
            corpus = BEAT2Corpus(Path(hp.root), speakers=hp.speakers, splits=all_splits, on_error=hp.on_error)
            speech = self.speech.extractor(fps=hp.fps)
            self._cache = CorpusCache(
                corpus,
                hp.cache_dir,
                speech_features=speech,
                kinematics=build_kinematics(hp.smplx_model_dir),
                fps=hp.fps,
                sample_rate=hp.sample_rate,
            )
            log.info("corpus %s: %d sequences; kinematics: %s", hp.root, len(corpus), self._cache.kinematics.label)
        return self._cache

    def prepare_data(self) -> None:
        self.cache.build(full_check=self.hparams.verify_cache)

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        samples_per_frame = hp.sample_rate / hp.fps
        windows = dict(items=self.items, window=hp.window, stride=hp.stride, samples_per_frame=samples_per_frame)
        self.datasets = {
            "train": WindowDataset(self.cache.sequences(hp.train_splits), **windows),
            "val": WindowDataset(self.cache.sequences(hp.val_splits), **windows),
            "test": SequenceDataset(self.cache.sequences(hp.test_splits), self.test_items, samples_per_frame),
        }

    def _loader(self, name: str, batch_size: int, shuffle: bool) -> DataLoader:
        if name not in self.datasets:
            raise RuntimeError("BEAT2DataModule.setup() has not been called")
        dataset = self.datasets[name]
        if len(dataset) == 0:
            splits = getattr(self.hparams, f"{name}_splits")
            raise ValueError(
                f"no {name} items in {self.hparams.root} (splits {list(splits)}, speakers {self.hparams.speakers}); "
                f"sequences shorter than {self.hparams.window} frames give no windows"
            )
        workers = self.hparams.num_workers
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=EpochShuffleSampler(dataset, self.shuffle_seed) if shuffle else None,
            num_workers=workers,
            persistent_workers=workers > 0,
            drop_last=False,
        )

    @property
    def shuffle_seed(self) -> int:
        """The seed of the training order: `seed`, else `seed_everything`'s, else 0."""
        if self.hparams.seed is not None:
            return self.hparams.seed
        return int(os.environ.get(GLOBAL_SEED_VARIABLE, 0))

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.hparams.batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", 1, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", 1, shuffle=False)

    def joint_mean_speed(self) -> tuple[np.ndarray, str]:
        """Per-joint mean speeds ``(55,)`` for beat consistency and where they come from: BEAT2's shipped file when
        present, else the train split's (from the cache)."""
        from echomask.scoring import resolve_joint_mean_speed

        return resolve_joint_mean_speed(
            self.cache.corpus.root, lambda: self.cache.joint_mean_speed(self.hparams.train_splits)
        )
