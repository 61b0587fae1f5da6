"""`GeneratorModule`: trains the speech-queried masked generator of stage 2 (SPEC §6) and scores it (SPEC §8).

What it holds
- ``self.synthesizer``: a :class:`~echomask.inference.MotionSynthesizer`, i.e. the trained
  :class:`~echomask.models.generator.EchoMaskGenerator` plus the four frozen stage-1 RVQ-VAEs and the frozen
  global-translation model (no gradients, always in eval mode).
- ``self.ema``: an :class:`~echomask.lit.ema.EMA` copy of the generator (decay 0.9999), used only to score
  frames for the mask (SPEC §6.3).
- ``speech_projection`` (buffer): the fixed HuBERT projection matrix the training features were made with;
  the speech settings (``speech``, a :class:`~echomask.audio.speech_settings.SpeechSettings`) are a
  hyper-parameter. Together they say how to compute features for new audio.

Stage 1 is read from its Lightning checkpoints (by default where the stage table, `echomask.stages`, says
`make train-vqvae` leaves them: ``logs/vqvae/<name>/checkpoints/last.ckpt``). Their architectures are recorded in
``hparams["stage1_hparams"]`` and their weights live in this module's state dict, so a generator checkpoint
alone rebuilds everything (:meth:`GeneratorModule.load_for_inference`).

Training step (SPEC §6.5), per 64-frame window with targets = the frozen stage-1 indices and code vectors:

- pass A: full generation, only the 4 seed frames visible, with speech injection;
- pass B: the SQA mask (24 of 64 frames), no injection;
- pass C: the same mask, with injection.

Each pass adds the MAM alignment loss, the code-vector MSE (weight 3 per part, times the mean over the RVQ
layers, i.e. "/6" for 6 layers) and the cross-entropy of RVQ layer i weighted 1/(i+1); pass A adds two InfoNCE
terms (face and hands latents vs their pooled speech features). The MAM loss depends only on the speech and the
ground-truth codes, not on the pass, so it is computed once (in pass A) and counted once per pass. With
``batch_passes_bc`` passes B and C run as one doubled batch (B with a zero injection), which gives the same
losses as two separate passes.

Which motion SQA reads (our choice, the paper does not say what SQA sees at inference):
- mask SCORES come from the EMA copy, under no_grad, with SQA on the UNMASKED ground-truth window (SPEC §6.3);
- the speech INJECTION (passes A and C) comes from the live SQA on the generator's visible input, masked frames
  replaced by the mask embedding. Inference has nothing else to read, so this keeps training and inference
  consistent (``MotionSynthesizer.predict_window`` uses the same rule).

Masking strategies (the ablation axis): ``speech_queried`` (EMA SQA scores), ``loss_based`` (scores = this
step's detached pass-A cross-entropy of each token, spread over its frames), ``random`` (uniform), ``none``
(no masked passes: pass A only). The hard/soft split follows the schedule over training progress
``global_step / trainer.estimated_stepping_batches``.

Validation: the same losses on windows (no EMA update). Every ``metrics_every_n_epochs`` epochs, FGD and L1
diversity of pass-A generations decoded by stage 1 vs the ground-truth windows (a training monitor on 64-frame
windows with the "clean" square-root rule, not the paper protocol). TensorBoard media at batch 0: the SQA scores
and mask over the waveform, and a rendered GT-vs-generated skeleton clip.

Test (SPEC §6.6, §8.1): whole sequences (batch size 1) through ``synthesizer.generate`` seeded with the ground
truth's first 4 frames (:meth:`GeneratorModule.generate_sequence`); every sequence is written as
``<output_dir>/<id>.npz`` with its SQA frame scores as ``<id>_sqa.npz`` and scored by a
:class:`~echomask.scoring.MotionScorer` (FGD, BC, L1div and the face metrics with the chosen protocol); its report
is printed and saved as ``<output_dir>/metrics.json``. The scorer and its inputs are those of
``echomask evaluate --pred <output_dir>`` (the written SMPL-X arrays, the sequence's whole audio file for BC, the
same FGD extractor), so both give the same numbers up to the float rounding of the ground truth's round trip
through the 6D cache.
"""
from __future__ import annotations

import inspect
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor, nn
from torchmetrics import Metric

from echomask.audio.signal_features import SpeechFeatures
from echomask.audio.speech_settings import SpeechSettings
from echomask.data.beat2 import AUDIO_SAMPLE_RATE, read_audio_checked
from echomask.data.datamodule import BEAT2DataModule
from echomask.inference import START_XZ_COLUMNS, TRANS_COLUMNS, MotionSynthesizer, motion_to_smplx, write_smplx_npz
from echomask.lit.ema import EMA
from echomask.lit.kinematics_holder import KinematicsHolder
from echomask.lit.media import attention_mask_figure, log_figure, log_skeleton_clip, tensorboard
from echomask.lit.translation_module import translation_arguments
from echomask.lit.vqvae_module import rvqvae_arguments
from echomask.metrics import FrechetGestureDistance, L1Diversity
from echomask.metrics.beat_consistency import PROTOCOLS
from echomask.models.conv_vqvae import RVQVAE
from echomask.models.generator import GENERATOR_PARTS, EchoMaskGenerator, GeneratorOutput
from echomask.models.mam import frame_infonce, pool_to_tokens
from echomask.models.masking import MASK_STRATEGIES, MaskSelection, mask_schedule, seed_mask, select_mask_parts
from echomask.models.translation import TranslationModel
from echomask.motion.parts import PART_NAMES, ROT6D_DIM, WHOLE_BODY_DIM
from echomask.motion.rotations import rot6d_to_matrix
from echomask.motion.skeleton import NUM_JOINTS
from echomask.results import write_sqa
from echomask.scoring import (
    SMPLX_KEYS,
    MotionScorer,
    Provenance,
    find_fgd_checkpoint,
    format_report,
    load_fgd_encoder,
    write_report,
)
from echomask.stages import STAGE1_MODELS, stage1_checkpoint

