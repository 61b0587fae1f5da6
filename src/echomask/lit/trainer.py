"""`AutoPrecisionTrainer`: the Lightning Trainer of `echomask fit|validate|test|predict`, which also accepts
``precision: auto`` (echomask.precision: bf16-mixed where the hardware multiplies bf16 natively, else fp32) and
logs what it resolved to before Lightning sets the precision up."""
from __future__ import annotations

import logging
from typing import Literal

import lightning.pytorch as pl
from lightning.fabric.connector import _PRECISION_INPUT

from echomask.precision import AUTO, machine_precision

log = logging.getLogger(__name__)


class AutoPrecisionTrainer(pl.Trainer):
    """`lightning.pytorch.Trainer` whose ``precision`` may also be ``"auto"`` (resolved on this machine for the
    Trainer's ``accelerator``; the choice and its reason are logged). Every other argument is Lightning's."""

    def __init__(self, *, precision: _PRECISION_INPUT | Literal["auto"] | None = None, **kwargs) -> None:
        if precision == AUTO:
            resolution = machine_precision(AUTO, kwargs.get("accelerator", "auto"))
            log.info(resolution.describe(AUTO))
            precision = resolution.precision
        super().__init__(precision=precision, **kwargs)
