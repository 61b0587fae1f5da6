"""L1 diversity (L1div) of joint positions (SPEC §8.1).

Per sequence, the sum over frames and the 165 joint coordinates of ``|x - per-coordinate sequence mean|``;
summed over sequences and divided by the total number of frames (not by 165). Unlike the paper-era code, the
input is never modified (that in-place overwrite is what :func:`echomask.metrics.beat_consistency.fold_positions`
reproduces for the paper BC).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import Tensor
from torchmetrics import Metric

from echomask.motion.skeleton import NUM_JOINTS


def sequence_abs_deviation_sum(positions: Tensor) -> Tensor:
    """``Σ_t Σ_d |x[t, d] - mean_t x[:, d]|`` of one sequence, in float64.

    Args:
        positions: ``(T, 55, 3)`` or ``(T, 165)`` joint positions.

    Returns:
        A float64 scalar tensor.
    """
    flat = rearrange(positions, "frames joints xyz -> frames (joints xyz)") if positions.ndim == 3 else positions
    flat = flat.to(torch.float64)
    return (flat - flat.mean(dim=0)).abs().sum()


class L1Diversity(Metric):
    """L1 diversity over sequences of different lengths (SPEC §8.1), float64 sum states.

    Reports the raw value (the paper prints it as is).

    Example:
        >>> div = L1Diversity()
        >>> div.update([torch.rand(90, 55, 3), torch.rand(64, 55, 3)])
        >>> value = div.compute()
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    plot_lower_bound = 0.0

    abs_deviation_sum: Tensor
    frame_count: Tensor

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("abs_deviation_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("frame_count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, joints: Tensor | Sequence[Tensor]) -> None:
        """Add one sequence ``(T, 55, 3)`` / ``(T, 165)`` of joint positions, or a list of them."""
        sequences = joints if isinstance(joints, (list, tuple)) else [joints]
        for positions in sequences:
            _check_positions(positions)
            self.abs_deviation_sum += sequence_abs_deviation_sum(positions).to(self.abs_deviation_sum.device)
            self.frame_count += positions.shape[0]

    def compute(self) -> Tensor:
        """Accumulated absolute deviation divided by the accumulated frame count (float64 scalar)."""
        if self.frame_count == 0:
            raise ValueError("L1Diversity.compute: no frames were added (call update first)")
        return self.abs_deviation_sum / self.frame_count


def _check_positions(positions: Tensor) -> None:
    if not isinstance(positions, Tensor):
        raise ValueError(f"L1Diversity.update: joints must be torch tensors, got {type(positions).__name__}")
    expected = ((NUM_JOINTS, 3), (NUM_JOINTS * 3,))
    if positions.ndim not in (2, 3) or tuple(positions.shape[1:]) not in expected or positions.shape[0] == 0:
        raise ValueError(
            f"L1Diversity.update: joints must have shape (T, {NUM_JOINTS}, 3) or (T, {NUM_JOINTS * 3}) with T >= 1, "
            f"got {tuple(positions.shape)}"
        )
    if not torch.isfinite(positions).all():
        raise ValueError("L1Diversity.update: joints contain NaN or Inf")