log = logging.getLogger(__name__)

WINDOW_ITEMS = ("motion", "expressions", "speaker", "audio_low", "audio_high", "audio")  # audio: the SQA plot
TEST_ITEMS = ("motion", "expressions", "speaker", "audio_low", "audio_high", "id")
INFONCE_PARTS = ("face", "hands")  # SPEC §6.5: pass A's two InfoNCE terms
FGD_AUTO = "auto"
VALIDATION_FGD_PROTOCOL = "clean"  # a monitor on windows: the regularised square root never fails
ROTATION_COLUMNS = slice(0, ROT6D_DIM * NUM_JOINTS)  # the 55 joints in 6D (the FGD input, SPEC §8.1)

# SPEC §6.5. code_mse: weight 3 per part on the mean over the RVQ layers ("/6"); cross_entropy: layer i is
# weighted 1/(i+1) inside the term; mam: the alignment losses of SPEC §6.2, counted once per pass.
DEFAULT_LOSS_WEIGHTS = {
    "code_mse": 3.0,
    "cross_entropy": 1.0,
    "mam": 1.0,
    "infonce_face": 1.0,
    "infonce_hands": 1.0,
}

# EchoMaskGenerator arguments that stage 1 and the data decide (not settable through `generator`).
DERIVED_GENERATOR_ARGUMENTS = (
    "motion_dim",
    "num_speakers",
    "speech_dim",
    "frames_per_token",
    "latent_dim",
    "num_rvq_layers",
    "codebook_size",
)


# ----------------------------------------------------------------------------------------------- stage 1


def read_stage1_checkpoint(name: str, path: str | Path) -> tuple[dict, dict[str, Tensor]]:
    """(architecture keyword arguments, weights) of one stage-1 model ("face" … "lower" or "translation")."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"stage-1 checkpoint of {name!r} not found: {path}; run `make train-vqvae` first "
            f"(or set model.init_args.stage1_checkpoints.{name})"
        )
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    hparams, state = checkpoint.get("hyper_parameters"), checkpoint.get("state_dict")
    if hparams is None or state is None:
        raise ValueError(f"{path}: not a Lightning checkpoint of a stage-1 module (no hyper_parameters/state_dict)")
    found = hparams.get("part", "translation")
    if found != name:
        raise ValueError(f"{path}: expected the stage-1 model of {name!r}, found the one of {found!r}")
    try:
        arguments = translation_arguments(hparams) if name == "translation" else rvqvae_arguments(hparams, name)
    except KeyError as missing:
        raise ValueError(f"{path}: hyper-parameter {missing} is missing (not a checkpoint of this version?)") from None
    weights = {key.removeprefix("model."): value for key, value in state.items() if key.startswith("model.")}
    return arguments, weights


def read_stage1(checkpoints: Mapping[str, str] | None) -> tuple[dict[str, dict], dict[str, dict[str, Tensor]]]:
    """Architectures and weights of the five stage-1 models; `checkpoints` overrides the default paths by name."""
    unknown = sorted(set(checkpoints or {}) - set(STAGE1_MODELS))
    if unknown:
        raise ValueError(f"stage1_checkpoints: unknown name(s) {unknown}; known: {list(STAGE1_MODELS)}")
    paths = {name: stage1_checkpoint(name) for name in STAGE1_MODELS} | dict(checkpoints or {})
    arguments, weights = {}, {}
    for name in STAGE1_MODELS:
        arguments[name], weights[name] = read_stage1_checkpoint(name, paths[name])
        log.info("stage 1 %s: %s", name, paths[name])
    return arguments, weights


def build_stage1(stage1_hparams: Mapping[str, Mapping]) -> tuple[nn.ModuleDict, TranslationModel]:
    """Empty (untrained) stage-1 models from their recorded architectures."""
    missing = [name for name in STAGE1_MODELS if name not in stage1_hparams]
    if missing:
        raise ValueError(f"stage1_hparams has no architecture for {missing}")
    vqvaes = nn.ModuleDict({part: RVQVAE(**stage1_hparams[part]) for part in PART_NAMES})
    return vqvaes, TranslationModel(**stage1_hparams["translation"])


def generator_arguments(
    sizes: Mapping | None,
    stage1_hparams: Mapping[str, Mapping],
    num_speakers: int,
    feature_dim: int,
) -> dict:
    """`EchoMaskGenerator` keyword arguments: the configured sizes plus what stage 1 and the data fix."""
    sizes = dict(sizes or {})
    derived = sorted(set(sizes) & set(DERIVED_GENERATOR_ARGUMENTS))
    if derived:
        raise ValueError(f"generator: {derived} follow from stage 1 and the data settings; remove them from the config")
    known = inspect.signature(EchoMaskGenerator).parameters
    unknown = sorted(set(sizes) - set(known))
    if unknown:
        raise ValueError(f"generator: unknown EchoMaskGenerator argument(s) {unknown}")
    layouts = {
        part: tuple(stage1_hparams[part][key] for key in ("depth", "num_quantizers", "codebook_size", "code_dim"))
        for part in PART_NAMES
    }
    if len(set(layouts.values())) != 1:
        raise ValueError(
            f"the stage-1 RVQ-VAEs disagree on (depth, num_quantizers, codebook_size, code_dim): {layouts}; "
            "the generator needs one token layout for all parts"
        )
    depth, num_quantizers, codebook_size, code_dim = layouts["face"]
    if feature_dim != code_dim:
        raise ValueError(
            f"the speech feature size (feature_dim={feature_dim}) must equal the stage-1 code size "
            f"(code_dim={code_dim}): the generator's MAM aligns speech features with code vectors and its RVQ "
            "cascade attends to them"
        )
    return {
        **sizes,
        "motion_dim": WHOLE_BODY_DIM,
        "num_speakers": num_speakers,
        "speech_dim": feature_dim,
        "frames_per_token": 2**depth,
        "latent_dim": code_dim,
        "num_rvq_layers": num_quantizers,
        "codebook_size": codebook_size,
    }


# ----------------------------------------------------------------------------------------------- helpers


@dataclass
class StepResult:
    """What one training/validation step computed.

    loss: the summed loss of all passes. terms: name -> scalar for the logs ("A/code_mse", "mask/hard_fraction", …).
    selection: the mask of passes B and C (None for the strategy "none"). scores: (B, T) the frame scores the mask
    was chosen from (None for "random" and "none").
    """

    loss: Tensor
    terms: dict[str, Tensor]
    selection: MaskSelection | None
    scores: Tensor | None


def visible_motion(generator: EchoMaskGenerator, motion: Tensor, mask: Tensor) -> Tensor:
    """(B, T, 337) with masked frames (mask (B, T) True) replaced by the generator's mask embedding."""
    return torch.where(rearrange(mask, "b t -> b t 1"), generator.mask_embedding.to(motion.dtype), motion)


