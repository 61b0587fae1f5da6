"""The speech-queried masked generator of stage 2 (SPEC §6.4), a plain nn.Module.

Data flow for one window of T frames (paper: T = 64, N = T / 4 = 16 RVQ tokens, L = 6 RVQ layers):

1. MAM (``self.mam``, SPEC §6.2): speech features low/high -> c_p (B, T, 256) for every part.
2. Body hint: masked frames of the motion window are replaced by a learned mask embedding, then a
   conv motion encoder -> (B, T, 256).
3. Face branch: a decoder whose target is speaker embedding + PE and whose memory is
   Linear([c_face ; MLP(hint)]) -> (B, T, 768) -> strided conv (kernel = stride = 4) -> (B, N, 256).
4. Body branch: MLP(hint) -> 768 + speaker + PE -> encoder layer (+ speech injection) -> strided
   conv to T/2 steps -> for upper/hands/lower a Linear, then a 1-layer decoder whose memory is the
   sum of the other two parts' inputs -> strided conv (kernel = stride = 2) -> (B, N, 256).
5. Cross-part fusion (1-layer decoders, all from the pre-fusion latents): hands <- face,
   face <- hands, upper <- hands + lower, lower <- upper + hands. The fused latent is the part's
   "base latent" and is itself the prediction of the RVQ layer-0 code vector.
6. RVQ heads: layer 0 an MLP classifier on the base latent; layer i >= 1 a 3-layer decoder
   (d 256, 8 heads) over base latent + code vectors of layers < i (teacher-forced from the ground
   truth in training, looked up from the chosen indices in inference), cross-attending to c_p,
   with an MLP classifier and a Linear code-vector regressor.

The SQA module (``self.sqa``, SPEC §6.3) lives here too, so that an EMA copy of this module scores
frames; its decoder output is the ``injection`` argument of :meth:`EchoMaskGenerator.forward`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from einops import rearrange, repeat
from torch import nn

from echomask.models.decoding import choose_codes
from echomask.models.mam import MAM_PARTS, MotionAudioAlignment
from echomask.models.sqa import SQA_PARTS, SpeechQueriedAttention
from echomask.models.transformer_blocks import (
    MotionEncoder,
    PeriodicPositionalEncoding,
    TemporalDownsample,
    mlp,
    transformer_decoder,
    transformer_encoder,
)

BODY_PARTS = ("upper", "hands", "lower")
GENERATOR_PARTS = ("face",) + BODY_PARTS
# cross-part fusion: part <- the parts whose (summed) latents it attends to (SPEC §6.4)
FUSION_SOURCES = {
    "hands": ("face",),
    "face": ("hands",),
    "upper": ("hands", "lower"),
    "lower": ("upper", "hands"),
}

CodeLookup = Callable[[str, int, torch.Tensor], torch.Tensor]
"""(part, rvq_layer, indices (B, N) int64) -> code vectors (B, N, latent_dim) of the frozen stage-1 RVQ."""


@dataclass
class GeneratorOutput:
    """Everything one generator pass produces; ``part`` runs over face, upper, hands, lower.

    logits: part -> (L, B, N, K) per RVQ layer.
    code_vectors: part -> (L, B, N, latent_dim) predicted code vectors (layer 0 = the base latent).
    latents: part -> (B, N, latent_dim) fused base latents (for the pass-A InfoNCE terms, SPEC §6.5).
    speech: part -> c_p (B, T, speech_dim) from MAM.
    alignment_losses: the MAM terms (see ``MotionAudioAlignment.alignment_losses``); empty without ground truth
        or with ``alignment=False``.
    indices: part -> (B, N, L) chosen code indices; None when teacher-forced.
    """

    logits: dict[str, torch.Tensor]
    code_vectors: dict[str, torch.Tensor]
    latents: dict[str, torch.Tensor]
    speech: dict[str, torch.Tensor]
    alignment_losses: dict[str, torch.Tensor]
    indices: dict[str, torch.Tensor] | None


class EchoMaskGenerator(nn.Module):
    """Masked generator of RVQ codes from speech and a partly visible motion window (SPEC §6.4)."""

    def __init__(
        self,
        motion_dim: int = 337,  # whole-body stream (SPEC §4.2)
        num_speakers: int = 25,  # BEAT2 (SPEC §6.1)
        frames_per_token: int = 4,  # 64 frames -> 16 RVQ tokens (SPEC §5.1)
        body_stride: int = 2,  # body branch: strided conv 64 -> 32 steps (SPEC §6.4)
        speech_dim: int = 256,  # MAM width = c_p size (SPEC §6.2)
        latent_dim: int = 256,  # RVQ code size (SPEC §5.1)
        hidden_dim: int = 768,  # SPEC §6.3, §6.4
        hidden_heads: int = 4,  # heads of the 768-wide layers
        encoder_width: int = 256,  # conv motion encoder (SPEC §6.3)
        encoder_blocks: int = 3,  # SPEC §6.3
        face_decoder_layers: int = 4,  # SPEC §6.4
        body_encoder_layers: int = 1,  # SPEC §6.4
        part_decoder_layers: int = 1,  # SPEC §6.4
        fusion_layers: int = 1,  # SPEC §6.4
        num_rvq_layers: int = 6,  # SPEC §5.1
        codebook_size: int = 256,  # SPEC §5.1
        cascade_layers: int = 3,  # decoder layers per RVQ layer >= 1 (SPEC §6.4)
        latent_heads: int = 8,  # heads of the 256-wide fusion and cascade decoders (SPEC §6.4)
        feedforward_multiplier: int = 2,  # feed-forward size = multiplier × width (MAM: 512 = 2 × 256)
        mam_heads: int = 4,  # SPEC §6.2
        mam_layers_per_block: int = 2,  # SPEC §6.2
        mam_temperature: float = 0.1,  # SPEC §6.2
        mam_batch_negatives: bool = False,
        mam_attention_window: int | None = None,  # None: full cross-attention (paper); see MotionAudioAlignment
        sqa_layers: int = 8,  # SPEC §6.3
        sqa_heads: int = 4,  # SPEC §6.3
        period: int = 64,  # positional-encoding period (SPEC §6.2)
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if frames_per_token % body_stride:
            raise ValueError(f"frames_per_token={frames_per_token} must be a multiple of body_stride={body_stride}")
        if num_rvq_layers < 1:
            raise ValueError(f"num_rvq_layers must be at least 1, got {num_rvq_layers}")
        self.motion_dim = motion_dim
        self.num_speakers = num_speakers
        self.frames_per_token = frames_per_token
        self.speech_dim = speech_dim
        self.latent_dim = latent_dim
        self.hidden_dim = hidden_dim
        self.num_rvq_layers = num_rvq_layers
        self.codebook_size = codebook_size
        hidden_feedforward = feedforward_multiplier * hidden_dim
        latent_feedforward = feedforward_multiplier * latent_dim

        self.mam = MotionAudioAlignment(
            parts=MAM_PARTS,
            d_model=speech_dim,
            num_heads=mam_heads,
            dim_feedforward=feedforward_multiplier * speech_dim,
            layers_per_block=mam_layers_per_block,
            frames_per_token=frames_per_token,
            period=period,
            temperature=mam_temperature,
            batch_negatives=mam_batch_negatives,
            attention_window=mam_attention_window,
            dropout=dropout,
        )
        self.sqa = SpeechQueriedAttention(
            motion_dim=motion_dim,
            speech_dim=speech_dim,
            encoder_width=encoder_width,
            encoder_blocks=encoder_blocks,
            d_model=hidden_dim,
            num_heads=sqa_heads,
            dim_feedforward=hidden_feedforward,
            num_layers=sqa_layers,
            num_speakers=num_speakers,
            parts=SQA_PARTS,
            period=period,
            dropout=dropout,
        )

        self.mask_embedding = nn.Parameter(torch.randn(motion_dim) * 0.02)
        self.motion_encoder = MotionEncoder(motion_dim, encoder_width, encoder_blocks)
        self.speaker_embedding = nn.Embedding(num_speakers, hidden_dim)
        self.positional_encoding = PeriodicPositionalEncoding(hidden_dim, period)

        self.face_hint_mlp = mlp(encoder_width, encoder_width)
        self.face_memory_projection = nn.Linear(speech_dim + encoder_width, hidden_dim)
        self.face_decoder = transformer_decoder(
            hidden_dim, hidden_heads, hidden_feedforward, face_decoder_layers, dropout
        )
        self.face_downsample = TemporalDownsample(hidden_dim, latent_dim, frames_per_token)

        self.body_hint_mlp = mlp(encoder_width, hidden_dim)
        self.body_encoder = transformer_encoder(
            hidden_dim, hidden_heads, hidden_feedforward, body_encoder_layers, dropout
        )
        self.body_downsample = TemporalDownsample(hidden_dim, hidden_dim, body_stride)
        self.part_inputs = nn.ModuleDict({part: nn.Linear(hidden_dim, hidden_dim) for part in BODY_PARTS})
        self.part_decoders = nn.ModuleDict(
            {
                part: transformer_decoder(hidden_dim, hidden_heads, hidden_feedforward, part_decoder_layers, dropout)
                for part in BODY_PARTS
            }
        )
        self.part_downsample = nn.ModuleDict(
            {part: TemporalDownsample(hidden_dim, latent_dim, frames_per_token // body_stride) for part in BODY_PARTS}
        )

        self.fusion = nn.ModuleDict(
            {
                part: transformer_decoder(latent_dim, latent_heads, latent_feedforward, fusion_layers, dropout)
                for part in GENERATOR_PARTS
            }
        )
        self.classifiers = nn.ModuleDict(
            {
                part: nn.ModuleList(mlp(latent_dim, codebook_size, latent_dim) for _ in range(num_rvq_layers))
                for part in GENERATOR_PARTS
            }
        )
        self.cascade = nn.ModuleDict(
            {
                part: nn.ModuleList(
                    transformer_decoder(latent_dim, latent_heads, latent_feedforward, cascade_layers, dropout)
                    for _ in range(num_rvq_layers - 1)
                )
                for part in GENERATOR_PARTS
            }
        )
        self.regressors = nn.ModuleDict(
            {
                part: nn.ModuleList(nn.Linear(latent_dim, latent_dim) for _ in range(num_rvq_layers - 1))
                for part in GENERATOR_PARTS
            }
        )

    # ------------------------------------------------------------------ input checks

    def _check_inputs(
        self,
        motion: torch.Tensor,
        mask: torch.Tensor,
        speaker: torch.Tensor,
        low: torch.Tensor,
        high: torch.Tensor,
        injection: torch.Tensor | None,
    ) -> None:
        if motion.ndim != 3 or motion.shape[-1] != self.motion_dim:
            raise ValueError(f"EchoMaskGenerator: motion must be (B, T, {self.motion_dim}), got {tuple(motion.shape)}")
        batch, frames, _ = motion.shape
        if frames % self.frames_per_token:
            raise ValueError(
                f"EchoMaskGenerator: T={frames} frames is not a multiple of frames_per_token={self.frames_per_token}"
            )
        if mask.shape != (batch, frames) or mask.dtype != torch.bool:
            raise ValueError(
                f"EchoMaskGenerator: mask must be a bool tensor of shape {(batch, frames)}, "
                f"got {mask.dtype} {tuple(mask.shape)}"
            )
        if speaker.shape != (batch,):
            raise ValueError(f"EchoMaskGenerator: speaker must be ({batch},), got {tuple(speaker.shape)}")
        if speaker.numel() and (speaker.min() < 0 or speaker.max() >= self.num_speakers):
            raise ValueError(
                f"EchoMaskGenerator: speaker ids must lie in [0, {self.num_speakers}), got {speaker.tolist()}"
            )
        for name, features in (("low", low), ("high", high)):
            if features.shape != (batch, frames, self.speech_dim):
                raise ValueError(
                    f"EchoMaskGenerator: {name} speech features must be {(batch, frames, self.speech_dim)}, "
                    f"got {tuple(features.shape)}"
                )
        if injection is not None and injection.shape != (batch, frames, self.hidden_dim):
            raise ValueError(
                f"EchoMaskGenerator: injection must be {(batch, frames, self.hidden_dim)}, got {tuple(injection.shape)}"
            )

    def _check_codes(self, gt_codes: Mapping[str, torch.Tensor], batch: int, num_tokens: int) -> None:
        expected = (self.num_rvq_layers, batch, num_tokens, self.latent_dim)
        for part in GENERATOR_PARTS:
            if part not in gt_codes:
                raise ValueError(f"EchoMaskGenerator: gt_codes has no entry for part {part!r}")
            if tuple(gt_codes[part].shape) != expected:
                raise ValueError(
                    f"EchoMaskGenerator: gt_codes[{part!r}] must be {expected}, got {tuple(gt_codes[part].shape)}"
                )

    # ------------------------------------------------------------------ network pieces

    def body_hint(self, motion: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Masked frames -> mask embedding, then the conv motion encoder: (B, T, 337) -> (B, T, encoder_width)."""
        masked_motion = torch.where(rearrange(mask, "b t -> b t 1"), self.mask_embedding.to(motion.dtype), motion)
        return self.motion_encoder(masked_motion)

    def _speaker_and_position(self, speaker: torch.Tensor, frames: int) -> torch.Tensor:
        """(B, frames, hidden_dim): speaker embedding + periodic PE."""
        return self.positional_encoding(repeat(self.speaker_embedding(speaker), "b d -> b t d", t=frames))

    def face_latent(self, hint: torch.Tensor, face_speech: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
        """Face branch: hint (B, T, w), c_face (B, T, d) -> (B, N, latent_dim)."""
        memory = self.face_memory_projection(torch.cat([face_speech, self.face_hint_mlp(hint)], dim=-1))
        target = self._speaker_and_position(speaker, hint.shape[1])
        return self.face_downsample(self.face_decoder(target, memory))

    def body_latents(
        self,
        hint: torch.Tensor,
        speaker: torch.Tensor,
        injection: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        """Body branch: hint (B, T, w) -> part -> (B, N, latent_dim) for upper, hands, lower."""
        x = self.body_hint_mlp(hint) + self._speaker_and_position(speaker, hint.shape[1])
        x = self.body_encoder(x)
        if injection is not None:
            x = x + injection
        x = self.body_downsample(x)
        inputs = {part: self.part_inputs[part](x) for part in BODY_PARTS}
        latents = {}
        for part in BODY_PARTS:
            memory = sum(inputs[other] for other in BODY_PARTS if other != part)
            latents[part] = self.part_downsample[part](self.part_decoders[part](inputs[part], memory))
        return latents

    def fuse(self, latents: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Cross-part fusion: every part attends to the summed latents of its FUSION_SOURCES."""
        return {
            part: self.fusion[part](latents[part], sum(latents[source] for source in FUSION_SOURCES[part]))
            for part in GENERATOR_PARTS
        }

    def rvq_heads(
        self,
        part: str,
        base_latent: torch.Tensor,
        part_speech: torch.Tensor,
        gt_codes: torch.Tensor | None,
        code_lookup: CodeLookup | None,
        temperature: float,
        top_k: int | None,
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Logits (L, B, N, K), code vectors (L, B, N, d) and, without teacher forcing, indices (B, N, L).

        Layer i >= 1 sees base latent + code vectors of layers < i: ``gt_codes`` (L, B, N, d) when
        given, else ``code_lookup`` of the indices chosen from the previous layers' logits.
        """
        logits = [self.classifiers[part][0](base_latent)]
        vectors = [base_latent]
        chosen = []
        running = base_latent
        for layer in range(1, self.num_rvq_layers):
            if gt_codes is not None:
                previous_code = gt_codes[layer - 1]
            else:
                chosen.append(choose_codes(logits[-1], temperature, top_k, generator))
                previous_code = code_lookup(part, layer - 1, chosen[-1])
            running = running + previous_code
            hidden = self.cascade[part][layer - 1](running, part_speech)
            logits.append(self.classifiers[part][layer](hidden))
            vectors.append(self.regressors[part][layer - 1](hidden))
        indices = None
        if gt_codes is None:
            chosen.append(choose_codes(logits[-1], temperature, top_k, generator))
            indices = torch.stack(chosen, dim=-1)
        return torch.stack(logits), torch.stack(vectors), indices

    # ------------------------------------------------------------------ passes

    def forward(
        self,
        motion: torch.Tensor,
        mask: torch.Tensor,
        speaker: torch.Tensor,
        low: torch.Tensor,
        high: torch.Tensor,
        injection: torch.Tensor | None = None,
        gt_codes: Mapping[str, torch.Tensor] | None = None,
        speech: Mapping[str, torch.Tensor] | None = None,
        code_lookup: CodeLookup | None = None,
        temperature: float = 0.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        alignment: bool = True,
    ) -> GeneratorOutput:
        """One generator pass.

        motion (B, T, 337): the window; frames where ``mask`` (B, T) bool is True are replaced by the
        learned mask embedding, so their content is never seen. speaker (B,) int64; low, high
        (B, T, speech_dim) speech features; injection (B, T, hidden_dim) = SQA output or None.
        gt_codes: part -> (L, B, N, latent_dim) ground-truth code vectors: teacher forcing of the RVQ
        cascade and the MAM alignment losses. Without them ``code_lookup`` is required and the
        cascade feeds its own choices (``temperature``/``top_k``/``generator``, see :func:`choose_codes`).
        speech: precomputed MAM features (part -> c_p) to share one MAM speech pass between passes.
        alignment: compute the MAM alignment losses (with ``gt_codes``); a training step needs them
        once, so its other passes turn them off.
        """
        self._check_inputs(motion, mask, speaker, low, high, injection)
        num_tokens = motion.shape[1] // self.frames_per_token
        if gt_codes is not None:
            self._check_codes(gt_codes, motion.shape[0], num_tokens)
        elif code_lookup is None:
            raise ValueError("EchoMaskGenerator: give gt_codes (teacher forcing) or a code_lookup (inference)")
        if speech is None:
            speech = self.mam.speech_features(low, high)
        alignment_losses = {}
        if gt_codes is not None and alignment:
            quantised_latents = {part: codes.sum(0) for part, codes in gt_codes.items()}
            alignment_losses = self.mam.alignment_losses(speech, quantised_latents)

        hint = self.body_hint(motion, mask)
        latents = {"face": self.face_latent(hint, speech["face"], speaker)}
        latents.update(self.body_latents(hint, speaker, injection))
        latents = self.fuse(latents)

        logits, vectors, indices = {}, {}, {}
        for part in GENERATOR_PARTS:
            logits[part], vectors[part], indices[part] = self.rvq_heads(
                part,
                latents[part],
                speech[part],
                None if gt_codes is None else gt_codes[part],
                code_lookup,
                temperature,
                top_k,
                generator,
            )
        return GeneratorOutput(
            logits=logits,
            code_vectors=vectors,
            latents=latents,
            speech=dict(speech),
            alignment_losses=alignment_losses,
            indices=None if gt_codes is not None else indices,
        )

    @torch.no_grad()
    def predict_indices(
        self,
        motion: torch.Tensor,
        mask: torch.Tensor,
        speaker: torch.Tensor,
        low: torch.Tensor,
        high: torch.Tensor,
        code_lookup: CodeLookup,
        injection: torch.Tensor | None = None,
        temperature: float = 0.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Inference: part -> code indices (B, N, L), argmax per RVQ layer by default (SPEC §6.6).

        ``code_lookup(part, layer, indices (B, N))`` returns the frozen stage-1 RVQ's code vectors
        (B, N, latent_dim); the caller wraps the RVQ (its indices -> codes interface, SPEC §5.1).
        """
        output = self(
            motion,
            mask,
            speaker,
            low,
            high,
            injection=injection,
            code_lookup=code_lookup,
            temperature=temperature,
            top_k=top_k,
            generator=generator,
        )
        return output.indices

