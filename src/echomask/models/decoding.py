"""How a window's code indices are chosen from the generator's logits (inference only).

- ``argmax`` (the paper's and the release's inference): one generator pass, the most likely code of every
  token and RVQ layer. The default everywhere.
- ``temperature`` / ``top_k`` sampling (:func:`choose_codes`): one pass, codes drawn from
  softmax(logits / temperature), restricted to the ``top_k`` most likely codes.
- ``iterative`` re-masking (:func:`iterative_decoding`, after MoMask's base-layer decoding): ``steps`` passes.
  After each pass the most confident still-masked tokens (softmax probability of their layer-0 code, averaged
  over the four parts) are fixed, decoded to motion and shown to the next pass as visible frames; the rest stay
  masked. How many stay masked after pass s of S follows MoMask's cosine schedule,
  ``floor(M · cos(π/2 · s / S))`` of the M masked tokens, so the last pass fixes all of them.

Both options are off by default; they exist to test whether argmax decoding collapses to the mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from einops import rearrange, repeat


@dataclass(frozen=True)
class Decoding:
    """How inference chooses a window's codes (module docstring). The defaults are the paper's: argmax, one pass.

    temperature: 0 = argmax; > 0 samples from softmax(logits / temperature).
    top_k: sample among the ``top_k`` most likely codes only (None: all).
    steps: generator passes per window; > 1 = iterative confidence-based re-masking.
    """

    temperature: float = 0.0
    top_k: int | None = None
    steps: int = 1

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"decoding: temperature must be >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"decoding: top_k must be >= 1 or None, got {self.top_k}")
        if self.steps < 1:
            raise ValueError(f"decoding: steps must be >= 1, got {self.steps}")


WindowPass = Callable[[torch.Tensor, torch.Tensor], Mapping[str, torch.Tensor]]
"""(visible window (B, T, D), frame mask (B, T) bool, True = masked) -> part -> logits (B, N, L, K)."""

DecodeWindow = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]
"""part -> indices (B, N, L) -> the window's motion (B, T, D) as the generator sees it."""


def choose_codes(
    logits: torch.Tensor,
    temperature: float = 0.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Code indices from logits (..., K) -> (...) int64.

    temperature 0: argmax (the paper's inference). Otherwise sample from softmax(logits / temperature),
    restricted to the ``top_k`` most likely codes when given.
    """
    if temperature < 0:
        raise ValueError(f"choose_codes: temperature must be >= 0, got {temperature}")
    if top_k is not None and not 1 <= top_k <= logits.shape[-1]:
        raise ValueError(f"choose_codes: top_k must be in 1..{logits.shape[-1]}, got {top_k}")
    if temperature == 0:
        return logits.argmax(dim=-1)
    scaled = logits.float() / temperature
    if top_k is not None:
        kth_best = scaled.topk(top_k, dim=-1).values[..., -1:]
        scaled = scaled.masked_fill(scaled < kth_best, float("-inf"))
    probabilities = rearrange(scaled.softmax(dim=-1), "... k -> (...) k")
    drawn = torch.multinomial(probabilities, 1, generator=generator)
    return drawn.reshape(logits.shape[:-1])


def token_confidence(logits: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """part -> logits (B, N, L, K) -> (B, N): the layer-0 softmax probability of the most likely code, averaged
    over the parts (how sure the generator is of a token's base code)."""
    per_part = [part_logits[:, :, 0].float().softmax(dim=-1).amax(dim=-1) for part_logits in logits.values()]
    return torch.stack(per_part).mean(dim=0)


def masked_after(num_masked: int, step: int, steps: int) -> int:
    """Tokens still masked after pass ``step`` (1-based) of ``steps``: MoMask's cosine schedule
    floor(num_masked · cos(π/2 · step / steps)); 0 after the last pass."""
    if not 1 <= step <= steps:
        raise ValueError(f"masked_after: step must be in 1..{steps}, got {step}")
    return math.floor(num_masked * math.cos(math.pi / 2 * step / steps) + 1e-9) if step < steps else 0


def keep_least_confident(masked: torch.Tensor, confidence: torch.Tensor, count: int) -> torch.Tensor:
    """masked (B, N) bool, confidence (B, N) -> (B, N) bool: of each row's masked tokens, the ``count`` least
    confident stay masked; every other token is fixed."""
    if count == 0:
        return torch.zeros_like(masked)
    ranked = confidence.masked_fill(~masked, float("inf"))
    least_confident = ranked.topk(count, dim=1, largest=False).indices
    return torch.zeros_like(masked).scatter(1, least_confident, True) & masked


def iterative_decoding(
    window: torch.Tensor,
    masked_tokens: torch.Tensor,
    mask_embedding: torch.Tensor,
    window_pass: WindowPass,
    decode_window: DecodeWindow,
    decoding: Decoding,
    generator: torch.Generator | None = None,
) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    """Iterative confidence-based re-masking of one window (module docstring).

    Args:
        window: (B, T, D) the window's visible motion (the seed frames; masked frames are ignored).
        masked_tokens: (B, N) bool, True for tokens to generate (the same count in every row); T = N · f.
        mask_embedding: (D,) what a masked frame looks like to the generator.
        window_pass: one generator pass (:data:`WindowPass`).
        decode_window: stage-1 decoding of a window's indices (:data:`DecodeWindow`).
        decoding: passes per window (``steps``; 1 = one pass, the same as :func:`choose_codes` on its logits) and
            how each pass chooses its codes (``temperature``, ``top_k``).
        generator: the random generator for sampling.

    Returns:
        part -> indices (B, N, L) (the tokens not masked at the start keep the first pass's choice), and the
        frame mask (B, T) of every pass (for inspection and tests).
    """
    steps = decoding.steps
    counts = masked_tokens.sum(dim=1)
    if not bool((counts == counts[0]).all()):
        raise ValueError(f"iterative_decoding: every row must mask the same number of tokens, got {counts.tolist()}")
    frames_per_token, remainder = divmod(window.shape[1], masked_tokens.shape[1])
    if remainder:
        raise ValueError(
            f"iterative_decoding: {window.shape[1]} frames do not split into {masked_tokens.shape[1]} tokens"
        )
    num_masked = int(counts[0])
    visible, masked = window, masked_tokens
    indices: dict[str, torch.Tensor] = {}
    frame_masks = []
    for step in range(1, steps + 1):
        frame_mask = repeat(masked, "b n -> b (n f)", f=frames_per_token)
        frame_masks.append(frame_mask)
        shown = torch.where(rearrange(frame_mask, "b t -> b t 1"), mask_embedding.to(visible.dtype), visible)
        logits = window_pass(shown, frame_mask)
        chosen = {
            part: choose_codes(part_logits, decoding.temperature, decoding.top_k, generator)
            for part, part_logits in logits.items()
        }
        fill = rearrange(masked, "b n -> b n 1")
        indices = {part: torch.where(fill, chosen[part], indices[part]) if indices else chosen[part] for part in chosen}
        if step == steps:
            break
        masked = keep_least_confident(masked, token_confidence(logits), masked_after(num_masked, step, steps))
        decoded = decode_window(indices)
        visible = torch.where(rearrange(frame_mask, "b t -> b t 1"), decoded.to(visible.dtype), visible)
    return indices, frame_masks
