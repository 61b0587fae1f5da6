"""Frame-mask selection for the masked generator (SPEC §6.3, §6.5; the release's ``Soft2HardMaskSTE``). No parameters.

Convention: a mask is a (B, T) bool tensor, True = the frame is MASKED (hidden from the generator).

:class:`MaskPolicy` is the policy of passes B and C. It masks ``round(mask_ratio · T)`` frames per row
(release: 0.375 · 64 = 24), chosen from (B, T) frame scores in three groups whose sizes are fractions of the
WHOLE window (the release, issue 15 U3; Python's ``round``, as the release):

1. hard: the ``round(hard · T)`` top-scored frames;
2. soft: ``round(soft · T)`` frames drawn without replacement from a pool of the next-best
   ``ceil(soft_pool_factor · group)`` frames, with probability ∝ score − (the row's lowest score) + 1e-6. In the
   release the pool equals the group, so every pool frame is taken and the "soft" step is a no-op
   (``soft_pool_factor: 1`` gives that back); our default pool is twice the group (SPEC §6.3);
3. uniform: the rest, uniformly at random among the frames not chosen yet.

The hard/soft fractions follow :func:`mask_schedule` over training (release: hard 0 → 0.2, soft 0.2 → 0, i.e.
13 score-driven frames of the 24 all run long). Scores may be negative (the SQA part weights are raw numbers).
Strategies (the paper's ablation axis): ``speech_queried`` (SQA scores), ``loss_based`` (a per-frame loss as the
score), ``random`` (all 24 uniform), ``none`` (no masked passes).

Seed frames: the release masks any of the 64 frames in passes B and C; ``keep_first=4`` keeps the seed frames
visible instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

MASK_STRATEGIES = ("speech_queried", "random", "loss_based", "none")


@dataclass
class MaskSelection:
    """Which frames each group of :func:`select_frames` chose; all (B, T) bool.

    mask = hard | soft | uniform (disjoint). soft_pool: the candidates the soft group was drawn from."""

    mask: torch.Tensor
    hard: torch.Tensor
    soft: torch.Tensor
    uniform: torch.Tensor
    soft_pool: torch.Tensor


def _flags(indices: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(B, K) frame indices -> (B, num_frames) bool, True at those frames."""
    flags = torch.zeros(indices.shape[0], num_frames, dtype=torch.bool, device=indices.device)
    return flags.scatter(1, indices, True)


def select_frames(
    scores: torch.Tensor,
    num_hard: int,
    num_soft: int,
    num_uniform: int,
    soft_pool_factor: float = 2.0,
    keep_first: int = 0,
    generator: torch.Generator | None = None,
) -> MaskSelection:
    """The hard/soft/uniform selection rule (module docstring) with the group sizes given as frame counts.

    scores: (B, T) finite frame scores. The soft pool is capped by the frames left after the hard group.
    """
    if scores.ndim != 2:
        raise ValueError(f"select_frames: scores must be (B, T), got {tuple(scores.shape)}")
    if not torch.isfinite(scores).all():
        raise ValueError("select_frames: scores must be finite")
    if soft_pool_factor < 1:
        raise ValueError(
            f"select_frames: soft_pool_factor must be >= 1 (1: the pool is the group), got {soft_pool_factor}"
        )
    batch, num_frames = scores.shape
    num_candidates = num_frames - keep_first
    num_masked = num_hard + num_soft + num_uniform
    if keep_first < 0 or min(num_hard, num_soft, num_uniform) < 0 or num_masked > num_candidates:
        raise ValueError(
            f"select_frames: cannot mask {num_hard} + {num_soft} + {num_uniform} of {num_frames} frames while "
            f"keeping the first {keep_first} visible"
        )
    scores = scores.detach()
    ranked = torch.argsort(scores[:, keep_first:], dim=1, descending=True, stable=True) + keep_first
    hard = _flags(ranked[:, :num_hard], num_frames)

    pool_size = min(math.ceil(soft_pool_factor * num_soft), num_candidates - num_hard)
    pool_indices = ranked[:, num_hard : num_hard + pool_size]
    soft_pool = _flags(pool_indices, num_frames)
    soft = torch.zeros_like(hard)
    if num_soft:
        floor = scores[:, keep_first:].min(dim=1, keepdim=True).values
        weights = (scores.gather(1, pool_indices) - floor).to(torch.float64) + 1e-6
        drawn = torch.multinomial(weights, num_soft, replacement=False, generator=generator)
        soft = _flags(pool_indices.gather(1, drawn), num_frames)

    unavailable = hard | soft
    unavailable[:, :keep_first] = True
    random_keys = torch.rand(batch, num_frames, generator=generator, device=scores.device)
    random_keys = random_keys.masked_fill(unavailable, -1.0)
    uniform = _flags(random_keys.topk(num_uniform, dim=1).indices, num_frames)
    return MaskSelection(mask=hard | soft | uniform, hard=hard, soft=soft, uniform=uniform, soft_pool=soft_pool)