def double(tensor: Tensor, dim: int = 0) -> Tensor:
    """The tensor concatenated with itself along `dim` (passes B and C as one batch)."""
    return torch.cat([tensor, tensor], dim=dim)


def reduce_accuracy(correct: Tensor) -> Tensor:
    """(B, N, L) bool hits -> (L,) float share of correct codes per RVQ layer."""
    return correct.float().mean(dim=(0, 1))


# ------------------------------------------------------------------------------------------------ module


class GeneratorModule(KinematicsHolder, pl.LightningModule):
    """Stage 2 of EchoMask (module docstring). Every argument is in the configs (experiments/generator.yaml).

    Args:
        generator: `EchoMaskGenerator` sizes (paper defaults for keys left out); the token layout, speech size,
            motion size and number of speakers follow from stage 1 and the arguments below. A later config
            replaces the whole dict.
        num_speakers: speaker embeddings (BEAT2 speaker ids 1…30; the data gives id − 1).
        masking: "speech_queried" (paper), "random", "loss_based" or "none" (SPEC §6.3 ablation axis).
        num_masked: frames masked per window in passes B and C (SPEC §6.3: 24 of 64).
        soft_pool_factor: candidate pool / soft group size for the soft part of the mask (> 1, SPEC §6.3).
        hard_fraction_schedule: (start, end) share of the top-scored frames over training (SPEC §6.3: 0 → 0.2).
        soft_fraction_schedule: (start, end) share sampled in proportion to score (SPEC §6.3: 0.2 → 0).
        ema_decay: decay of the EMA copy that scores frames (SPEC §6.3: 0.9999).
        loss_weights: overrides of `DEFAULT_LOSS_WEIGHTS`.
        lr: Adam learning rate, constant (SPEC §6.5: 5e-5).
        adam_betas: Adam betas (SPEC §6.5: (0.5, 0.999)).
        batch_passes_bc: run passes B and C as one doubled batch (same result, faster on a GPU).
        window: frames per window (SPEC §4.5: 64; must equal the data's window).
        inference_stride: frames between window starts at test time (SPEC §6.6: 60).
        seed_frames: visible frames of pass A and of each inference window (SPEC §6.5/§6.6: 4).
        temperature: code choice at test time (0: argmax, the paper); top_k: sampling restricted to the k best.
        stage1_checkpoints: name -> stage-1 checkpoint, names face, upper, hands, lower, translation; names left
            out take the stage table's path (`echomask.stages.stage1_checkpoint`). Read only when `stage1_hparams`
            is None.
        stage1_hparams: the stage-1 architectures; None reads them (and the weights) from `stage1_checkpoints`.
            Set automatically and saved in generator checkpoints.
        speech: the speech-feature settings (SPEC §4.4, `SpeechSettings`); must equal the data module's (the
            configs interpolate them from there: ``speech: ${data.init_args.speech}``).
        smplx_model_dir: SMPL-X model folder for joints and face vertices; None: the approximate skeleton.
        fgd_checkpoint: FGD feature extractor: "auto" (the corpus' weights/AESKConv_240_100.bin if present, else
            logs/evaluator/checkpoints/last.ckpt, as `echomask evaluate`), a path, or None/"none" to skip FGD.
        metric_protocol: "paper" or "clean" (SPEC §8.1) for the test metrics.
        metrics_every_n_epochs: validation epochs between FGD/diversity evaluations of pass-A generations.
        render_frames: frames of the validation skeleton clip (0 disables it).
        output_dir: where the test loop writes <id>.npz and metrics.json.
    """

    speech_projection: Tensor

    def __init__(
        self,
        generator: dict[str, int | float | bool | None] | None = None,
        num_speakers: int = 30,
        masking: str = "speech_queried",
        num_masked: int = 24,
        soft_pool_factor: float = 2.0,
        hard_fraction_schedule: tuple[float, float] = (0.0, 0.2),
        soft_fraction_schedule: tuple[float, float] = (0.2, 0.0),
        ema_decay: float = 0.9999,
        loss_weights: dict[str, float] | None = None,
        lr: float = 5e-5,
        adam_betas: tuple[float, float] = (0.5, 0.999),
        batch_passes_bc: bool = True,
        window: int = 64,
        inference_stride: int = 60,
        seed_frames: int = 4,
        temperature: float = 0.0,
        top_k: int | None = None,
        stage1_checkpoints: dict[str, str] | None = None,
        stage1_hparams: dict[str, dict] | None = None,
        speech: SpeechSettings = SpeechSettings(),
        smplx_model_dir: str | None = None,
        fgd_checkpoint: str | None = FGD_AUTO,
        metric_protocol: str = "paper",
        metrics_every_n_epochs: int = 10,
        render_frames: int = 64,
        output_dir: str = "outputs/generator/test",
    ):
        super().__init__()
        if masking not in MASK_STRATEGIES:
            raise ValueError(f"masking must be one of {MASK_STRATEGIES}, got {masking!r}")
        unknown = sorted(set(loss_weights or {}) - set(DEFAULT_LOSS_WEIGHTS))
        if unknown:
            raise ValueError(f"unknown loss weight(s) {unknown}; known: {sorted(DEFAULT_LOSS_WEIGHTS)}")
        if metric_protocol not in PROTOCOLS:
            raise ValueError(f"metric_protocol must be one of {PROTOCOLS}, got {metric_protocol!r}")
        if metrics_every_n_epochs < 1:
            raise ValueError(f"metrics_every_n_epochs must be at least 1, got {metrics_every_n_epochs}")
        self.speech = SpeechSettings.of(speech)
        self.save_hyperparameters()
        self.hparams["speech"] = self.speech.as_dict()  # plain data: checkpoints load with weights_only=True
        self.loss_weights = {**DEFAULT_LOSS_WEIGHTS, **(loss_weights or {})}

        weights = None
        if stage1_hparams is None:
            stage1_hparams, weights = read_stage1(stage1_checkpoints)
            self.hparams["stage1_hparams"] = stage1_hparams
        vqvaes, translation = build_stage1(stage1_hparams)
        if weights is not None:
            for part in PART_NAMES:
                vqvaes[part].load_state_dict(weights[part])
            translation.load_state_dict(weights["translation"])
        model = EchoMaskGenerator(
            **generator_arguments(generator, stage1_hparams, num_speakers, self.speech.feature_dim)
        )
        self.synthesizer = MotionSynthesizer(
            model, vqvaes, translation, window=window, stride=inference_stride, seed_frames=seed_frames
        )
        self.ema = EMA(model, decay=ema_decay)
        # filled in `setup` from the data module's HuBERT features, or from a checkpoint (see load_state_dict)
        self.register_buffer("speech_projection", torch.zeros(0, self.speech.feature_dim))
        self.init_kinematics(smplx_model_dir)
        self._metrics: dict[str, dict[str, Metric]] = {}
        self._scorer: MotionScorer | None = None
        self._audio_files: dict[str, Path] = {}
        self._test_started = 0.0

    @property
    def generator(self) -> EchoMaskGenerator:
        """The trained generator (``self.synthesizer.generator``)."""
        return self.synthesizer.generator

    # ---------------------------------------------------------------------------------- checkpoints

    @classmethod
    def load_for_inference(
        cls, path: str | Path, map_location: str | torch.device = "cpu", **overrides
    ) -> GeneratorModule:
        """A trained module from a generator checkpoint alone (no stage-1 files needed), in eval mode.

        ``overrides`` replace saved hyper-parameters (e.g. ``smplx_model_dir`` on another machine).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"generator checkpoint not found: {path}")
        module = cls.load_from_checkpoint(path, map_location=map_location, **overrides)
        if module.speech_projection.numel() == 0:
            raise ValueError(f"{path}: the checkpoint has no speech projection (was it saved before training started?)")
        return module.eval()

    def load_state_dict(self, state_dict: Mapping[str, Tensor], strict: bool = True, assign: bool = False):
        """As `nn.Module.load_state_dict`; the speech projection takes its size from the checkpoint
        (it is empty until `setup` or a checkpoint fills it)."""
        projection = state_dict.get("speech_projection")
        if projection is not None:
            self.speech_projection = torch.empty_like(projection, device=self.speech_projection.device)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # ---------------------------------------------------------------------------------- setup

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        if not isinstance(datamodule, BEAT2DataModule):
            raise ValueError(
                "GeneratorModule needs the BEAT2DataModule "
                f"(data.class_path: echomask.data.datamodule.BEAT2DataModule), got {type(datamodule).__name__}"
            )
        self._check_data_settings(datamodule)
        self._take_speech_projection(datamodule.cache.speech_features)
        if stage in (TrainerFn.FITTING, TrainerFn.VALIDATING):
            self._metrics["val"] = self._validation_metrics(datamodule)
        if stage == TrainerFn.TESTING:
            self._scorer = self._test_scorer(datamodule)
            self._audio_files = {sequence.id: sequence.audio_path for sequence in datamodule.cache.corpus}

    def _check_data_settings(self, datamodule: BEAT2DataModule) -> None:
        mismatched = {f"speech.{name}": pair for name, pair in self.speech.differences(datamodule.speech).items()}
        if self.hparams.window != datamodule.hparams.window:
            mismatched["window"] = (self.hparams.window, datamodule.hparams.window)
        if mismatched:
            details = ", ".join(
                f"{name}: model {mine!r} vs data {theirs!r}" for name, (mine, theirs) in mismatched.items()
            )
            raise ValueError(
                f"the generator and the data module disagree on {details}; the features and windows the model was "
                "built for must be the ones the data provides (interpolate them from data.init_args in the config)"
            )
        requirements = (("items", datamodule.items, WINDOW_ITEMS), ("test_items", datamodule.test_items, TEST_ITEMS))
        for role, items, required in requirements:
            missing = [name for name in required if name not in items]
            if missing:
                raise ValueError(f"GeneratorModule needs data.{role} to include {missing} (has {list(items)})")

    def _take_speech_projection(self, speech_features: SpeechFeatures) -> None:
        projection = speech_features.projection
        if projection is None:
            raise ValueError("GeneratorModule needs speech features with the fixed orthonormal projection (SPEC §4.4)")
        if self.speech_projection.numel() == 0:
            self.speech_projection = projection.to(self.speech_projection.device)
        elif not torch.equal(self.speech_projection.cpu(), projection):
            raise ValueError(
                "the speech projection of this model differs from the data module's: its features were made with "
                "other HuBERT settings"
            )

    def _fgd_checkpoint(self, datamodule: BEAT2DataModule) -> Path | None:
        setting = self.hparams.fgd_checkpoint
        if setting is None or str(setting).lower() == "none":
            log.warning("=" * 72)
            log.warning("FGD IS SKIPPED: model.init_args.fgd_checkpoint is none (no FGD numbers in this run)")
            log.warning("=" * 72)
            return None
        return find_fgd_checkpoint(datamodule.cache.corpus.root, None if setting == FGD_AUTO else setting)

    def _fgd_metric(self, datamodule: BEAT2DataModule, protocol: str) -> dict[str, Metric]:
        checkpoint = self._fgd_checkpoint(datamodule)
        if checkpoint is None:
            return {}
        encoder = load_fgd_encoder(checkpoint)
        return {"fgd": FrechetGestureDistance(encoder=encoder, encoder_name=str(checkpoint), protocol=protocol)}

    def _validation_metrics(self, datamodule: BEAT2DataModule) -> dict[str, Metric]:
        return {
            **self._fgd_metric(datamodule, VALIDATION_FGD_PROTOCOL),
            "l1div": L1Diversity(),
            "l1div_gt": L1Diversity(),
        }

    def _test_scorer(self, datamodule: BEAT2DataModule) -> MotionScorer:
        speeds, source = datamodule.joint_mean_speed()
        return MotionScorer(
            self.kinematics,
            speeds,
            source,
            fgd_checkpoint=self._fgd_checkpoint(datamodule),
            protocol=self.hparams.metric_protocol,
        )

    def _stage_metrics(self, stage: str) -> dict[str, Metric]:
        """The training monitors of `stage` ("val"), on the module's device."""
        metrics = self._metrics[stage]
        for metric in metrics.values():
            metric.to(self.device)
        return metrics

    # ---------------------------------------------------------------------------------- losses

    def schedule_progress(self) -> float:
        """Training progress in [0, 1] for the mask schedule: global step / total steps (1 outside `fit`)."""
        trainer = self.trainer
        if trainer.state.fn != TrainerFn.FITTING:
            return 1.0
        total = trainer.estimated_stepping_batches
        if not math.isfinite(total) or total <= 0:
            raise ValueError("the mask schedule needs a finite training length: set trainer.max_epochs or max_steps")
        return min(1.0, trainer.global_step / total)

    def speech_injection(self, motion: Tensor, mask: Tensor, speaker: Tensor, speech: Mapping[str, Tensor]) -> Tensor:
        """SQA's injection (B, T, hidden) from what the generator sees: the window with masked frames replaced."""
        return self.generator.sqa(visible_motion(self.generator, motion, mask), speaker, speech).injection

    @torch.no_grad()
    def ema_scores(self, motion: Tensor, speaker: Tensor, low: Tensor, high: Tensor) -> Tensor:
        """(B, T) float32 frame scores of the EMA copy's SQA on the unmasked window (SPEC §6.3)."""
        averaged = self.ema.module
        return averaged.sqa(motion, speaker, averaged.mam.speech_features(low, high)).scores.float()

    def rvq_terms(
        self,
        logits: Mapping[str, Tensor],
        code_vectors: Mapping[str, Tensor],
        indices: Mapping[str, Tensor],
        codes: Mapping[str, Tensor],
    ) -> tuple[dict[str, Tensor], Tensor]:
        """The RVQ terms of one pass and the per-token cross-entropy.

        logits: part -> (L, B, N, K); code_vectors, codes: part -> (L, B, N, D); indices: part -> (B, N, L).
        Returns {"code_mse", "cross_entropy", "accuracy_l<i>"} and the weighted cross-entropy per token (B, N).
        """
        num_layers = self.generator.num_rvq_layers
        layer_weights = 1.0 / torch.arange(1, num_layers + 1, device=self.device)  # SPEC §6.5: 1/(i+1)
        token_loss, correct = 0.0, 0.0
        for part in GENERATOR_PARTS:
            cross_entropy = F.cross_entropy(
                rearrange(logits[part].float(), "l b n k -> b k n l"), indices[part], reduction="none"
            )
            token_loss = token_loss + (cross_entropy * layer_weights).sum(-1)
            chosen = rearrange(logits[part].argmax(-1), "l b n -> b n l")
            correct = correct + reduce_accuracy(chosen == indices[part])
        terms = {
            "code_mse": sum(F.mse_loss(code_vectors[part].float(), codes[part]) for part in GENERATOR_PARTS),
            "cross_entropy": token_loss.mean(),
        }
        accuracy = correct / len(GENERATOR_PARTS)
        terms.update({f"accuracy_l{layer}": accuracy[layer] for layer in range(num_layers)})
        return terms, token_loss

    def infonce_terms(self, output: GeneratorOutput) -> dict[str, Tensor]:
        """Pass A's InfoNCE of the face and hands latents (B, N, D) vs their speech features pooled to N tokens."""
        mam = self.generator.mam
        terms = {}
        for part in INFONCE_PARTS:
            latent = output.latents[part]
            pooled = pool_to_tokens(output.speech[part], latent.shape[1])
            terms[f"infonce_{part}"] = frame_infonce(pooled, latent, mam.temperature, mam.batch_negatives)
        return terms

    def choose_mask(
        self,
        motion: Tensor,
        speaker: Tensor,
        low: Tensor,
        high: Tensor,
        token_loss: Tensor,
        progress: float,
    ) -> tuple[MaskSelection | None, Tensor | None]:
        """The mask of passes B and C for the configured strategy, and the scores it was chosen from."""
        strategy = self.hparams.masking
        if strategy == "none":
            return None, None
        hard_fraction, soft_fraction = mask_schedule(
            progress, *self.hparams.hard_fraction_schedule, *self.hparams.soft_fraction_schedule
        )
        if strategy == "speech_queried":
            scores = self.ema_scores(motion, speaker, low, high)
        elif strategy == "loss_based":
            frames_per_token = self.generator.frames_per_token
            scores = repeat(token_loss.detach().float(), "b n -> b (n k)", k=frames_per_token)
        else:  # random
            scores, hard_fraction, soft_fraction = None, 0.0, 0.0
        selection = select_mask_parts(
            torch.zeros(motion.shape[:2], device=motion.device) if scores is None else scores,
            num_masked=self.hparams.num_masked,
            hard_fraction=hard_fraction,
            soft_fraction=soft_fraction,
            soft_pool_factor=self.hparams.soft_pool_factor,
        )
        return selection, scores

    def masked_passes(
        self,
        motion: Tensor,
        mask: Tensor,
        speaker: Tensor,
        low: Tensor,
        high: Tensor,
        speech: Mapping[str, Tensor],
        codes: Mapping[str, Tensor],
    ) -> dict[str, tuple[dict[str, Tensor], dict[str, Tensor]]]:
        """Passes B (no injection) and C (injection) with the same mask: name -> (logits, code vectors)."""
        injection = self.speech_injection(motion, mask, speaker, speech)
        if not self.hparams.batch_passes_bc:
            shared = dict(gt_codes=codes, speech=speech, alignment=False)  # pass A's alignment losses are the step's
            outputs = {
                "B": self.generator(motion, mask, speaker, low, high, **shared),
                "C": self.generator(motion, mask, speaker, low, high, injection=injection, **shared),
            }
            return {name: (output.logits, output.code_vectors) for name, output in outputs.items()}
        both = self.generator(
            double(motion),
            double(mask),
            double(speaker),
            double(low),
            double(high),
            injection=torch.cat([torch.zeros_like(injection), injection]),  # + 0 is exactly "no injection"
            gt_codes={part: double(part_codes, dim=1) for part, part_codes in codes.items()},
            speech={part: double(features) for part, features in speech.items()},
            alignment=False,  # pass A's are the step's
        )
        size = motion.shape[0]
        halves = {"B": slice(0, size), "C": slice(size, 2 * size)}
        return {
            name: (
                {part: logits[:, half] for part, logits in both.logits.items()},
                {part: vectors[:, half] for part, vectors in both.code_vectors.items()},
            )
            for name, half in halves.items()
        }

    def compute_losses(self, batch: Mapping[str, Tensor], progress: float) -> StepResult:
        """Passes A, B and C on a batch of windows (module docstring); `progress` in [0, 1] drives the mask schedule."""
        motion, speaker, low, high = batch["motion"], batch["speaker"], batch["audio_low"], batch["audio_high"]
        with torch.autocast(motion.device.type, enabled=False):  # exact stage-1 codes, also under mixed precision
            targets = self.synthesizer.encode_targets(motion.float(), batch["expressions"].float())
        indices = {part: target[0] for part, target in targets.items()}
        codes = {part: target[1] for part, target in targets.items()}
        speech = self.generator.mam.speech_features(low, high)

        pass_a_mask = seed_mask(motion.shape[0], motion.shape[1], self.hparams.seed_frames, device=motion.device)
        injection = self.speech_injection(motion, pass_a_mask, speaker, speech)
        output_a = self.generator(
            motion, pass_a_mask, speaker, low, high, injection=injection, gt_codes=codes, speech=speech
        )
        mam = output_a.alignment_losses
        pass_terms = {}
        pass_terms["A"], token_loss = self.rvq_terms(output_a.logits, output_a.code_vectors, indices, codes)
        pass_terms["A"].update(self.infonce_terms(output_a))

        selection, scores = self.choose_mask(motion, speaker, low, high, token_loss, progress)
        if selection is not None:
            for name, (logits, vectors) in self.masked_passes(
                motion, selection.mask, speaker, low, high, speech, codes
            ).items():
                pass_terms[name], _ = self.rvq_terms(logits, vectors, indices, codes)

        total = torch.zeros((), device=motion.device)
        logged: dict[str, Tensor] = {}
        for name, values in pass_terms.items():
            values["mam"] = mam["total"]
            pass_loss = sum(self.loss_weights[term] * values[term] for term in DEFAULT_LOSS_WEIGHTS if term in values)
            total = total + pass_loss
            logged[f"{name}/loss"] = pass_loss
            logged.update({f"{name}/{term}": value for term, value in values.items()})
        logged.update({f"mam/{term}": value for term, value in mam.items() if term != "total"})
        logged["mask/schedule_progress"] = torch.tensor(progress, device=motion.device)
        if selection is not None:
            for group, frames in (("hard", selection.hard), ("soft", selection.soft), ("random", selection.uniform)):
                logged[f"mask/{group}_fraction"] = frames.float().mean()
        return StepResult(loss=total, terms=logged, selection=selection, scores=scores)

    def _log_step(self, stage: str, result: StepResult, batch_size: int) -> None:
        options = dict(on_step=stage == "train", on_epoch=True, batch_size=batch_size, sync_dist=stage != "train")
        self.log(f"{stage}/loss", result.loss.detach(), prog_bar=True, **options)
        self.log_dict({f"{stage}/{name}": value.detach().float() for name, value in result.terms.items()}, **options)

    # ---------------------------------------------------------------------------------- training

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        result = self.compute_losses(batch, self.schedule_progress())
        self._log_step("train", result, len(batch["motion"]))
        return result.loss

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        self.ema.update(self.generator)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.generator.parameters(), lr=self.hparams.lr, betas=tuple(self.hparams.adam_betas))

    # ---------------------------------------------------------------------------------- validation

    def _metrics_epoch(self) -> bool:
        """Whether this validation epoch evaluates FGD and diversity: every `metrics_every_n_epochs`, always in
        `validate`, never in the sanity check."""
        if self.trainer.sanity_checking:
            return False
        if self.trainer.state.fn == TrainerFn.VALIDATING:
            return True
        return (self.current_epoch + 1) % self.hparams.metrics_every_n_epochs == 0

    @torch.no_grad()
    def generate_windows(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Pass-A generations of a batch of windows, decoded by stage 1: (B, T, 337) motion, (B, T, 100) expressions.

        Each window is seeded with its first `seed_frames` ground-truth frames, like inference window 0.
        """
        motion = batch["motion"]
        indices, _ = self.synthesizer.predict_window(
            motion[:, : self.hparams.seed_frames],
            batch["speaker"],
            batch["audio_low"],
            batch["audio_high"],
            temperature=self.hparams.temperature,
            top_k=self.hparams.top_k,
        )
        return self.synthesizer.decode(indices, motion[:, 0, START_XZ_COLUMNS])

    def joints(self, motion: Tensor) -> Tensor:
        """(..., T, 337) whole-body motion -> (..., T, 55, 3) joint positions of the configured kinematics."""
        rotations = rot6d_to_matrix(rearrange(motion[..., ROTATION_COLUMNS], "... (j six) -> ... j six", six=ROT6D_DIM))
        return self.kinematics.joints_from_rotmats(rotations, motion[..., TRANS_COLUMNS])

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        result = self.compute_losses(batch, self.schedule_progress())
        self._log_step("val", result, len(batch["motion"]))
        if batch_idx == 0:
            self._log_validation_media(batch, result)
        if self._metrics_epoch():
            generated, _ = self.generate_windows(batch)
            metrics = self._stage_metrics("val")
            if "fgd" in metrics:
                metrics["fgd"].update(batch["motion"][..., ROTATION_COLUMNS], real=True)
                metrics["fgd"].update(generated[..., ROTATION_COLUMNS], real=False)
            metrics["l1div"].update(list(self.joints(generated)))
            metrics["l1div_gt"].update(list(self.joints(batch["motion"])))

    def on_validation_epoch_end(self) -> None:
        if not self._metrics_epoch():
            return
        metrics = self._stage_metrics("val")
        # compute() already all-reduces; sync_dist only averages identical values
        self.log_dict({f"val/{name}": metric.compute().float() for name, metric in metrics.items()}, sync_dist=True)
        for metric in metrics.values():
            metric.reset()

    def _log_validation_media(self, batch: Mapping[str, Tensor], result: StepResult) -> None:
        """The SQA scores and mask over the waveform, and a GT-vs-generated clip, of the batch's first window."""
        if tensorboard(self) is None:
            return
        first = {name: value[:1] for name, value in batch.items() if isinstance(value, Tensor)}
        scores = self.ema_scores(first["motion"], first["speaker"], first["audio_low"], first["audio_high"])[0]
        mask = torch.zeros_like(scores, dtype=torch.bool) if result.selection is None else result.selection.mask[0]
        log_figure(
            self,
            "val/sqa_mask",
            lambda: attention_mask_figure(
                first["audio"][0].float().cpu().numpy(),
                scores.cpu().numpy(),
                mask.cpu().numpy(),
                title=f"EMA SQA frame scores; shaded: the {self.hparams.masking} mask of passes B/C",
            ),
        )
        frames = self.hparams.render_frames
        if frames > 0:
            generated, _ = self.generate_windows(first)
            clips = [self.joints(first["motion"])[0, :frames], self.joints(generated)[0, :frames]]
            log_skeleton_clip(self, "val/clip", clips, ["GT", "generated (pass A)"])

    # ---------------------------------------------------------------------------------- test

    def on_test_epoch_start(self) -> None:
        self._scorer.to(self.device).reset()
        self._test_started = time.perf_counter()

    @torch.no_grad()
    def generate_sequence(
        self,
        motion: Tensor,
        expressions: Tensor,
        speaker: Tensor,
        audio_low: Tensor,
        audio_high: Tensor,
        betas: Tensor | None = None,
    ) -> tuple[dict[str, np.ndarray], Tensor]:
        """One whole sequence generated as the test loop generates it: seeded with the ground truth's first
        `seed_frames` frames, driven by the given speech features.

        Args:
            motion: (T, 337) ground truth (only its seed frames are read); expressions: (T, 100), likewise.
            speaker: () speaker index; audio_low, audio_high: (T, D) speech features.
            betas: (300,) body shape written into the SMPL-X arrays (None: zeros).

        Returns:
            The SMPL-X arrays of the generated motion (`motion_to_smplx`) and its (T,) SQA frame scores.
        """
        seed = self.hparams.seed_frames
        result = self.synthesizer.generate(
            audio_low[None],
            audio_high[None],
            speaker.reshape(1),
            motion[None, :seed],
            expressions[None, :seed],
            temperature=self.hparams.temperature,
            top_k=self.hparams.top_k,
        )
        betas = None if betas is None else betas.cpu()
        return motion_to_smplx(result["motion"][0], result["expressions"][0], betas), result["scores"][0]

    def _smplx_tensors(self, arrays: Mapping[str, np.ndarray]) -> dict[str, Tensor]:
        """poses (T, 165), trans (T, 3), expressions (T, 100) float32 on the module's device."""
        return {
            key: torch.from_numpy(np.asarray(arrays[key], dtype=np.float32)).to(self.device) for key in SMPLX_KEYS
        }

    def test_step(self, batch: dict, batch_idx: int) -> None:
        if len(batch["id"]) != 1:
            raise ValueError(f"the test loop takes one whole sequence per batch, got {len(batch['id'])}")
        sequence_id = batch["id"][0]
        betas = batch["betas"][0] if "betas" in batch else None
        inputs = (batch[name][0] for name in ("motion", "expressions", "speaker", "audio_low", "audio_high"))
        generated_arrays, scores = self.generate_sequence(*inputs, betas=betas)
        output_dir = Path(self.hparams.output_dir)
        path = write_smplx_npz(output_dir / f"{sequence_id}.npz", generated_arrays)
        # BC reads the whole wav file, as `echomask evaluate` and the paper-era loop do (SPEC §8.1)
        audio = read_audio_checked(self._audio_files[sequence_id])
        write_sqa(output_dir / f"{sequence_id}_sqa.npz", scores.float().cpu().numpy(), audio, AUDIO_SAMPLE_RATE)
        betas = None if betas is None else betas.cpu()
        ground_truth = motion_to_smplx(batch["motion"][0], batch["expressions"][0], betas)
        try:
            self._scorer.add(
                sequence_id,
                self._smplx_tensors(ground_truth),
                self._smplx_tensors(generated_arrays),
                audio,
                None if betas is None else betas.to(self.device),
                npz=str(path),
            )
        except ValueError as error:
            raise ValueError(f"test sequence {sequence_id}: {error}") from error

    def on_test_epoch_end(self) -> None:
        datamodule = self.trainer.datamodule
        output_dir = str(self.hparams.output_dir)
        provenance = Provenance(
            data_root=str(datamodule.hparams.root),
            split=",".join(datamodule.hparams.test_splits),
            speakers=datamodule.hparams.speakers,
            predictions=output_dir,
            cropping=(
                "generated for the whole cached sequence (motion cropped to the whole seconds it shares with its "
                "audio, SPEC §4.5); BC reads the whole audio file"
            ),
        )
        report = self._scorer.report(
            f"generator ({output_dir})", provenance, seconds=time.perf_counter() - self._test_started
        )
        # the report's values are already synced over ranks; sync_dist only averages identical values
        self.log_dict({f"test/{name}": value for name, value in report["metrics"].items()}, sync_dist=True)
        if self.trainer.is_global_zero:
            print(format_report(report))
            path = write_report(report, Path(output_dir) / "metrics.json")
            print(f"generated motion and metrics written to {path.parent}")
