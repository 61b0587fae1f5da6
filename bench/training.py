"""Training throughput of every stage: real `Trainer.fit` steps of the configured LightningModule.

Each step is the module's own training step as Lightning runs it (forward, every loss, backward,
gradient clipping where the config sets it, the optimizer step and, for the generator, the EMA update:
`GeneratorModule.training_step` + `optimizer_step`). The data module is the config's
`BEAT2DataModule`, except that its training loader yields one real batch over and over, so the
timings hold no data loading (that is measured on its own, `bench.data_pipeline`).

A step is timed from `on_train_batch_start` to `on_train_batch_end`. The first `warmup` steps are not
timed; the FLOPs are counted during the last of them.
"""
from __future__ import annotations

import logging
import time
import warnings

import lightning.pytorch as pl
import torch

from bench.configs import compose_stage, generator_options, workspace_options
from bench.harness import FlopWindow, rates, summarize, synchronize
from echomask.data.datamodule import BEAT2DataModule
from echomask.lit.quiet_trainer import quiet_trainer


class RepeatedBatch:
    """An iterable of `steps` references to one batch (a training "loader" with no loading cost); `dataset` is the
    real loader's (a module may read it, e.g. the RVQ-VAE's normalisation statistics at fit start)."""

    def __init__(self, batch: dict, steps: int, dataset):
        self.batch = batch
        self.steps = steps
        self.dataset = dataset

    def __iter__(self):
        return iter([self.batch] * self.steps)

    def __len__(self) -> int:
        return self.steps


class FixedBatchDataModule(BEAT2DataModule):
    """`BEAT2DataModule` whose training loader repeats its first batch `steps` times."""

    def __init__(self, steps: int, **data_arguments):
        super().__init__(**data_arguments)
        self.steps = steps

    def train_dataloader(self) -> RepeatedBatch:
        loader = super().train_dataloader()
        return RepeatedBatch(next(iter(loader)), self.steps, loader.dataset)


class StepTimer(pl.Callback):
    """Wall time of every training step after `warmup`, and the FLOPs of step `warmup − 1`."""

    def __init__(self, warmup: int):
        if warmup < 1:
            raise ValueError(f"StepTimer needs at least one warm-up step (the FLOP count runs there), got {warmup}")
        self.warmup = warmup
        self.seconds: list[float] = []
        self.batch_sizes: list[int] = []
        self.flops: int | None = None
        self._flop_window = FlopWindow()
        self._start = 0.0

    def _counting(self, batch_idx: int) -> bool:
        return batch_idx == self.warmup - 1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        synchronize(pl_module.device)
        if self._counting(batch_idx):
            self._flop_window.open()
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        synchronize(pl_module.device)
        elapsed = time.perf_counter() - self._start
        if self._counting(batch_idx):
            self.flops = self._flop_window.close()
        elif batch_idx >= self.warmup:
            self.seconds.append(elapsed)
            self.batch_sizes.append(len(batch["motion"]))


def _quiet_lightning() -> None:
    """Lightning's hints about loaders, loggers and workers say nothing about speed: keep the output readable."""
    warnings.filterwarnings("ignore", module="lightning")
    warnings.filterwarnings("ignore", category=UserWarning)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "echomask"):
        logging.getLogger(name).setLevel(logging.ERROR)


def training_throughput(
    device: torch.device,
    workspace,
    stage: str,
    size: str,
    batch_size: int | None,
    warmup: int,
    repeats: int,
    precision: str | None = None,
) -> dict:
    """Windows per second of `stage`'s training step at `size` with `batch_size` windows per batch
    (None: the config's).

    Returns step_seconds (see `harness.summarize`), windows_per_second (median, min, max), flops_per_step,
    parameters (trainable), batch_size, how (what was run).
    """
    _quiet_lightning()
    options = workspace_options(workspace, batch_size)
    if stage == "generator":
        options += generator_options(size)
    cli = compose_stage(stage, size, *options)  # seeds with the config's seed_everything
    module = cli.model
    datamodule = FixedBatchDataModule(steps=warmup + repeats, **cli.config.data.init_args.as_dict())
    batch_size = datamodule.hparams.batch_size
    timer = StepTimer(warmup)
    gradient_clip_val = cli.trainer.gradient_clip_val
    trainer = quiet_trainer(
        accelerator=device.type,
        max_steps=warmup + repeats,
        precision=precision or cli.trainer.precision,
        gradient_clip_val=gradient_clip_val,
        limit_val_batches=0,
        callbacks=[timer],
    )
    trainer.fit(module, datamodule=datamodule)
    if any(seen != batch_size for seen in timer.batch_sizes):
        raise RuntimeError(f"{stage}: expected batches of {batch_size}, got {timer.batch_sizes}")
    step = summarize(timer.seconds)
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return {
        "stage": stage,
        "size": size,
        "batch_size": batch_size,
        "step_seconds": step,
        "windows_per_second": rates(batch_size, step),
        "flops_per_step": timer.flops,
        "parameters": trainable,
        "how": f"{type(module).__name__}.training_step + optimizer step via Trainer.fit "
        f"(precision {trainer.precision}, gradient clip {gradient_clip_val})",
    }
