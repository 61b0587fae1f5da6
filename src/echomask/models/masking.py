"""Frame-mask selection for the masked generator (SPEC §6.3, §6.5). Pure functions, no parameters.

Convention: a mask is a (B, T) bool tensor, True = the frame is MASKED (hidden from the generator).

Speech-queried selection of ``num_masked`` frames per row (paper: 24 of 64 = 37.5 %):
1. hard: the ``round(hard_fraction · num_masked)`` top-scored frames;
2. soft: ``round(soft_fraction · num_masked)`` frames sampled without replacement, in proportion
   to their score, from a pool of the next-best ``ceil(soft_pool_factor · group)`` frames (the pool
   is larger than the group, unlike the release, where it equals the group and the step is a no-op);
3. uniform: the rest, uniformly at random among the frames not chosen yet.
The hard/soft split follows :func:`mask_schedule` over training (hard 0 → 0.2, soft 0.2 → 0).

Seed frames: the spec counts 24 of all 64 frames and exempts none, and pass A (SPEC §6.5) already
trains the seeded situation, so by default every frame can be masked. ``keep_first=4`` keeps the
seed frames visible instead (they are then never chosen by any part).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

MASK_STRATEGIES = ("speech_queried", "random", "loss_based", "none")


@dataclass
class MaskSelection:
    """Which frames each part of :func:`select_mask_parts` chose; all (B, T) bool.

    mask = hard | soft | uniform (disjoint). soft_pool: the candidates the soft group was drawn from."""

    mask: torch.Tensor
    hard: torch.Tensor
    soft: torch.Tensor
    uniform: torch.Tensor
    soft_pool: torch.Tensor


def group_sizes(num_masked: int, hard_fraction: float, soft_fraction: float) -> tuple[int, int, int]:
    """(hard, soft, uniform) frame counts that add up to ``num_masked``."""
    if hard_fraction < 0 or soft_fraction < 0 or hard_fraction + soft_fraction > 1 + 1e-9:
        raise ValueError(
            f"mask fractions must be non-negative and sum to at most 1, got hard={hard_fraction}, soft={soft_fraction}"
        )
    num_hard = round(hard_fraction * num_masked)
    num_soft = min(round(soft_fraction * num_masked), num_masked - num_hard)
    return num_hard, num_soft, num_masked - num_hard - num_soft


def _flags(indices: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(B, K) frame indices -> (B, num_frames) bool, True at those frames."""
    flags = torch.zeros(indices.shape[0], num_frames, dtype=torch.bool, device=indices.device)
    return flags.scatter(1, indices, True)


def select_mask_parts(
    scores: torch.Tensor,
    num_masked: int = 24,  # 37.5 % of 64 frames (SPEC §6.3)
    hard_fraction: float = 0.0,
    soft_fraction: float = 0.2,
    soft_pool_factor: float = 2.0,  # pool size / soft group size; must be > 1 (SPEC §6.3: pool larger than the group)
    keep_first: int = 0,  # frames 0 … keep_first − 1 are never masked
    generator: torch.Generator | None = None,
) -> MaskSelection:
    """Score-driven mask of exactly ``num_masked`` frames per row, parts reported separately.

    scores: (B, T) non-negative frame scores (e.g. SQA attention). If a row's soft pool has only
    zero scores, its soft group is drawn uniformly from the pool. The pool is capped by the frames
    left after the hard part.
    """
    if scores.ndim != 2:
        raise ValueError(f"select_mask: scores must be (B, T), got {tuple(scores.shape)}")
    if not torch.isfinite(scores).all() or (scores < 0).any():
        raise ValueError("select_mask: scores must be finite and non-negative")
    if soft_pool_factor <= 1:
        raise ValueError(
            f"select_mask: soft_pool_factor must be > 1 (the pool is larger than the group), got {soft_pool_factor}"
        )
    batch, num_frames = scores.shape
    num_candidates = num_frames - keep_first
    if keep_first < 0 or not 0 <= num_masked <= num_candidates:
        raise ValueError(
            f"select_mask: cannot mask {num_masked} of {num_frames} frames while keeping the first {keep_first} visible"
        )
    num_hard, num_soft, num_uniform = group_sizes(num_masked, hard_fraction, soft_fraction)
    scores = scores.detach()
    ranked = torch.argsort(scores[:, keep_first:], dim=1, descending=True, stable=True) + keep_first
    hard = _flags(ranked[:, :num_hard], num_frames)

    pool_size = min(math.ceil(soft_pool_factor * num_soft), num_candidates - num_hard)
    pool_indices = ranked[:, num_hard : num_hard + pool_size]
    soft_pool = _flags(pool_indices, num_frames)
    soft = torch.zeros_like(hard)
    if num_soft:
        weights = scores.gather(1, pool_indices).to(torch.float64)
        weights = torch.where(weights.sum(1, keepdim=True) > 0, weights, torch.ones_like(weights))
        drawn = torch.multinomial(weights, num_soft, replacement=False, generator=generator)
        soft = _flags(pool_indices.gather(1, drawn), num_frames)

    unavailable = hard | soft
    unavailable[:, :keep_first] = True
    random_keys = torch.rand(batch, num_frames, generator=generator, device=scores.device)
    random_keys = random_keys.masked_fill(unavailable, -1.0)
    uniform = _flags(random_keys.topk(num_uniform, dim=1).indices, num_frames)
    return MaskSelection(mask=hard | soft | uniform, hard=hard, soft=soft, uniform=uniform, soft_pool=soft_pool)


