"""MAM, the motion-audio alignment module of the released EchoMask (SPEC §6.2, issue 15 U6).

Every body part p (face, hands, upper, lower) has its OWN modules (the release's ``MAM``):

- a learnable speech query (d,), repeated over the window's T frames, + periodic PE;
- three transformer encoders E1, E2, E3 (2 layers each, d 256, 4 heads, ff 512) and two one-layer
  cross-attention decoders, one to the LOW-level speech features and one to the HIGH-level ones:

      c_p = E3(attend_high(E2(attend_low(E1(PE(query)), PE(low))), PE(high)))     (B, T, d)

  c_p is the part's "motion-aligned speech feature" that the generator reads;
- in training, a motion branch runs the part's quantised ground-truth latent (the sum of its L RVQ code
  vectors, (B, N, d), N = T / frames_per_token) + PE through the SAME E1, E2, E3 -> motion tokens (B, N, d).

Losses per part, summed over parts (the release's ``loss_moau``):

- InfoNCE, one way: c_p average-pooled over token n's frames must pick motion token n among the window's N
  motion tokens (cosine similarity / 0.1), :func:`token_infonce`;
- MSE between an MLP of the pooled c_p and the motion tokens (both sides get gradients, as in the release);
- optional (``match_classifier=True``, the release): a classifier MLP(2d → 2) on [mean pooled c_p ; mean motion
  token] trained with label 1 only. A loss that only ever sees positives cannot learn to match anything
  (SPEC §6.2), so our default leaves it out; ``match_classifier=True`` gives the release's ``loss_moau`` back.

Ablation (the paper's MAM speech-level axis): ``speech_levels`` "both" (the release), "low" or "high": with one
level, both cross-attention decoders read that level's features (same modules and parameters, the other level is
never read).

Options beyond the release (off by default): ``attention_window=w`` lets speech query frame t attend only to
speech frames t − w … t + w; ``batch_negatives=True`` also uses the other windows of the batch as InfoNCE
negatives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange, reduce, repeat
from torch import nn

from echomask.models.attention import Decoder, Encoder
from echomask.models.transformer_blocks import PeriodicPositionalEncoding, mlp

ALIGNMENT_PARTS = ("face", "hands", "upper", "lower")  # the release's order
NUM_BLOCKS = 3  # E1, E2, E3
SPEECH_LEVELS = ("both", "low", "high")


def pool_to_tokens(frames: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """Average-pool (B, T, d) frames to (B, num_tokens, d) tokens; T must be a multiple of num_tokens."""
    if frames.shape[1] % num_tokens:
        raise ValueError(f"cannot pool {frames.shape[1]} frames into {num_tokens} tokens: not a multiple")
    return reduce(frames, "b (n k) d -> b n d", "mean", n=num_tokens)


def band_mask(frames: int, width: int, device: torch.device | None = None) -> torch.Tensor:
    """(frames, frames) bool attention mask, True where attention is NOT allowed: |query - key| > width."""
    if width < 0:
        raise ValueError(f"band_mask: width must be >= 0, got {width}")
    steps = torch.arange(frames, device=device)
    return (steps[:, None] - steps[None, :]).abs() > width


def token_infonce(
    tokens: torch.Tensor,
    frames: torch.Tensor,
    temperature: float = 0.1,  # release
    batch_negatives: bool = False,
) -> torch.Tensor:
    """One-way InfoNCE (the release's ``RhythmicIdentificationLoss``), a scalar.

    tokens (B, N, d); frames (B, T, d), average-pooled to N groups (B, N, d). Each pooled group n must pick its
    own token n among the window's N tokens (with ``batch_negatives``, among all tokens of the batch): logits
    are cosine similarities / temperature, the loss is the mean cross-entropy over the groups. (The release
    builds the (B, N, N) matrix tokens × groups and hands it to ``F.cross_entropy``, whose class axis is axis 1,
    the TOKEN axis: so the softmax runs over tokens, for each speech group.)
    """
    if tokens.ndim != 3 or frames.ndim != 3 or tokens.shape[0] != frames.shape[0] or tokens.shape[2] != frames.shape[2]:
        raise ValueError(
            f"token_infonce needs tokens (B, N, d) and frames (B, T, d), got {tuple(tokens.shape)} and "
            f"{tuple(frames.shape)}"
        )
    candidates = F.normalize(tokens, dim=-1)
    anchors = F.normalize(pool_to_tokens(frames, tokens.shape[1]), dim=-1)
    if batch_negatives:
        anchors = rearrange(anchors, "b n d -> 1 (b n) d")
        candidates = rearrange(candidates, "b n d -> 1 (b n) d")
    logits = anchors @ candidates.transpose(-1, -2) / temperature
    targets = repeat(torch.arange(logits.shape[1], device=logits.device), "n -> b n", b=logits.shape[0])
    return F.cross_entropy(rearrange(logits, "b n m -> (b n) m"), targets.flatten())


class PartAlignment(nn.Module):
    """One part's query, E1–E3, low/high cross-attention decoders and loss heads (see the module docstring)."""

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        dim_feedforward: int,
        layers_per_block: int,
        match_classifier: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.zeros(d_model))  # the release starts its queries at zero
        self.encoders = nn.ModuleList(
            Encoder(d_model, num_heads, dim_feedforward, layers_per_block, dropout) for _ in range(NUM_BLOCKS)
        )
        self.attend_low = Decoder(d_model, num_heads, dim_feedforward, 1, dropout)
        self.attend_high = Decoder(d_model, num_heads, dim_feedforward, 1, dropout)
        self.speech_to_motion = mlp(d_model, d_model, d_model)
        self.match_classifier = mlp(2 * d_model, 2, d_model) if match_classifier else None

    def speech(
        self,
        query: torch.Tensor,
        low: torch.Tensor,
        high: torch.Tensor,
        memory_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """PE'd query (B, T, d), PE'd low/high features (B, T, d) -> c_p (B, T, d)."""
        first, second, third = self.encoders
        x = self.attend_low(first(query), low, memory_mask=memory_mask)
        x = self.attend_high(second(x), high, memory_mask=memory_mask)
        return third(x)

    def motion(self, latent: torch.Tensor) -> torch.Tensor:
        """PE'd quantised latent (B, N, d) -> motion tokens (B, N, d) through the same E1, E2, E3."""
        for encoder in self.encoders:
            latent = encoder(latent)
        return latent

    def losses(
        self, speech: torch.Tensor, motion: torch.Tensor, temperature: float, batch_negatives: bool
    ) -> dict[str, torch.Tensor]:
        """c_p (B, T, d) and motion tokens (B, N, d) -> {"infonce", "mse"[, "match"]} scalars."""
        pooled = pool_to_tokens(speech, motion.shape[1])
        losses = {
            "infonce": token_infonce(motion, speech, temperature, batch_negatives),
            "mse": F.mse_loss(self.speech_to_motion(pooled), motion),
        }
        if self.match_classifier is not None:
            pair = torch.cat([pooled.mean(dim=1), motion.mean(dim=1)], dim=-1)
            positive = torch.ones(pair.shape[0], dtype=torch.long, device=pair.device)
            losses["match"] = F.cross_entropy(self.match_classifier(pair), positive)
        return losses


@dataclass
class AlignmentOutput:
    """speech: part -> c_p (B, T, d). losses: ``"<part>/<term>"`` (term: infonce, mse[, match]) and ``"total"``
    (their sum = the release's ``loss_moau``); empty without ground-truth codes."""

    speech: dict[str, torch.Tensor]
    losses: dict[str, torch.Tensor]


class MotionAudioAlignment(nn.Module):
    """Per-part speech features c_p from low/high speech features, and the alignment losses.

    forward(low (B, T, d), high (B, T, d), codes: part -> (B, L, N, d) ground-truth code vectors or None)
    -> :class:`AlignmentOutput`.
    """

    def __init__(
        self,
        parts: Sequence[str] = ALIGNMENT_PARTS,
        d_model: int = 256,  # release: 256
        num_heads: int = 4,  # release
        dim_feedforward: int = 512,  # release
        layers_per_block: int = 2,  # E1, E2, E3 have 2 layers each (release)
        period: int = 64,  # positional-encoding period (release: pose_length)
        temperature: float = 0.1,  # InfoNCE temperature (release)
        match_classifier: bool = False,  # True: the release's positive-only match loss (module docstring)
        batch_negatives: bool = False,  # True: the batch's other windows are InfoNCE negatives too
        attention_window: int | None = None,  # None: full cross-attention (release); w: frames t-w..t+w only
        dropout: float = 0.1,  # release (also on the positional encodings)
        speech_levels: str = "both",  # release; "low" / "high": the ablation (module docstring)
    ) -> None:
        super().__init__()
        if speech_levels not in SPEECH_LEVELS:
            raise ValueError(f"MotionAudioAlignment: speech_levels must be one of {SPEECH_LEVELS}, got {speech_levels!r}")
        self.speech_levels = speech_levels
        if attention_window is not None and attention_window < 0:
            raise ValueError(f"MotionAudioAlignment: attention_window must be None or >= 0, got {attention_window}")
        self.parts = tuple(parts)
        self.d_model = d_model
        self.temperature = temperature
        self.batch_negatives = batch_negatives
        self.attention_window = attention_window
        self.positional_encoding = PeriodicPositionalEncoding(d_model, period, dropout)
        self.branches = nn.ModuleDict(
            {
                part: PartAlignment(d_model, num_heads, dim_feedforward, layers_per_block, match_classifier, dropout)
                for part in self.parts
            }
        )

    def _check_speech(self, low: torch.Tensor, high: torch.Tensor) -> None:
        if low.shape != high.shape or low.ndim != 3 or low.shape[-1] != self.d_model:
            raise ValueError(
                f"MotionAudioAlignment expects low and high speech features of shape (B, T, {self.d_model}), "
                f"got {tuple(low.shape)} and {tuple(high.shape)}"
            )

    def speech_features(
        self,
        low: torch.Tensor,
        high: torch.Tensor,
        parts: Sequence[str] | None = None,
        stacked: PartAlignment | None = None,
    ) -> dict[str, torch.Tensor]:
        """The speech branch alone (inference, mask scoring): low, high (B, T, d) -> part -> c_p (B, T, d), for
        ``parts`` (default: all; the mask scoring reads only the SQA's query parts). ``stacked``: the branches
        of all parts stacked (models/part_stack.py), run as one module (inference)."""
        self._check_speech(low, high)
        unknown = sorted(set(parts or ()) - set(self.parts))
        if unknown:
            raise ValueError(f"MotionAudioAlignment: unknown parts {unknown}; the parts are {self.parts}")
        chosen = [part for part in self.parts if parts is None or part in parts]
        if self.speech_levels != "both":
            low = high = low if self.speech_levels == "low" else high
        low, high = self.positional_encoding(low), self.positional_encoding(high)
        if stacked is None:
            return {part: self._branch_speech(self.branches[part], low, high) for part in chosen}
        every = self._branch_speech(stacked, *(x.expand(len(self.parts), *x.shape) for x in (low, high)))
        return {part: value for part, value in zip(self.parts, every) if part in chosen}

    def _branch_speech(self, branch: PartAlignment, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """c_p (..., B, T, d) of one branch (or of stacked branches, leading axis P) from PE'd low/high."""
        batch, frames = low.shape[-3:-1]
        band = None if self.attention_window is None else band_mask(frames, self.attention_window, low.device)
        query = self.positional_encoding(repeat(branch.query, "... d -> ... b t d", b=batch, t=frames))
        return branch.speech(query, low, high, band)

    def forward(
        self,
        low: torch.Tensor,
        high: torch.Tensor,
        codes: Mapping[str, torch.Tensor] | None = None,
    ) -> AlignmentOutput:
        speech = self.speech_features(low, high)
        if codes is None:
            return AlignmentOutput(speech=speech, losses={})
        missing = sorted(set(self.parts) - set(codes))
        if missing:
            raise ValueError(f"MotionAudioAlignment: ground-truth codes missing for parts {missing}")
        losses: dict[str, torch.Tensor] = {}
        for part, branch in self.branches.items():
            if codes[part].ndim != 4 or codes[part].shape[0] != low.shape[0] or codes[part].shape[-1] != self.d_model:
                raise ValueError(
                    f"MotionAudioAlignment: codes[{part!r}] must be (B={low.shape[0]}, L, N, {self.d_model}), "
                    f"got {tuple(codes[part].shape)}"
                )
            motion = branch.motion(self.positional_encoding(codes[part].sum(dim=1)))
            part_losses = branch.losses(speech[part], motion, self.temperature, self.batch_negatives)
            losses.update({f"{part}/{term}": value for term, value in part_losses.items()})
        losses["total"] = torch.stack(list(losses.values())).sum()
        return AlignmentOutput(speech=speech, losses=losses)
