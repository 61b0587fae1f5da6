"""Run several structurally identical modules (one per body part) as ONE module with stacked parameters.

The release gives every body part its own copy of a module (MAM's per-part alignment, the code heads); run one
after another, a batch-1 inference window spends most of their time in per-call overhead of small matmuls. With
every parameter stacked along a new leading axis P, the same ``forward`` code runs all P copies at once on inputs
that carry that axis: (P, B, T, d) activations, (P, out, in) weights. What makes this work:

- :func:`linear`, :class:`Linear` and :class:`LayerNorm` accept stacked weights (a batched matmul, a broadcast
  affine) and behave exactly as ``nn.Linear`` / ``nn.LayerNorm`` otherwise (same parameters, names, init);
- :class:`~echomask.models.attention.Attention` uses :func:`linear` and folds leading axes into its batch;
- :func:`stack_modules` stores every stacked weight that :func:`linear` multiplies by as (P, out, in) with the
  memory layout of (P, in, out): its transpose, what the batched matmul reads, is contiguous (paper size, batch-1
  window, 1 thread: the stacked code heads 91 -> 81 ms, MAM's branches 41 -> 34 ms, medians of 15 interleaved calls);
- :class:`StackedCopy` builds the stacked module (``stack_modules``) and keeps it until a source parameter changes
  (a new tensor or an in-place update, e.g. an optimizer step or ``load_state_dict``): inference pays the copy
  once, at the price of holding it (the code heads and MAM: 90 M parameters at paper size).

Stacked copies are for inference (no gradients reach the sources).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear`` for a (out, in) weight; for a stacked (P, out, in) weight, x is (P, ..., in) and row block p
    is multiplied by weight p (one batched matmul)."""
    if weight.ndim == 2:
        return F.linear(x, weight, bias)
    rows = x.reshape(x.shape[0], -1, x.shape[-1])
    if bias is None:
        out = torch.bmm(rows, weight.transpose(1, 2))
    else:
        out = torch.baddbmm(bias.unsqueeze(1), rows, weight.transpose(1, 2))
    return out.view(*x.shape[:-1], weight.shape[1])


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and initialisation) that also runs with stacked weights (:func:`linear`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` over the last axis that also runs with stacked (P, d) weights and (P, ..., d) inputs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight is None or self.weight.ndim == 1:
            return super().forward(x)
        normalised = F.layer_norm(x, self.normalized_shape, None, None, self.eps)
        broadcast = (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)
        return torch.addcmul(self.bias.view(broadcast), normalised, self.weight.view(broadcast))


def _multiplies_inputs(owner: nn.Module, attribute: str) -> bool:
    """Whether the parameter ``owner.attribute`` is a (out, in) matrix that :func:`linear` multiplies inputs by
    (a linear map's weight, or an attention's packed input projection)."""
    return (isinstance(owner, nn.Linear) and attribute == "weight") or attribute == "in_proj_weight"


def stack_modules(modules: Sequence[nn.Module]) -> nn.Module:
    """A copy of ``modules[0]`` (eval mode, no gradients) whose every parameter is the stack (P, ...) of the
    modules' parameters of that name. The modules must have the same structure and parameter shapes. Stacked
    weights of :func:`linear` are laid out as their transposes (module docstring): same values and shapes."""
    if not modules:
        raise ValueError("stack_modules needs at least one module")
    names = [name for name, _ in modules[0].named_parameters()]
    for module in modules[1:]:
        shapes = [(name, tuple(value.shape)) for name, value in module.named_parameters()]
        if shapes != [(name, tuple(modules[0].get_parameter(name).shape)) for name in names]:
            raise ValueError(f"stack_modules: {type(module).__name__} differs in structure from the first module")
    stacked = copy.deepcopy(modules[0]).eval().requires_grad_(False)
    for name in names:
        owner_name, _, attribute = name.rpartition(".")
        owner = stacked.get_submodule(owner_name)
        values = torch.stack([module.get_parameter(name).detach() for module in modules])
        if _multiplies_inputs(owner, attribute):
            values = values.transpose(1, 2).contiguous().transpose(1, 2)
        setattr(owner, attribute, nn.Parameter(values, requires_grad=False))
    return stacked


class StackedCopy:
    """``stacked(modules)``: :func:`stack_modules` of ``modules``, rebuilt only when one of their parameters is
    replaced or changed in place since the last call (module docstring)."""

    def __init__(self) -> None:
        self._fingerprint: tuple | None = None
        self._module: nn.Module | None = None

    def __call__(self, modules: Sequence[nn.Module]) -> nn.Module:
        fingerprint = tuple(
            (parameter.data_ptr(), parameter._version, parameter.dtype, parameter.device)
            for module in modules
            for parameter in module.parameters()
        )
        if fingerprint != self._fingerprint:
            self._module = None  # free the old copy before building the new one
            self._module = stack_modules(modules)
            self._fingerprint = fingerprint
        return self._module

    def __deepcopy__(self, memo: dict) -> StackedCopy:
        return StackedCopy()  # a copied model (e.g. the EMA copy) builds its own

    def clear(self) -> None:
        """Drop the stacked copy (its memory); the next call rebuilds it."""
        self._fingerprint, self._module = None, None