def mask_schedule(
    progress: float,
    hard_start: float = 0.0,  # SPEC §6.3: hard 0 → 20 %
    hard_end: float = 0.2,
    soft_start: float = 0.2,  # SPEC §6.3: soft 20 % → 0
    soft_end: float = 0.0,
) -> tuple[float, float]:
    """(hard_fraction, soft_fraction) at training ``progress`` in [0, 1], linear in between."""
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"mask_schedule: progress must lie in [0, 1], got {progress}")
    return (
        hard_start + (hard_end - hard_start) * progress,
        soft_start + (soft_end - soft_start) * progress,
    )


def seed_mask(
    batch_size: int,
    num_frames: int,
    num_seed_frames: int = 4,  # SPEC §6.5 pass A / §6.6
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(B, T) bool mask of pass A: every frame masked except the first ``num_seed_frames``."""
    if not 0 <= num_seed_frames <= num_frames:
        raise ValueError(f"seed_mask: {num_seed_frames} seed frames do not fit in {num_frames} frames")
    mask = torch.ones(batch_size, num_frames, dtype=torch.bool, device=device)
    mask[:, :num_seed_frames] = False
    return mask


def window_group_sizes(
    num_frames: int, num_masked: int, hard_fraction: float, soft_fraction: float
) -> tuple[int, int, int]:
    """(hard, soft, uniform) frame counts for fractions of the WHOLE window (the release): hard =
    round(hard_fraction · num_frames), soft = round(soft_fraction · num_frames), uniform = the rest of
    ``num_masked``."""
    num_hard, num_soft = round(hard_fraction * num_frames), round(soft_fraction * num_frames)
    if hard_fraction < 0 or soft_fraction < 0 or num_hard + num_soft > num_masked:
        raise ValueError(
            f"mask fractions hard={hard_fraction}, soft={soft_fraction} of {num_frames} frames give {num_hard} + "
            f"{num_soft} score-driven frames; they must be non-negative and at most the {num_masked} masked frames"
        )
    return num_hard, num_soft, num_masked - num_hard - num_soft


@dataclass(frozen=True)
class MaskPolicy:
    """How passes B and C choose their mask (module docstring); fractions are of the whole window.

    ``score_source`` says which (B, T) scores :meth:`select` needs: "sqa" (the EMA copy's SQA frame scores),
    "loss" (a per-frame loss) or None.
    """

    strategy: str = "speech_queried"
    mask_ratio: float = 0.375  # release: 24 of 64 frames
    hard_schedule: tuple[float, float] = (0.0, 0.2)  # release: hard 0 -> 0.2 of the window over training
    soft_schedule: tuple[float, float] = (0.2, 0.0)  # release: soft 0.2 -> 0
    soft_pool_factor: float = 2.0  # soft pool / soft group; 1 = the release (pool = group, a no-op)
    keep_first: int = 0  # release: 0 (any frame can be masked)

    def __post_init__(self) -> None:
        if self.strategy not in MASK_STRATEGIES:
            raise ValueError(f"unknown masking strategy {self.strategy!r}; choose one of {MASK_STRATEGIES}")
        if not 0.0 <= self.mask_ratio <= 1.0:
            raise ValueError(f"mask_ratio must lie in [0, 1], got {self.mask_ratio}")
        if self.soft_pool_factor < 1:
            raise ValueError(f"soft_pool_factor must be >= 1 (1 = the release's pool), got {self.soft_pool_factor}")
        if self.keep_first < 0:
            raise ValueError(f"keep_first must be >= 0, got {self.keep_first}")

    @property
    def score_source(self) -> str | None:
        return {"speech_queried": "sqa", "loss_based": "loss"}.get(self.strategy)

    def fractions(self, progress: float) -> tuple[float, float]:
        """(hard, soft) fractions of the window at training ``progress`` in [0, 1] (0, 0 for "random")."""
        if self.strategy == "random":
            return 0.0, 0.0
        return mask_schedule(progress, *self.hard_schedule, *self.soft_schedule)

    def select(
        self,
        batch_size: int,
        num_frames: int,
        progress: float,
        scores: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> MaskSelection | None:
        """The mask of passes B and C, or None for the strategy "none". ``scores`` (B, T): see ``score_source``."""
        if self.strategy == "none":
            return None
        if self.score_source is not None and (scores is None or tuple(scores.shape) != (batch_size, num_frames)):
            got = None if scores is None else tuple(scores.shape)
            raise ValueError(
                f"masking strategy {self.strategy!r} needs ({self.score_source}) scores of shape "
                f"{(batch_size, num_frames)}, got {got}"
            )
        if scores is None:
            scores = torch.zeros(batch_size, num_frames, device=device)
        num_masked = round(self.mask_ratio * num_frames)
        sizes = window_group_sizes(num_frames, num_masked, *self.fractions(progress))
        return select_frames(scores, *sizes, self.soft_pool_factor, self.keep_first, generator)
