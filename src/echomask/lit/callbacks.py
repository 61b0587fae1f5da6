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


class NonFiniteBatchError(ValueError):
    """A batch holds NaN or inf inputs; the message names the tensor and the batch's sequences."""


class NonFiniteBatchCheck(pl.Callback):
    """Stops with a clear error before a batch with NaN/inf inputs reaches the model (issue 7).

    One NaN in a cached window would otherwise turn the weights into NaN at the next optimiser step,
    and the run would go on training garbage. Every floating-point tensor of each training (and,
    with `check_validation`, validation) batch is checked; a bad one raises `NonFiniteBatchError`
    naming the tensor, how many values are bad and the samples holding them. Samples are named by
    sequence id and first frame when the batch has `id` and `start` entries (add both to the data
    module's `items`), else by their index in the batch.

    Cost: one device synchronisation per batch.
    """

    def __init__(self, check_validation: bool = True):
        self.check_validation = check_validation

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.check(batch, f"training batch {batch_idx}")

    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self.check_validation:
            self.check(batch, f"validation batch {batch_idx}")

    @staticmethod
    def float_tensors(batch: Any) -> dict[str, torch.Tensor]:
        """The floating-point tensors of a dict, list or tuple batch, by name (`motion`, `batch[0]`)."""
        if isinstance(batch, dict):
            named = batch.items()
        elif isinstance(batch, (list, tuple)):
            named = ((f"batch[{index}]", value) for index, value in enumerate(batch))
        else:
            named = [("batch", batch)]
        return {name: value for name, value in named if torch.is_tensor(value) and value.is_floating_point()}

    @staticmethod
    def sample_names(batch: Any, rows: list[int]) -> str:
        """`2_scott_0_1_1 (frame 40), ...` when the batch has `id` (and `start`), else the row numbers."""
        if not (isinstance(batch, dict) and "id" in batch):
            listed = ", ".join(str(row) for row in rows)
            return f"{listed} of the batch (add 'id' and 'start' to the data module's items to name their sequences)"
        starts = batch.get("start")
        return ", ".join(
            batch["id"][row] + ("" if starts is None else f" (frame {int(starts[row])})") for row in rows
        )

    def check(self, batch: Any, where: str) -> None:
        """Raise `NonFiniteBatchError` if a floating-point tensor of `batch` holds NaN or inf."""
        tensors = self.float_tensors(batch)
        if not tensors:
            return
        finite = torch.stack([torch.isfinite(tensor).all() for tensor in tensors.values()])
        if bool(finite.all()):
            return
        name, tensor = next((name, tensor) for (name, tensor), ok in zip(tensors.items(), finite.tolist()) if not ok)
        bad = ~torch.isfinite(tensor)
        count = int(bad.sum())
        if tensor.ndim == 0:
            samples = "the batch"
        else:
            rows = torch.nonzero(bad.reshape(len(bad), -1).any(dim=1)).flatten().tolist()  # (B, ...) -> bad rows
            samples = self.sample_names(batch, rows)
        raise NonFiniteBatchError(
            f"{where}: '{name}' holds {count} NaN/inf value(s), in sample(s) {samples}; "
            "check those sequences' files and rebuild the feature cache"
        )
