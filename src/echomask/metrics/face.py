"""Face metrics over SMPL-X face vertices (SPEC §8.1): vertex MSE and two "LVD" variants.

* :class:`FaceVertexMSE`: mean squared vertex error (the paper prints it ×10⁸).
* :class:`FaceLVDPaper`: the paper-era "LVD", ``L1(rec[1:] - tar[:-1], tar[1:] - tar[:-1])``. The ``tar[:-1]``
  terms cancel, so it is ``mean |rec[1:] - tar[1:]|``: **a position error, not a velocity difference.** It is
  reported only to compare with published tables (×10⁵).
* :class:`FaceVelocityError`: the true velocity difference of the later release,
  ``Σ |Δrec - Δtar| / (T · C)`` (divided by ``T``, not ``T - 1``, as that release does).

Accumulation over sequences: the paper-era loop weighted each sequence's value by its frame count ``T``
(``FaceVertexMSE(protocol="paper")`` and ``FaceLVDPaper``); the later release accumulates sums and element counts
(``FaceVertexMSE(protocol="clean")`` and ``FaceVelocityError``). All states are float64 sums.

Without an SMPL-X model the same metrics can be computed on the jaw + expression parameters; construct them with
``label=FACE_LABEL_PARAMETERS`` so that every report says the numbers are not comparable with papers.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import Tensor
from torchmetrics import Metric

FACE_LABEL_VERTICES = "SMPL-X vertices"
FACE_LABEL_PARAMETERS = "jaw+expression parameters (no SMPL-X model: not comparable)"
PROTOCOLS = ("paper", "clean")


class _FaceMetric(Metric):
    """Shared input handling: pairs of ``(T, V·3)`` or ``(T, V, 3)`` sequences, float64 ratio states.

    Subclasses implement :meth:`_increments`, returning the numerator and denominator to add for one sequence.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False
    plot_lower_bound = 0.0
    min_frames = 1

    numerator: Tensor
    denominator: Tensor

    def __init__(self, label: str = FACE_LABEL_VERTICES, **kwargs) -> None:
        super().__init__(**kwargs)
        if not isinstance(label, str) or not label:
            raise ValueError(
                f"{type(self).__name__}: label must be a non-empty string such as {FACE_LABEL_VERTICES!r} or "
                f"{FACE_LABEL_PARAMETERS!r}"
            )
        self.label = label
        self.add_state("numerator", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("denominator", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, rec: Tensor | Sequence[Tensor], tar: Tensor | Sequence[Tensor]) -> None:
        """Add one reconstructed/target pair, or two lists of pairs.

        Args:
            rec: reconstructed face ``(T, V·3)`` or ``(T, V, 3)`` (vertices in metres, or parameters).
            tar: ground truth of the same shape.
        """
        if isinstance(rec, (list, tuple)):
            if not isinstance(tar, (list, tuple)) or len(tar) != len(rec):
                raise ValueError(f"{type(self).__name__}.update: a list of rec sequences needs a list of as many tar")
            pairs = list(zip(rec, tar))
        else:
            pairs = [(rec, tar)]
        for rec_seq, tar_seq in pairs:
            rec_flat, tar_flat = self._flat(rec_seq, "rec"), self._flat(tar_seq, "tar")
            if rec_flat.shape != tar_flat.shape:
                raise ValueError(
                    f"{type(self).__name__}.update: rec and tar must have the same shape, got "
                    f"{tuple(rec_seq.shape)} and {tuple(tar_seq.shape)}"
                )
            numerator, denominator = self._increments(rec_flat, tar_flat)
            self.numerator += numerator
            self.denominator += denominator

    def _flat(self, values: Tensor, name: str) -> Tensor:
        """``(T, C)`` float64 on the metric's device, after checking shape and finiteness."""
        if not isinstance(values, Tensor):
            raise ValueError(
                f"{type(self).__name__}.update: {name} must be a torch tensor, got {type(values).__name__}"
            )
        if values.ndim == 3 and values.shape[2] == 3:
            values = rearrange(values, "frames vertices xyz -> frames (vertices xyz)")
        if values.ndim != 2 or values.shape[0] < self.min_frames:
            raise ValueError(
                f"{type(self).__name__}.update: {name} must have shape (T, V*3) or (T, V, 3) with "
                f"T >= {self.min_frames}, got {tuple(values.shape)}"
            )
        if not torch.isfinite(values).all():
            raise ValueError(f"{type(self).__name__}.update: {name} contains NaN or Inf")
        return values.to(device=self.numerator.device, dtype=torch.float64)

    def _increments(self, rec: Tensor, tar: Tensor) -> tuple[Tensor, Tensor | int]:
        """Numerator and denominator of one sequence pair, both ``(T, C)`` float64."""
        raise NotImplementedError

    def compute(self) -> Tensor:
        """The accumulated value (raw, float64 scalar)."""
        if self.denominator == 0:
            raise ValueError(f"{type(self).__name__}.compute: no sequence was added (call update first)")
        return self.numerator / self.denominator


class FaceVertexMSE(_FaceMetric):
    """Mean squared error of face vertices (raw; the paper prints ×10⁸).

    Args:
        protocol: ``"paper"``: ``Σ_i mse_i · T_i / Σ_i T_i``; ``"clean"``: ``Σ squared errors / Σ (T_i · C)``.
            The two agree up to rounding (they differed only in float32 accumulation).
        label: what the values are, :data:`FACE_LABEL_VERTICES` or :data:`FACE_LABEL_PARAMETERS`.
    """

    def __init__(self, protocol: str = "paper", label: str = FACE_LABEL_VERTICES, **kwargs) -> None:
        super().__init__(label=label, **kwargs)
        if protocol not in PROTOCOLS:
            raise ValueError(f"FaceVertexMSE: protocol must be one of {PROTOCOLS}, got {protocol!r}")
        self.protocol = protocol

    def _increments(self, rec: Tensor, tar: Tensor) -> tuple[Tensor, Tensor | int]:
        squared_error = (rec - tar) ** 2
        num_frames = rec.shape[0]
        if self.protocol == "paper":
            return squared_error.mean() * num_frames, num_frames
        return squared_error.sum(), squared_error.numel()


class FaceLVDPaper(_FaceMetric):
    """The paper-era face "LVD" -- A POSITION ERROR, NOT A VELOCITY DIFFERENCE (raw; the paper prints ×10⁵).

    Per sequence ``mean |(rec[1:] - tar[:-1]) - (tar[1:] - tar[:-1])|`` = ``mean |rec[1:] - tar[1:]|`` over
    ``(T - 1) · C`` values; sequences weighted by ``T`` (not ``T - 1``), as the paper-era loop did. Use
    :class:`FaceVelocityError` for the real velocity difference.
    """

    protocol = "paper"
    min_frames = 2

    def _increments(self, rec: Tensor, tar: Tensor) -> tuple[Tensor, Tensor | int]:
        target_step = tar[1:] - tar[:-1]
        per_sequence = ((rec[1:] - tar[:-1]) - target_step).abs().mean()
        return per_sequence * rec.shape[0], rec.shape[0]


class FaceVelocityError(_FaceMetric):
    """True face velocity difference of the later release (raw; shown ×10⁵ next to the paper LVD).

    ``Σ_i Σ |Δrec_i - Δtar_i| / Σ_i (T_i · C)`` with ``Δx = x[1:] - x[:-1]``; the denominator counts ``T``
    frames, not the ``T - 1`` differences, as that release does.
    """

    protocol = "clean"
    min_frames = 2

    def _increments(self, rec: Tensor, tar: Tensor) -> tuple[Tensor, Tensor | int]:
        velocity_error = (rec[1:] - rec[:-1]) - (tar[1:] - tar[:-1])
        return velocity_error.abs().sum(), rec.numel()