def select_mask(
    scores: torch.Tensor,
    num_masked: int = 24,
    hard_fraction: float = 0.0,
    soft_fraction: float = 0.2,
    soft_pool_factor: float = 2.0,
    keep_first: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(B, T) bool mask of exactly ``num_masked`` frames per row; see :func:`select_mask_parts`."""
    selection = select_mask_parts(
        scores,
        num_masked=num_masked,
        hard_fraction=hard_fraction,
        soft_fraction=soft_fraction,
        soft_pool_factor=soft_pool_factor,
        keep_first=keep_first,
        generator=generator,
    )
    return selection.mask


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


def random_mask(
    batch_size: int,
    num_frames: int,
    num_masked: int = 24,
    keep_first: int = 0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(B, T) bool mask of ``num_masked`` frames per row chosen uniformly at random."""
    flat_scores = torch.zeros(batch_size, num_frames, device=device)
    return select_mask(
        flat_scores,
        num_masked=num_masked,
        hard_fraction=0.0,
        soft_fraction=0.0,
        keep_first=keep_first,
        generator=generator,
    )


def loss_based_mask(
    per_frame_loss: torch.Tensor,
    num_masked: int = 24,
    hard_fraction: float = 0.0,
    soft_fraction: float = 0.2,
    soft_pool_factor: float = 2.0,
    keep_first: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The speech-queried selection rule with a per-frame loss (B, T) (≥ 0) as the score.

    This is the ``loss_based`` ablation: same hard/soft/uniform split and schedule, only the score
    source differs (frames the model reconstructs worst are masked first)."""
    return select_mask(
        per_frame_loss.detach(),
        num_masked=num_masked,
        hard_fraction=hard_fraction,
        soft_fraction=soft_fraction,
        soft_pool_factor=soft_pool_factor,
        keep_first=keep_first,
        generator=generator,
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


def make_mask(
    strategy: str,
    *,
    batch_size: int,
    num_frames: int,
    progress: float,
    scores: torch.Tensor | None = None,
    per_frame_loss: torch.Tensor | None = None,
    num_masked: int = 24,
    soft_pool_factor: float = 2.0,
    keep_first: int = 0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The (B, T) bool mask of passes B/C for a masking ``strategy`` (SPEC §6.3, the ablation axis).

    speech_queried: needs ``scores`` (SQA); loss_based: needs ``per_frame_loss``; random: uniform;
    none: nothing masked (an all-False mask; the caller may skip the masked passes).
    The hard/soft fractions come from :func:`mask_schedule` at ``progress``.
    """
    if strategy not in MASK_STRATEGIES:
        raise ValueError(f"unknown masking strategy {strategy!r}; choose one of {MASK_STRATEGIES}")
    hard_fraction, soft_fraction = mask_schedule(progress)
    if strategy == "speech_queried":
        if scores is None:
            raise ValueError("masking strategy 'speech_queried' needs the SQA frame scores")
        return select_mask(
            scores,
            num_masked=num_masked,
            hard_fraction=hard_fraction,
            soft_fraction=soft_fraction,
            soft_pool_factor=soft_pool_factor,
            keep_first=keep_first,
            generator=generator,
        )
    if strategy == "loss_based":
        if per_frame_loss is None:
            raise ValueError("masking strategy 'loss_based' needs a per-frame loss")
        return loss_based_mask(
            per_frame_loss,
            num_masked=num_masked,
            hard_fraction=hard_fraction,
            soft_fraction=soft_fraction,
            soft_pool_factor=soft_pool_factor,
            keep_first=keep_first,
            generator=generator,
        )
    if strategy == "random":
        return random_mask(batch_size, num_frames, num_masked, keep_first, generator, device)
    return torch.zeros(batch_size, num_frames, dtype=torch.bool, device=device)
