"""The three-pass training objective of the released EchoMask (SPEC §6.5; the release's
``echomask_trainer._g_training``), a plain object that a test runs without a Trainer.

Per batch of windows, with targets = the frozen stage-1 code vectors and indices of the ground truth:

- pass A: full generation, only the ``seed_frames`` first frames visible, with speech injection;
- the mask of passes B and C from :class:`~echomask.models.masking.MaskPolicy`: for ``speech_queried`` from the
  SQA frame scores of a scoring copy of the generator (the EMA copy, SPEC §6.3) on the UNMASKED window, under
  ``no_grad``;
- pass B: that mask, no injection; pass C: the same mask, with injection.

Every pass adds (the release's weights, ``LossWeights``)

    mam                       the MAM alignment loss (models/alignment.py)
    + 0.5 · Σ_parts MSE       regressed vs ground-truth code vectors, all L layers (the release: 3 × MSE / 6, U2)
    + Σ_i (Σ_parts CE_i)/(i+1) cross-entropy of RVQ layer i

and pass A adds two InfoNCE terms (U7): the PRE-fusion face and hands latents vs c_face and c_hands (one way,
:func:`~echomask.models.alignment.token_infonce`).

Deliberate differences from the release, each an option that gives the release's computation back
(``mam_once=False, batch_passes_bc=False, share_work=False``: three separate full passes, MAM in each):

- ``mam_once=True``: MAM (its speech features and loss) is computed once per step and shared by the three passes,
  its loss counted once per pass as in the release. The release recomputes it in every pass (``False``).
- ``batch_passes_bc=True``: passes B and C run as one batch of 2B windows, the injection added to the C rows
  only (``False``: two passes, as the release).
- ``share_work=True`` (needs both options above): every piece of work that the passes would repeat on the same
  inputs runs once per step. The conditioning (:meth:`MaskedGenerator.condition`: speaker embeddings, the face
  decoder's target through its first self-attention block, the SQA queries = speech projections through the first
  SQA self-attention block, the code heads' keys and values of c_p) once for passes A, B and C; the trunk of passes
  B and C (motion encoder on the masked window, face branch, body stream: they share the mask) once, read by both
  the B rows and the C rows (C adds the injection). The release computes all of it in every pass.

Gradients: a tensor computed once and read by several passes receives the sum of their gradients, which is what
the release's separate copies send to the same parameters, so losses and every parameter's gradient equal the
release's computation up to float summation order when nothing is random (eval mode or dropout 0; tested in
tests/test_generator_objective.py). Dropout: a shared piece of work draws ONE dropout mask for all its readers
(with ``share_work`` passes B and C see the same dropout noise in the face branch and the body stream, passes A, B
and C the same in MAM and the conditioning); the release draws one per pass. Work after the sharing point
(injection, body part heads, fusion, code heads) draws independently per pass and row, as in the release.

The positive-only MAM match classifier is a switch of the network (``mam_match_classifier``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor

from echomask.models.alignment import AlignmentOutput, token_infonce
from echomask.models.masked_generator import PARTS, Conditioning, GeneratorPass, MaskedGenerator
from echomask.models.masking import MaskPolicy, MaskSelection, seed_mask
from echomask.models.speech_queried_attention import SQA_QUERY_PARTS

INFONCE_PARTS = ("face", "hands")  # pass A's two InfoNCE terms (release: hubert_cons_loss, beat_cons_loss)


@dataclass
class GeneratorBatch:
    """One batch of training windows.

    motion (B, T, 337): the ground-truth windows. speaker (B,) int64. speech_low, speech_high (B, T, d): the
    speech features. codes: part -> (B, L, N, d) ground-truth code vectors and indices: part -> (B, N, L) int64
    ground-truth codes, both from the frozen stage-1 RVQ-VAEs.
    """

    motion: Tensor
    speaker: Tensor
    speech_low: Tensor
    speech_high: Tensor
    codes: dict[str, Tensor]
    indices: dict[str, Tensor]


@dataclass(frozen=True)
class LossWeights:
    """Weights of the objective's terms (module docstring); the defaults are the release's."""

    code_mse: float = 0.5  # per part, on the MSE over all RVQ layers (release: lf = 3, then / 6)
    cross_entropy: float = 1.0  # per part (release: cf = cu = cl = ch = 1); layer i also gets 1/(i+1)
    mam: float = 1.0  # release
    infonce_face: float = 1.0  # release
    infonce_hands: float = 1.0  # release


@dataclass
class ObjectiveResult:
    """loss: the summed loss of all passes. terms: name -> scalar for the logs ("A/code_mse", "C/loss",
    "mam/face/infonce", "mask/hard_frames", ...). passes: "A", "B", "C" -> :class:`GeneratorPass`.
    selection: the mask of passes B and C (None for the strategy "none"). scores: (B, T) the scores it was chosen
    from (None for "random" and "none")."""

    loss: Tensor
    terms: dict[str, Tensor]
    passes: dict[str, GeneratorPass]
    selection: MaskSelection | None
    scores: Tensor | None


def rvq_terms(output: GeneratorPass, batch: GeneratorBatch) -> tuple[dict[str, Tensor], Tensor]:
    """The code-vector and cross-entropy terms of one pass, plus the weighted cross-entropy per token (B, N).

    Returns {"code_mse": Σ_parts MSE, "cross_entropy": Σ_i Σ_parts CE_i / (i+1), "accuracy_l<i>"}, token loss.
    """
    num_layers = output.logits[PARTS[0]].shape[2]
    layer_weights = 1.0 / torch.arange(1, num_layers + 1, device=batch.motion.device)  # release: 1/(i+1)
    token_loss, correct = 0.0, 0.0
    for part in PARTS:
        logits = output.logits[part].float()
        cross_entropy = F.cross_entropy(rearrange(logits, "b n l k -> b k n l"), batch.indices[part], reduction="none")
        token_loss = token_loss + (cross_entropy * layer_weights).sum(dim=-1)
        correct = correct + (logits.argmax(dim=-1) == batch.indices[part]).float().mean(dim=(0, 1))
    terms = {
        "code_mse": sum(F.mse_loss(output.code_vectors[part].float(), batch.codes[part]) for part in PARTS),
        "cross_entropy": token_loss.mean(),
    }
    accuracy = correct / len(PARTS)
    terms.update({f"accuracy_l{layer}": accuracy[layer] for layer in range(num_layers)})
    return terms, token_loss


class GeneratorObjective:
    """``objective(generator, batch, progress, scorer)`` -> :class:`ObjectiveResult` (module docstring).

    Args:
        policy: the mask of passes B and C.
        weights: the loss weights.
        seed_frames: visible frames of pass A (release: 4).
        mam_once: compute MAM once per step (True) or in every pass as the release (False).
        batch_passes_bc: passes B and C as one batch (True) or two (False, the release).
        share_work: compute the conditioning once per step and the trunk of passes B and C once (True; needs
            ``mam_once`` and ``batch_passes_bc``) or in every pass as the release (False).
    """

    def __init__(
        self,
        policy: MaskPolicy | None = None,
        weights: LossWeights | None = None,
        seed_frames: int = 4,  # release: pre_frames
        mam_once: bool = True,
        batch_passes_bc: bool = True,
        share_work: bool = True,
    ) -> None:
        if share_work and not (mam_once and batch_passes_bc):
            raise ValueError(
                "GeneratorObjective: share_work needs mam_once and batch_passes_bc (the shared work reads one MAM "
                f"output and runs passes B and C as one batch); got mam_once={mam_once}, "
                f"batch_passes_bc={batch_passes_bc}"
            )
        self.policy = policy or MaskPolicy()
        self.weights = weights or LossWeights()
        self.seed_frames = seed_frames
        self.mam_once = mam_once
        self.batch_passes_bc = batch_passes_bc
        self.share_work = share_work

    # ------------------------------------------------------------------ pieces

    def pass_a_infonce(self, generator: MaskedGenerator, output: GeneratorPass, speech: Mapping[str, Tensor]) -> dict:
        """{"infonce_face", "infonce_hands"}: the pre-fusion latents (B, N, d) vs their speech features (B, T, d)."""
        mam = generator.mam
        return {
            f"infonce_{part}": token_infonce(output.prefusion[part], speech[part], mam.temperature, mam.batch_negatives)
            for part in INFONCE_PARTS
        }

    @torch.no_grad()
    def sqa_scores(self, scorer: MaskedGenerator, batch: GeneratorBatch) -> Tensor:
        """(B, T) float32 frame scores of the scoring copy on the unmasked windows (the release's gen_mask_frame)."""
        speech = scorer.mam.speech_features(batch.speech_low, batch.speech_high, SQA_QUERY_PARTS)
        return scorer.frame_scores(batch.motion, batch.speaker, speech).float()

    def pass_a(
        self,
        generator: MaskedGenerator,
        batch: GeneratorBatch,
        speech: Mapping[str, Tensor],
        conditioning: Conditioning | None,
    ) -> GeneratorPass:
        """Pass A: only the seed frames visible, with the injection."""
        batch_size, num_frames = batch.motion.shape[:2]
        mask = seed_mask(batch_size, num_frames, self.seed_frames, device=batch.motion.device)
        if conditioning is None:
            return generator(batch.motion, mask, batch.speaker, speech, inject=True)
        return generator.run(batch.motion, mask, conditioning, inject=True)

    def shared_masked_passes(
        self, generator: MaskedGenerator, batch: GeneratorBatch, mask: Tensor, conditioning: Conditioning
    ) -> GeneratorPass:
        """Passes B and C as one batch of 2B rows [B; C] on ONE trunk: C's rows add the injection."""
        trunk = generator.trunk(batch.motion, mask, conditioning)
        injected = trunk.stream + generator.injection(trunk.stream, conditioning)
        return generator.decode(
            torch.cat([trunk.face, trunk.face]), torch.cat([trunk.stream, injected]), conditioning
        )

    def masked_passes(
        self,
        generator: MaskedGenerator,
        batch: GeneratorBatch,
        mask: Tensor,
        alignment: AlignmentOutput,
        conditioning: Conditioning | None,
    ) -> dict[str, tuple[GeneratorPass, Tensor]]:
        """Passes B (no injection) and C (injection) with the same (B, T) mask: name -> (output, MAM loss)."""
        size = batch.motion.shape[0]
        halves = {"B": slice(0, size), "C": slice(size, 2 * size)}
        if conditioning is not None:
            output = self.shared_masked_passes(generator, batch, mask, conditioning)
            return {name: (output.rows(half), alignment.losses["total"]) for name, half in halves.items()}
        if self.mam_once:
            alignments = {"B": alignment, "C": alignment}
        else:  # the release: MAM in every pass
            alignments = {name: generator.mam(batch.speech_low, batch.speech_high, batch.codes) for name in "BC"}
        if not self.batch_passes_bc:
            return {
                name: (
                    generator(batch.motion, mask, batch.speaker, alignments[name].speech, inject=name == "C"),
                    alignments[name].losses["total"],
                )
                for name in "BC"
            }
        speech = {part: torch.cat([alignments["B"].speech[part], alignments["C"].speech[part]]) for part in PARTS}
        inject = torch.arange(2 * size, device=mask.device) >= size  # rows of pass C
        output = generator(
            torch.cat([batch.motion, batch.motion]),
            torch.cat([mask, mask]),
            torch.cat([batch.speaker, batch.speaker]),
            speech,
            inject=inject,
        )
        return {name: (output.rows(half), alignments[name].losses["total"]) for name, half in halves.items()}

    # ------------------------------------------------------------------ the objective

    def __call__(
        self,
        generator: MaskedGenerator,
        batch: GeneratorBatch,
        progress: float,
        scorer: MaskedGenerator | None = None,
        rng: torch.Generator | None = None,
    ) -> ObjectiveResult:
        """The summed loss of passes A, B, C and its named terms.

        progress: training progress in [0, 1] (drives the mask schedule). scorer: the model whose SQA scores the
        frames (the EMA copy, in eval mode), needed by the ``speech_queried`` strategy. rng: the mask's random draws.
        """
        batch_size, num_frames = batch.motion.shape[:2]
        alignment = generator.mam(batch.speech_low, batch.speech_high, batch.codes)
        conditioning = None
        if self.share_work:
            generator.check_inputs(batch.motion, batch.speaker, alignment.speech)
            conditioning = generator.condition(batch.speaker, alignment.speech, num_frames)

        output_a = self.pass_a(generator, batch, alignment.speech, conditioning)
        outputs = {"A": (output_a, alignment.losses["total"])}

        source = self.policy.score_source
        scores = None
        if source == "sqa":
            if scorer is None:
                raise ValueError("the speech_queried masking strategy needs a scorer (the EMA copy of the generator)")
            scores = self.sqa_scores(scorer, batch)
        terms_a, token_loss = rvq_terms(output_a, batch)
        pass_terms = {"A": terms_a}
        if source == "loss":
            token_loss = token_loss.detach().float()
            scores = repeat(token_loss, "b n -> b (n k)", k=num_frames // token_loss.shape[1])
        selection = self.policy.select(batch_size, num_frames, progress, scores, rng, batch.motion.device)
        if selection is not None:
            outputs.update(self.masked_passes(generator, batch, selection.mask, alignment, conditioning))
            pass_terms.update({name: rvq_terms(outputs[name][0], batch)[0] for name in "BC"})
        pass_terms["A"].update(self.pass_a_infonce(generator, output_a, alignment.speech))

        weights = asdict(self.weights)
        total = torch.zeros((), device=batch.motion.device)
        terms: dict[str, Tensor] = {}
        for name, (output, mam_loss) in outputs.items():
            values = {**pass_terms[name], "mam": mam_loss}
            pass_loss = sum(weights[term] * values[term] for term in weights if term in values)
            total = total + pass_loss
            terms[f"{name}/loss"] = pass_loss
            terms.update({f"{name}/{term}": value for term, value in values.items()})
        terms.update({f"mam/{term}": value for term, value in alignment.losses.items() if term != "total"})
        terms["mask/schedule_progress"] = torch.tensor(float(progress), device=batch.motion.device)
        if selection is not None:
            for group, frames in (("hard", selection.hard), ("soft", selection.soft), ("uniform", selection.uniform)):
                terms[f"mask/{group}_frames"] = frames.sum(dim=1).float().mean()
        return ObjectiveResult(
            loss=total,
            terms=terms,
            passes={name: output for name, (output, _) in outputs.items()},
            selection=selection,
            scores=scores,
        )
