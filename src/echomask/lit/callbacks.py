"""Lightning callbacks shared by the training stages."""
from __future__ import annotations

import random
import warnings
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch


def numpy_rng_state() -> dict[str, Any]:
    """numpy's global generator state as tensors and numbers (loadable with `torch.load(weights_only=True)`)."""
    state = np.random.get_state(legacy=False)
    return {
        "key": torch.from_numpy(state["state"]["key"].astype(np.int64)),
        "pos": int(state["state"]["pos"]),
        "has_gauss": int(state["has_gauss"]),
        "gauss": float(state["gauss"]),
    }


def set_numpy_rng_state(saved: dict[str, Any]) -> None:
    """Inverse of `numpy_rng_state`."""
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": saved["key"].numpy().astype(np.uint32), "pos": saved["pos"]},
            "has_gauss": saved["has_gauss"],
            "gauss": saved["gauss"],
        }
    )


class RNGStateCheckpoint(pl.Callback):
    """Saves the random number generators' states in every checkpoint and restores them on resume (SPEC §5.1).

    Gumbel code sampling, quantizer dropout and dead-code replacement draw from torch's global
    generator. Lightning restores weights, buffers, optimiser and loop state, but not the generators, so
    without this callback a resumed run draws other numbers than the run it continues would have. With it
    (and a data order that depends only on seed and epoch, see `BEAT2DataModule`), a run resumed from an
    end-of-epoch checkpoint continues bit for bit on the same hardware.

    Saved: torch's CPU generator, the generator of the strategy's CUDA device (when training on one), numpy's and
    Python's global generators. Under DDP, `seed_everything` gives every rank the same seed and every rank
    draws the same numbers, so rank 0's states (the ones written to the checkpoint) are restored on every
    rank, each rank's CUDA state going to its own device.
    """

    CHECKPOINT_KEY = "rng_states"

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        states = {
            "torch": torch.get_rng_state(),
            "numpy": numpy_rng_state(),
            "python": random.getstate(),
        }
        device = trainer.strategy.root_device
        if device.type == "cuda":
            states["cuda"] = torch.cuda.get_rng_state(device)
        checkpoint[self.CHECKPOINT_KEY] = states

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get(self.CHECKPOINT_KEY)
        if states is None:
            warnings.warn(
                f"RNGStateCheckpoint: the checkpoint has no '{self.CHECKPOINT_KEY}' entry (it was written without this "
                "callback); the resumed run keeps the current random states and will not continue exactly",
                stacklevel=2,
            )
            return
        torch.set_rng_state(states["torch"])
        set_numpy_rng_state(states["numpy"])
        random.setstate(states["python"])
        device = trainer.strategy.root_device
        if "cuda" in states and device.type == "cuda":
            torch.cuda.set_rng_state(states["cuda"], device)
