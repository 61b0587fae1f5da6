"""An exponential moving average (EMA) of a module's weights (SPEC §6.3: the SQA mask scores come from one).

After every optimizer step, each averaged parameter moves towards the live one,

    ema ← decay · ema + (1 − decay) · live        (SPEC §6.3: decay 0.9999),

and every buffer is copied as is. The average is an ordinary submodule of its owner, so it is saved in
and restored from checkpoints with everything else; it never receives gradients and always stays in
eval mode (no dropout: its outputs are deterministic).
"""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA(nn.Module):
    """A frozen copy of ``source`` that follows it by exponential moving average.

    Args:
        source: the live module; it is deep-copied at construction, so the average starts equal to it.
        decay: weight of the old average in each update (SPEC §6.3: 0.9999).

    Attributes:
        module: the averaged copy (use it like ``source``, under ``torch.no_grad()``).
        num_updates: how many updates have been applied (a buffer, saved in checkpoints).
    """

    num_updates: torch.Tensor

    def __init__(self, source: nn.Module, decay: float = 0.9999) -> None:
        super().__init__()
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA: decay must lie in [0, 1], got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(source).requires_grad_(False).eval()
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def extra_repr(self) -> str:
        return f"decay={self.decay}"

    def train(self, mode: bool = True) -> EMA:
        """The average always stays in eval mode, whatever its owner is switched to."""
        super().train(mode)
        self.module.eval()
        return self

    @torch.no_grad()
    def update(self, source: nn.Module) -> None:
        """Move every parameter towards ``source``'s by the decay rule and copy every buffer.

        ``source`` must have the parameters and buffers of the module this average was made from.
        """
        averaged = dict(self.module.named_parameters())
        live = dict(source.named_parameters())
        if averaged.keys() != live.keys():
            raise ValueError("EMA.update: the source module's parameters differ from the averaged copy's")
        for name, parameter in averaged.items():
            parameter.lerp_(live[name].detach().to(parameter.dtype), 1.0 - self.decay)
        averaged_buffers = dict(self.module.named_buffers())
        for name, buffer in source.named_buffers():
            averaged_buffers[name].copy_(buffer)
        self.num_updates += 1
