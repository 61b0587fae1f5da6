"""`quiet_trainer`: a Lightning Trainer that writes and prints nothing of its own, for tests, benchmarks and
scripts that run a module directly (not through `echomask fit`, whose configs set up logs and checkpoints)."""
from __future__ import annotations

import lightning.pytorch as pl

QUIET_SETTINGS = dict(
    accelerator="cpu",
    devices=1,
    logger=False,
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
    num_sanity_val_steps=0,
)


def quiet_trainer(**overrides) -> pl.Trainer:
    """A CPU Trainer without logger, checkpoints, progress bar, model summary or sanity check; ``overrides``
    replace or add Trainer arguments (e.g. ``max_steps=1``, ``accelerator="cuda"``)."""
    return pl.Trainer(**{**QUIET_SETTINGS, **overrides})
