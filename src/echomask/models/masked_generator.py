"""The released EchoMask generator network (SPEC §6.4; Xiangyue-Zhang/EchoMask ``models/echomask.py``, class
``echomask``), built from plain modules. Only what the release's forward passes and losses reach is built: at
paper size its 223 M live parameters, not the 85 M of its 308 M that nothing reaches (``wordhints_decoder``, the
template layers, ``hubert_encoder*``, the cons MLPs, …).

Shapes (paper: T = 64 frames, N = 16 tokens, L = 6 RVQ layers, K = 256 codes, d = 256 code/speech size,
H = 768 hidden size, w = 256 motion-encoder width; s1 = s2 = 2 with s1 · s2 = T / N):

1. MAM (``self.mam``): speech features low/high (B, T, d) -> c_p (B, T, d) per part (models/alignment.py).
2. Body hint: frames where ``mask`` is True are replaced by the learned mask embedding; then a 9-conv
   residual encoder (U12) -> hint (B, T, w).
3. Face branch (U8): memory = Linear([c_face ; MLP(hint)]) (B, T, H); target = PE(face speaker embedding);
   a 4-layer decoder -> Linear H -> d -> conv (kernel = stride = s1) -> MLP(d, H, d) -> conv (s2) -> (B, N, d).
4. Body stream: the encoder layer over PE(body speaker embedding + Linear(MLP(hint))) (B, T, H).
5. SQA (``self.sqa``, U4): keys = PE(body stream), queries from c_hands, c_upper, c_lower; with ``inject`` its
   part-weighted decoder output is added to the body stream ("speech injection"; ``speech_injection=False``
   turns it off everywhere, the paper's ablation).
6. Body parts (U9): conv (s1) -> (B, T/s1, H); per part an MLP(H, H, H) latent; target = PE(latent + conv(s1)
   of the body speaker embedding), memory = the sum of the other two parts' latents, a 1-layer decoder;
   Linear H -> d of (decoder output + latent) -> conv (s2) -> (B, N, d).
7. Cross-part fusion (U10), 1-layer decoders at d with 4 heads: hands <- face; face <- hands; upper <- fused
   hands + lower; lower <- upper + fused hands.
8. Code heads (models/code_heads.py, U1, U11): logits (B, N, L, K) and regressed code vectors (B, L, N, d).

Every positional encoding applies dropout (release: 0.1, U13), like every transformer layer.

A pass is split where the work of a training step's passes can be shared (lit/generator_objective.py):

- :meth:`MaskedGenerator.condition` -> :class:`Conditioning`: everything that depends only on the speech and the
  speaker (speaker embeddings, the face decoder's target through its first self-attention block, the SQA
  queries, the code heads' keys and values of c_p);
- :meth:`MaskedGenerator.trunk` -> :class:`Trunk`: what depends on the mask but not on the injection (steps 2-4);
- :meth:`MaskedGenerator.injection`: step 5; :meth:`MaskedGenerator.decode`: steps 6-8.

``forward`` runs them in order for one pass (nothing shared); ``infer`` is the inference entry (speech features
from low/high, no MAM motion branch, no losses).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import torch
from einops import repeat
from torch import nn

from echomask.models.alignment import ALIGNMENT_PARTS, MotionAudioAlignment
from echomask.models.attention import Decoder, Encoder, KeyValue
from echomask.models.code_heads import ResidualCodeHead
from echomask.models.part_stack import StackedCopy
from echomask.models.speech_queried_attention import SQA_QUERY_PARTS, SpeechQueriedAttention
from echomask.models.transformer_blocks import (
    PeriodicPositionalEncoding,
    ResidualConvEncoder,
    TemporalDownsample,
    mlp,
)

BODY_PARTS = ("upper", "hands", "lower")
PARTS = ("face",) + BODY_PARTS
# cross-part fusion in the release's order: part <- ((source part, read its fused latent?), ...), summed
FUSION_MEMORY = {
    "hands": (("face", False),),
    "face": (("hands", False),),
    "upper": (("hands", True), ("lower", False)),
    "lower": (("upper", False), ("hands", True)),
}


@dataclass
class GeneratorPass:
    """What one generator pass produces, part -> tensor for face, upper, hands, lower.

    logits: (B, N, L, K) code logits per token and RVQ layer.
    code_vectors: (B, L, N, d) regressed code vectors (layer 0 = the fused base latent).
    prefusion: (B, N, d) the part latents before cross-part fusion (pass A's InfoNCE terms read face and hands).
    """

    logits: dict[str, torch.Tensor]
    code_vectors: dict[str, torch.Tensor]
    prefusion: dict[str, torch.Tensor]

    def indices(self) -> dict[str, torch.Tensor]:
        """part -> (B, N, L) int64: the argmax code of every token and layer (the paper's inference)."""
        return {part: logits.argmax(dim=-1) for part, logits in self.logits.items()}

    def rows(self, rows: slice) -> GeneratorPass:
        """The same pass restricted to the batch rows ``rows`` (passes B and C run as one batch)."""
        return GeneratorPass(
            **{
                field.name: {part: value[rows] for part, value in getattr(self, field.name).items()}
                for field in fields(self)
            }
        )


def tile_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    """(B, ...) -> (rows, ...): ``x`` repeated along the batch axis (rows must be a multiple of B)."""
    copies, remainder = divmod(rows, x.shape[0])
    if remainder:
        raise ValueError(f"cannot tile {x.shape[0]} rows to {rows}")
    return x if copies == 1 else x.repeat(copies, *([1] * (x.ndim - 1)))


@dataclass
class Conditioning:
    """What every pass of a step reads that depends only on the speech and the speaker, not on the mask or the
    injection (:meth:`MaskedGenerator.condition`). Rows = B windows; a pass over k·B rows tiles them.

    speech: part -> c_p (B, T, d). face_target: (B, T, H) the face decoder's target (PE of the face speaker
    embedding) through its first self-attention block. body_speaker: (B, T, H) the body speaker embedding per
    frame; speaker_steps: (B, T/s1, H) its downsampled form (the body part decoders read it). sqa_queries:
    (P, B, T, H) from :meth:`SpeechQueriedAttention.queries`. head_kv: part -> the code head's keys and values of
    c_p for every cascade layer; with ``stacked_heads`` (inference: the four code heads as one stacked module,
    models/part_stack.py) the stacked heads' keys and values (leading axis: ``PARTS``).
    """

    speech: dict[str, torch.Tensor]
    face_target: torch.Tensor
    body_speaker: torch.Tensor
    speaker_steps: torch.Tensor
    sqa_queries: torch.Tensor
    head_kv: dict[str, list[list[KeyValue]]] | list[list[KeyValue]]
    stacked_heads: ResidualCodeHead | None = None


@dataclass
class Trunk:
    """What a pass computes from its mask before the speech injection (:meth:`MaskedGenerator.trunk`).

    face: (B, N, d) the face latent (before fusion). stream: (B, T, H) the body stream (before the injection).
    """

    face: torch.Tensor
    stream: torch.Tensor


class FaceBranch(nn.Module):
    """hint (B, T, w), c_face (B, T, d), target (B, T, H) from :meth:`target` -> face latent (B, N, d)."""

    def __init__(
        self,
        encoder_width: int,
        latent_dim: int,
        hidden_dim: int,
        num_heads: int,
        dim_feedforward: int,
        num_layers: int,
        strides: tuple[int, int],
        period: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.hint_mlp = mlp(encoder_width, encoder_width, hidden_dim)
        self.memory_projection = nn.Linear(latent_dim + encoder_width, hidden_dim)
        self.positional_encoding = PeriodicPositionalEncoding(hidden_dim, period, dropout)
        self.decoder = Decoder(hidden_dim, num_heads, dim_feedforward, num_layers, dropout)
        self.to_latent = nn.Linear(hidden_dim, latent_dim)
        self.downsample_1 = TemporalDownsample(latent_dim, latent_dim, strides[0])
        self.latent_mlp = mlp(latent_dim, latent_dim, hidden_dim)
        self.downsample_2 = TemporalDownsample(latent_dim, latent_dim, strides[1])

    def target(self, speaker: torch.Tensor) -> torch.Tensor:
        """face speaker embedding (B, T, H) -> the decoder's target PE(speaker) through its first self-attention
        block (it reads no mask and no speech)."""
        return self.decoder.layers[0].self_block(self.positional_encoding(speaker))

    def forward(self, hint: torch.Tensor, speech: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        memory = self.memory_projection(torch.cat([speech, self.hint_mlp(hint)], dim=-1))
        x = self.to_latent(self.decoder(target, memory, self_attended=True))
        return self.downsample_2(self.latent_mlp(self.downsample_1(x)))


class BodyPartHead(nn.Module):
    """One body part's MLP latent, decoder and projection (step 6 of the module docstring)."""

    def __init__(
        self, latent_dim: int, hidden_dim: int, num_heads: int, dim_feedforward: int, num_layers: int, stride: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.input_mlp = mlp(hidden_dim, hidden_dim, hidden_dim)
        self.decoder = Decoder(hidden_dim, num_heads, dim_feedforward, num_layers, dropout)
        self.to_latent = nn.Linear(hidden_dim, latent_dim)
        self.downsample = TemporalDownsample(latent_dim, latent_dim, stride)


class BodyBranch(nn.Module):
    """The body stream (B, T, H) from the hint, and the upper/hands/lower latents (B, N, d) from the stream."""

    def __init__(
        self,
        encoder_width: int,
        latent_dim: int,
        hidden_dim: int,
        num_heads: int,
        dim_feedforward: int,
        encoder_layers: int,
        part_decoder_layers: int,
        strides: tuple[int, int],
        period: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.hint_mlp = mlp(encoder_width, encoder_width, hidden_dim)
        self.to_hidden = nn.Linear(encoder_width, hidden_dim)
        self.positional_encoding = PeriodicPositionalEncoding(hidden_dim, period, dropout)
        self.encoder = Encoder(hidden_dim, num_heads, dim_feedforward, encoder_layers, dropout)
        self.downsample = TemporalDownsample(hidden_dim, hidden_dim, strides[0])
        self.speaker_downsample = TemporalDownsample(hidden_dim, hidden_dim, strides[0])
        self.parts = nn.ModuleDict(
            {
                part: BodyPartHead(
                    latent_dim, hidden_dim, num_heads, dim_feedforward, part_decoder_layers, strides[1], dropout
                )
                for part in BODY_PARTS
            }
        )

    def stream(self, hint: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
        """hint (B, T, w), body speaker embedding (B, T, H) -> body stream (B, T, H)."""
        return self.encoder(self.positional_encoding(speaker + self.to_hidden(self.hint_mlp(hint))))

    def part_latents(self, stream: torch.Tensor, speaker_steps: torch.Tensor) -> dict[str, torch.Tensor]:
        """body stream (B, T, H), downsampled body speaker embedding (B', T/s1, H) (``speaker_downsample``; B a
        multiple of B', rows tile) -> part -> latent (B, N, d)."""
        stream = self.downsample(stream)
        speaker = tile_rows(speaker_steps, stream.shape[0])
        hidden = {part: head.input_mlp(stream) for part, head in self.parts.items()}
        latents = {}
        for part, head in self.parts.items():
            memory = sum(hidden[other] for other in BODY_PARTS if other != part)
            decoded = head.decoder(self.positional_encoding(hidden[part] + speaker), memory)
            latents[part] = head.downsample(head.to_latent(decoded + hidden[part]))
        return latents


class CrossPartFusion(nn.Module):
    """Cross-part fusion (U10): part latents (B, N, d) -> fused latents, by the table ``FUSION_MEMORY``."""

    def __init__(self, latent_dim: int, num_heads: int, dim_feedforward: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        self.decoders = nn.ModuleDict(
            {
                part: Decoder(latent_dim, num_heads, dim_feedforward, num_layers, dropout)
                for part in FUSION_MEMORY
            }
        )

    def forward(self, latents: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        fused: dict[str, torch.Tensor] = {}
        for part, sources in FUSION_MEMORY.items():
            memory = sum(fused[source] if read_fused else latents[source] for source, read_fused in sources)
            fused[part] = self.decoders[part](latents[part], memory)
        return fused


class MaskedGenerator(nn.Module):
    """The released EchoMask generator (module docstring). Sizes default to the paper's."""

    def __init__(
        self,
        motion_dim: int = 337,  # whole-body stream (SPEC §4.2)
        num_speakers: int = 25,  # release: 25 speaker embeddings
        latent_dim: int = 256,  # RVQ code size = speech feature size (release: vae_codebook_size = audio_f)
        codebook_size: int = 256,  # release
        num_rvq_layers: int = 6,  # release
        frames_per_token: int = 4,  # 64 frames -> 16 tokens (release)
        first_stride: int = 2,  # release: 64 -> 32 steps, then 32 -> 16 (face: the same two steps)
        hidden_dim: int = 768,  # release: hidden_size
        hidden_heads: int = 4,  # heads of the H-wide layers (release)
        hidden_feedforward: int = 1536,  # release: 2 × hidden_size
        encoder_width: int = 256,  # motion encoder width (release: motion_f)
        encoder_blocks: int = 3,  # release: VQEncoderV6 with vae_layer 3 (9 convs)
        face_decoder_layers: int = 4,  # release
        body_encoder_layers: int = 1,  # release
        part_decoder_layers: int = 1,  # release
        fusion_heads: int = 4,  # release
        fusion_feedforward: int = 512,  # release
        fusion_layers: int = 1,  # release
        base_classifier_hidden: int = 768,  # RVQ layer-0 classifier (release: hidden_size, U11)
        classifier_hidden: int = 256,  # RVQ layers >= 1 (release)
        cascade_layers: int = 3,  # decoder layers per RVQ layer >= 1 (release)
        cascade_heads: int = 8,  # release
        cascade_feedforward: int = 1024,  # release
        mam_heads: int = 4,  # release
        mam_feedforward: int = 512,  # release
        mam_layers_per_block: int = 2,  # release
        mam_temperature: float = 0.1,  # release
        mam_match_classifier: bool = False,  # True: the release's positive-only match loss (models/alignment.py)
        mam_batch_negatives: bool = False,  # release: False
        mam_attention_window: int | None = None,  # release: None (full cross-attention)
        mam_speech_levels: str = "both",  # release; "low" / "high": the MAM speech-level ablation
        speech_injection: bool = True,  # release; False: the ablation without the SQA speech injection
        sqa_layers: int = 8,  # release
        sqa_heads: int = 4,  # release
        sqa_feedforward: int = 2048,  # release
        sqa_part_weight: float = 0.33,  # release
        period: int = 64,  # positional-encoding period (release: pose_length)
        dropout: float = 0.1,  # release: every transformer layer and positional encoding
    ) -> None:
        super().__init__()
        if first_stride < 1 or frames_per_token % first_stride:
            raise ValueError(f"first_stride={first_stride} must divide frames_per_token={frames_per_token}")
        strides = (first_stride, frames_per_token // first_stride)
        self.motion_dim = motion_dim
        self._stacked = {"mam": StackedCopy(), "heads": StackedCopy()}  # infer's stacked part modules (not state)
        self.num_speakers = num_speakers
        self.latent_dim = latent_dim
        self.hidden_dim = hidden_dim
        self.num_rvq_layers = num_rvq_layers
        self.codebook_size = codebook_size
        self.frames_per_token = frames_per_token
        self.speech_injection = speech_injection

        self.mam = MotionAudioAlignment(
            parts=ALIGNMENT_PARTS,
            d_model=latent_dim,
            num_heads=mam_heads,
            dim_feedforward=mam_feedforward,
            layers_per_block=mam_layers_per_block,
            period=period,
            temperature=mam_temperature,
            match_classifier=mam_match_classifier,
            batch_negatives=mam_batch_negatives,
            attention_window=mam_attention_window,
            dropout=dropout,
            speech_levels=mam_speech_levels,
        )
        self.mask_embedding = nn.Parameter(torch.randn(motion_dim) * hidden_dim**-0.5)  # release's init
        self.motion_encoder = ResidualConvEncoder(motion_dim, encoder_width, encoder_blocks)
        self.speaker_face = nn.Embedding(num_speakers, hidden_dim)
        self.speaker_body = nn.Embedding(num_speakers, hidden_dim)
        self.face = FaceBranch(
            encoder_width,
            latent_dim,
            hidden_dim,
            hidden_heads,
            hidden_feedforward,
            face_decoder_layers,
            strides,
            period,
            dropout,
        )
        self.body = BodyBranch(
            encoder_width,
            latent_dim,
            hidden_dim,
            hidden_heads,
            hidden_feedforward,
            body_encoder_layers,
            part_decoder_layers,
            strides,
            period,
            dropout,
        )
        self.key_encoding = PeriodicPositionalEncoding(hidden_dim, period, dropout)
        self.sqa = SpeechQueriedAttention(
            speech_dim=latent_dim,
            d_model=hidden_dim,
            num_heads=sqa_heads,
            dim_feedforward=sqa_feedforward,
            num_layers=sqa_layers,
            parts=SQA_QUERY_PARTS,
            initial_part_weight=sqa_part_weight,
            dropout=dropout,
        )
        self.fusion = CrossPartFusion(latent_dim, fusion_heads, fusion_feedforward, fusion_layers, dropout)
        self.heads = nn.ModuleDict(
            {
                part: ResidualCodeHead(
                    latent_dim=latent_dim,
                    codebook_size=codebook_size,
                    num_layers=num_rvq_layers,
                    base_classifier_hidden=base_classifier_hidden,
                    classifier_hidden=classifier_hidden,
                    decoder_layers=cascade_layers,
                    num_heads=cascade_heads,
                    dim_feedforward=cascade_feedforward,
                    dropout=dropout,
                )
                for part in PARTS
            }
        )

    # ------------------------------------------------------------------ checks

    def check_inputs(
        self,
        motion: torch.Tensor,
        speaker: torch.Tensor,
        speech: Mapping[str, torch.Tensor],
        parts: tuple[str, ...] = PARTS,
    ) -> None:
        """Raises ValueError naming the input whose shape, ids or parts do not fit (speech: ``parts`` needed)."""
        if motion.ndim != 3 or motion.shape[-1] != self.motion_dim:
            raise ValueError(f"MaskedGenerator: motion must be (B, T, {self.motion_dim}), got {tuple(motion.shape)}")
        batch, frames, _ = motion.shape
        if frames % self.frames_per_token:
            raise ValueError(
                f"MaskedGenerator: T={frames} frames is not a multiple of frames_per_token={self.frames_per_token}"
            )
        if speaker.shape != (batch,):
            raise ValueError(f"MaskedGenerator: speaker must be ({batch},), got {tuple(speaker.shape)}")
        if speaker.numel() and (speaker.min() < 0 or speaker.max() >= self.num_speakers):
            raise ValueError(
                f"MaskedGenerator: speaker ids must lie in [0, {self.num_speakers}), got {speaker.tolist()}"
            )
        for part in parts:
            if part not in speech:
                raise ValueError(f"MaskedGenerator: speech features missing for part {part!r}")
            if tuple(speech[part].shape) != (batch, frames, self.latent_dim):
                raise ValueError(
                    f"MaskedGenerator: speech[{part!r}] must be {(batch, frames, self.latent_dim)}, "
                    f"got {tuple(speech[part].shape)}"
                )

    def _check_mask(self, motion: torch.Tensor, mask: torch.Tensor) -> None:
        if mask.shape != motion.shape[:2] or mask.dtype != torch.bool:
            raise ValueError(
                f"MaskedGenerator: mask must be a bool tensor of shape {tuple(motion.shape[:2])}, "
                f"got {mask.dtype} {tuple(mask.shape)}"
            )

    # ------------------------------------------------------------------ pieces

    def _speaker(self, table: nn.Embedding, speaker: torch.Tensor, frames: int) -> torch.Tensor:
        """(B,) ids -> (B, frames, H): the speaker's embedding at every frame."""
        return repeat(table(speaker), "b d -> b t d", t=frames)

    def condition(
        self,
        speaker: torch.Tensor,
        speech: Mapping[str, torch.Tensor],
        frames: int,
        stacked_heads: ResidualCodeHead | None = None,
    ) -> Conditioning:
        """speaker (B,), speech: part -> c_p (B, T, d) -> :class:`Conditioning` (the work no mask changes).
        stacked_heads: the code heads of ``PARTS`` stacked (inference, :meth:`infer`), or None."""
        body_speaker = self._speaker(self.speaker_body, speaker, frames)
        if stacked_heads is None:
            head_kv = {part: self.heads[part].memory_kv(speech[part]) for part in PARTS}
        else:
            head_kv = stacked_heads.memory_kv(torch.stack([speech[part] for part in PARTS]))
        return Conditioning(
            speech=dict(speech),
            face_target=self.face.target(self._speaker(self.speaker_face, speaker, frames)),
            body_speaker=body_speaker,
            speaker_steps=self.body.speaker_downsample(body_speaker),
            sqa_queries=self.sqa.queries(speech),
            head_kv=head_kv,
            stacked_heads=stacked_heads,
        )

    def trunk(self, motion: torch.Tensor, mask: torch.Tensor, conditioning: Conditioning) -> Trunk:
        """motion (B, T, 337), mask (B, T) bool -> :class:`Trunk`: the masked frames are replaced by the mask
        embedding, then the motion encoder, the face branch and the body stream (steps 2-4)."""
        hint = self.motion_encoder(torch.where(mask[..., None], self.mask_embedding.to(motion.dtype), motion))
        return Trunk(
            face=self.face(hint, conditioning.speech["face"], conditioning.face_target),
            stream=self.body.stream(hint, conditioning.body_speaker),
        )

    def injection(
        self, stream: torch.Tensor, conditioning: Conditioning, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The SQA speech injection (B', T, H) for a body stream (B', T, H): the conditioning's rows ``rows``
        (int64 indices; None: all B' = B rows). Zeros when the network is built without it (``speech_injection``
        False: the SQA then only scores frames for the mask, and the live copy it is averaged from gets no
        gradient)."""
        if not self.speech_injection:
            return torch.zeros_like(stream)
        queries = conditioning.sqa_queries if rows is None else conditioning.sqa_queries[:, rows]
        return self.sqa(self.key_encoding(stream), queries).injection

    def decode(self, face: torch.Tensor, stream: torch.Tensor, conditioning: Conditioning) -> GeneratorPass:
        """face latent (B', N, d), body stream after any injection (B', T, H) -> the pass (steps 6-8). B' may be
        a multiple of the conditioning's B (passes B and C as one batch): row i reads conditioning row i mod B."""
        prefusion = {"face": face, **self.body.part_latents(stream, conditioning.speaker_steps)}
        fused = self.fusion(prefusion)
        if conditioning.stacked_heads is not None:
            stacked = conditioning.stacked_heads(torch.stack([fused[part] for part in PARTS]), kv=conditioning.head_kv)
            logits, vectors = ({part: value for part, value in zip(PARTS, values)} for values in stacked)
        else:
            logits, vectors = {}, {}
            for part in PARTS:
                logits[part], vectors[part] = self.heads[part](fused[part], kv=conditioning.head_kv[part])
        return GeneratorPass(logits=logits, code_vectors=vectors, prefusion=prefusion)

    def frame_scores(
        self, motion: torch.Tensor, speaker: torch.Tensor, speech: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        """SQA frame scores (B, T) of the UNMASKED window (the release's ``gen_mask_frame``; SPEC §6.3).

        motion (B, T, 337) ground truth; speaker (B,); speech: part -> c_p (B, T, d) for the SQA's query parts
        (``self.mam.speech_features(low, high, SQA_QUERY_PARTS)``).
        """
        self.check_inputs(motion, speaker, speech, SQA_QUERY_PARTS)
        body_speaker = self._speaker(self.speaker_body, speaker, motion.shape[1])
        stream = self.body.stream(self.motion_encoder(motion), body_speaker)
        return self.sqa.frame_scores(self.key_encoding(stream), self.sqa.queries(speech))

    def forward(
        self,
        motion: torch.Tensor,
        mask: torch.Tensor,
        speaker: torch.Tensor,
        speech: Mapping[str, torch.Tensor],
        inject: bool | torch.Tensor = True,
    ) -> GeneratorPass:
        """One generator pass, nothing shared with other passes.

        motion (B, T, 337): the window; frames where ``mask`` (B, T) bool is True are replaced by the mask
        embedding (their content is never seen). speaker (B,) int64. speech: part -> c_p (B, T, d) from
        ``self.mam``. inject: add SQA's speech injection to the body stream (passes A and C, inference), not
        (pass B), or a (B,) bool tensor choosing the rows that get it (passes B and C as one batch).
        """
        self.check_inputs(motion, speaker, speech)
        return self.run(motion, mask, self.condition(speaker, speech, motion.shape[1]), inject)

    def run(
        self, motion: torch.Tensor, mask: torch.Tensor, conditioning: Conditioning, inject: bool | torch.Tensor = True
    ) -> GeneratorPass:
        """One pass (``forward``) from a :class:`Conditioning` made by :meth:`condition` for the same windows."""
        self._check_mask(motion, mask)
        if isinstance(inject, torch.Tensor) and (inject.shape != mask.shape[:1] or inject.dtype != torch.bool):
            raise ValueError(
                f"MaskedGenerator: inject must be a bool or a bool tensor of shape {tuple(mask.shape[:1])}, "
                f"got {inject.dtype} {tuple(inject.shape)}"
            )
        trunk = self.trunk(motion, mask, conditioning)
        stream = trunk.stream
        if not isinstance(inject, torch.Tensor):
            if inject:
                stream = stream + self.injection(stream, conditioning)
        elif inject.any():
            rows = inject.nonzero().squeeze(1)
            injection = self.injection(stream[rows], conditioning, rows)
            stream = stream.index_add(0, rows, injection.to(stream.dtype))  # autocast: bf16 into an fp32 stream
        return self.decode(trunk.face, stream, conditioning)

    @torch.no_grad()
    def infer(
        self,
        motion: torch.Tensor,
        mask: torch.Tensor,
        speaker: torch.Tensor,
        speech_low: torch.Tensor,
        speech_high: torch.Tensor,
        stack_parts: bool = True,
    ) -> GeneratorPass:
        """Inference of one window batch (the release's test-time call): MAM's speech branch on the low/high
        speech features (B, T, d) (no motion branch, no losses), then one pass with the injection; no gradients.

        stack_parts: run MAM's four part branches and the four code heads each as ONE module with stacked
        parameters (models/part_stack.py; the same numbers up to float summation order). The stacked copies
        (90 M parameters at paper size) are made at the first call and kept until a parameter changes;
        ``release_inference_copies()`` frees them. False: part by part, as ``forward``.
        """
        if not stack_parts:
            return self(motion, mask, speaker, self.mam.speech_features(speech_low, speech_high))
        mam_branches = self._stacked["mam"]([self.mam.branches[part] for part in self.mam.parts])
        heads = self._stacked["heads"]([self.heads[part] for part in PARTS])
        for stacked in (mam_branches, heads):
            stacked.train(self.training)
        speech = self.mam.speech_features(speech_low, speech_high, stacked=mam_branches)
        self.check_inputs(motion, speaker, speech)
        return self.run(motion, mask, self.condition(speaker, speech, motion.shape[1], stacked_heads=heads))

    def release_inference_copies(self) -> None:
        """Free the stacked copies :meth:`infer` keeps (they are rebuilt at its next call)."""
        for stacked in self._stacked.values():
            stacked.clear()
