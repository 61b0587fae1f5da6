"""`GeneratorModule`: trains the released EchoMask generator of stage 2 (SPEC §6) and scores it (SPEC §8).

What it holds
- ``self.synthesizer``: a :class:`~echomask.inference.MotionSynthesizer`, i.e. the trained
  :class:`~echomask.models.masked_generator.MaskedGenerator` plus the four frozen stage-1 RVQ-VAEs and the frozen
  global-translation model (no gradients, always in eval mode).
- ``self.ema``: an :class:`~echomask.lit.ema.EMA` copy of the generator (decay 0.9999); it scores the frames for
  the mask (SPEC §6.3).
- ``self.objective``: the three-pass objective (:class:`~echomask.lit.generator_objective.GeneratorObjective`, the
  release's passes A, B, C and losses) with the mask policy (:class:`~echomask.models.masking.MaskPolicy`).
- ``speech_projection`` (buffer): the fixed HuBERT projection the training features were made with; with the
  speech settings (hyper-parameter ``speech``) it says how to compute features for new audio.

Stage 1 is read from its Lightning checkpoints (lit/stage1_loading.py); its architectures are recorded in
``hparams["stage1_hparams"]`` and its weights live in this module's state dict, so a generator checkpoint alone
rebuilds everything (:meth:`GeneratorModule.load_for_inference`).

The mask schedule follows training progress ``global_step / trainer.estimated_stepping_batches``. Validation runs
the same objective (no EMA update) and, every ``metrics_every_n_epochs`` epochs, the monitors of
lit/generator_evaluation.py; the test loop generates, writes and scores whole sequences there too.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor

from echomask.audio.speech_settings import SpeechSettings
from echomask.data.datamodule import BEAT2DataModule
from echomask.inference import SEED_RULES, MotionSynthesizer, motion_to_smplx
from echomask.lit.ema import EMA
from echomask.lit.generator_evaluation import FGD_AUTO, GeneratorEvaluation
from echomask.lit.generator_objective import GeneratorBatch, GeneratorObjective, LossWeights, ObjectiveResult
from echomask.lit.kinematics_holder import KinematicsHolder
from echomask.lit.stage1_loading import build_stage1, generator_arguments, read_stage1
from echomask.metrics.beat_consistency import PROTOCOLS
from echomask.models.decoding import Decoding
from echomask.models.masked_generator import MaskedGenerator
from echomask.models.masking import MaskPolicy
from echomask.motion.parts import PART_NAMES

WINDOW_ITEMS = ("motion", "expressions", "speaker", "audio_low", "audio_high", "audio")  # audio: the SQA plot
TEST_ITEMS = ("motion", "expressions", "speaker", "audio_low", "audio_high", "id")


class GeneratorModule(KinematicsHolder, pl.LightningModule):
    """Stage 2 of EchoMask (module docstring). Every argument is in the configs (experiments/generator.yaml).

    Args:
        generator: `MaskedGenerator` sizes and switches (its defaults = the release for keys left out); the token
            layout, code/speech size, motion size and number of speakers follow from stage 1 and the arguments
            below. A later config replaces the whole dict.
        num_speakers: speaker embeddings (the data gives BEAT2 id − 1; the release: 25, BEAT2 English).
        masking, mask_ratio, hard_schedule, soft_schedule, soft_pool_factor, keep_first: the mask of passes B and C
            (`MaskPolicy`; strategy "speech_queried", "random", "loss_based" or "none").
        ema_decay: decay of the EMA copy that scores frames (SPEC §6.3: 0.9999).
        loss_weights: overrides of `LossWeights` (the release's weights).
        mam_once, batch_passes_bc, share_work: how the objective shares work between passes (`GeneratorObjective`;
            all False: the release's three separate passes).
        lr, adam_betas: Adam, constant learning rate (SPEC §6.5: 5e-5, (0.5, 0.999)).
        window: frames per window (must equal the data's); inference_stride: frames between window starts at test
            time (60); seed_frames: visible frames of pass A and of each inference window (4).
        seed_rule: how later inference windows are seeded (`MotionSynthesizer`: "echomask" or "release", U14).
        temperature, top_k, decoding_steps: code choice at test time (`Decoding`: 0, None, 1 = argmax in one pass
            per window, the paper; decoding_steps > 1 = iterative confidence-based re-masking).
        stage1_checkpoints: name -> stage-1 checkpoint (face, upper, hands, lower, translation); names left out take
            the stage table's path. Read only when `stage1_hparams` is None.
        stage1_hparams: the stage-1 architectures; None reads them (and the weights) from `stage1_checkpoints`.
            Set automatically and saved in generator checkpoints.
        speech: the speech-feature settings (`SpeechSettings`); must equal the data module's.
        smplx_model_dir: SMPL-X model folder for joints and face vertices; None: the approximate skeleton.
        fgd_checkpoint: "auto", a path, or None/"none" to skip FGD (lit/generator_evaluation.py).
        metric_protocol: "paper" or "clean" (SPEC §8.1) for the test metrics.
        metrics_every_n_epochs: validation epochs between the FGD/diversity monitors.
        render_frames: frames of the validation skeleton clip (0 disables it).
        output_dir: where the test loop writes <id>.npz and metrics.json.
        test_videos: the first N test sequences are also rendered as <id>.mp4, ground truth beside generated, with
            their audio (0: none).
    """

    speech_projection: Tensor

    def __init__(
        self,
        generator: dict[str, int | float | bool | str | None] | None = None,
        num_speakers: int = 25,
        masking: str = "speech_queried",
        mask_ratio: float = 0.375,
        hard_schedule: tuple[float, float] = (0.0, 0.2),
        soft_schedule: tuple[float, float] = (0.2, 0.0),
        soft_pool_factor: float = 2.0,
        keep_first: int = 0,
        ema_decay: float = 0.9999,
        loss_weights: dict[str, float] | None = None,
        mam_once: bool = True,
        batch_passes_bc: bool = True,
        share_work: bool = True,
        lr: float = 5e-5,
        adam_betas: tuple[float, float] = (0.5, 0.999),
        window: int = 64,
        inference_stride: int = 60,
        seed_frames: int = 4,
        seed_rule: str = "echomask",
        temperature: float = 0.0,
        top_k: int | None = None,
        decoding_steps: int = 1,
        stage1_checkpoints: dict[str, str] | None = None,
        stage1_hparams: dict[str, dict] | None = None,
        speech: SpeechSettings = SpeechSettings(),
        smplx_model_dir: str | None = None,
        fgd_checkpoint: str | None = FGD_AUTO,
        metric_protocol: str = "paper",
        metrics_every_n_epochs: int = 10,
        render_frames: int = 64,
        output_dir: str = "outputs/generator/test",
        test_videos: int = 4,
    ):
        super().__init__()
        known_weights = {field.name for field in fields(LossWeights)}
        unknown = sorted(set(loss_weights or {}) - known_weights)
        if unknown:
            raise ValueError(f"unknown loss weight(s) {unknown}; known: {sorted(known_weights)}")
        if metric_protocol not in PROTOCOLS:
            raise ValueError(f"metric_protocol must be one of {PROTOCOLS}, got {metric_protocol!r}")
        if metrics_every_n_epochs < 1:
            raise ValueError(f"metrics_every_n_epochs must be at least 1, got {metrics_every_n_epochs}")
        if seed_rule not in SEED_RULES:
            raise ValueError(f"seed_rule must be one of {SEED_RULES}, got {seed_rule!r}")
        Decoding(temperature, top_k, decoding_steps)  # refuses bad settings now, not at the end of training
        self.speech = SpeechSettings.of(speech)
        self.save_hyperparameters()
        self.hparams["speech"] = self.speech.as_dict()  # plain data: checkpoints load with weights_only=True
        policy = MaskPolicy(
            masking, mask_ratio, tuple(hard_schedule), tuple(soft_schedule), soft_pool_factor, keep_first
        )
        self.objective = GeneratorObjective(
            policy, LossWeights(**(loss_weights or {})), seed_frames, mam_once, batch_passes_bc, share_work
        )

        weights = None
        if stage1_hparams is None:
            stage1_hparams, weights = read_stage1(stage1_checkpoints)
            self.hparams["stage1_hparams"] = stage1_hparams
        vqvaes, translation = build_stage1(stage1_hparams)
        if weights is not None:
            for part in PART_NAMES:
                vqvaes[part].load_state_dict(weights[part])
            translation.load_state_dict(weights["translation"])
        model = MaskedGenerator(**generator_arguments(generator, stage1_hparams, num_speakers, self.speech.feature_dim))
        self.synthesizer = MotionSynthesizer(
            model, vqvaes, translation, window, inference_stride, seed_frames, seed_rule=seed_rule
        )
        self.ema = EMA(model, decay=ema_decay)
        # filled in `setup` from the data module's HuBERT features, or from a checkpoint (see load_state_dict)
        self.register_buffer("speech_projection", torch.zeros(0, self.speech.feature_dim))
        self.init_kinematics(smplx_model_dir)
        self.evaluation: GeneratorEvaluation | None = None

    @property
    def decoding(self) -> Decoding:
        """How the test loop chooses codes (``temperature``, ``top_k``, ``decoding_steps``)."""
        return Decoding(self.hparams.temperature, self.hparams.top_k, self.hparams.decoding_steps)

    @property
    def generator(self) -> MaskedGenerator:
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
        self._check_data(datamodule)
        projection = datamodule.cache.speech_features.projection
        if projection is None:
            raise ValueError("GeneratorModule needs speech features with the fixed orthonormal projection (SPEC §4.4)")
        if self.speech_projection.numel() == 0:
            self.speech_projection = projection.to(self.speech_projection.device)
        elif not torch.equal(self.speech_projection.cpu(), projection):
            raise ValueError(
                "the speech projection of this model differs from the data module's: its features were made with "
                "other HuBERT settings"
            )
        if stage in (TrainerFn.FITTING, TrainerFn.VALIDATING, TrainerFn.TESTING):
            self.evaluation = GeneratorEvaluation(self, datamodule, "test" if stage == TrainerFn.TESTING else "val")

    def _check_data(self, datamodule: BEAT2DataModule) -> None:
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

    def objective_batch(self, batch: Mapping[str, Tensor]) -> GeneratorBatch:
        """A data batch of windows with its targets: the frozen stage-1 indices and code vectors."""
        motion = batch["motion"]
        with torch.autocast(motion.device.type, enabled=False):  # exact stage-1 codes, also under mixed precision
            targets = self.synthesizer.encode_targets(motion.float(), batch["expressions"].float())
        return GeneratorBatch(
            motion=motion,
            speaker=batch["speaker"],
            speech_low=batch["audio_low"],
            speech_high=batch["audio_high"],
            codes={part: codes.transpose(0, 1) for part, (_, codes) in targets.items()},  # (L, B, ...) -> (B, L, ...)
            indices={part: indices for part, (indices, _) in targets.items()},
        )

    def compute_losses(self, batch: Mapping[str, Tensor], progress: float) -> ObjectiveResult:
        """Passes A, B and C on a batch of windows; `progress` in [0, 1] drives the mask schedule."""
        return self.objective(self.generator, self.objective_batch(batch), progress, scorer=self.ema.module)

    @torch.no_grad()
    def ema_scores(self, batch: Mapping[str, Tensor]) -> Tensor:
        """(B, T) float32 frame scores of the EMA copy's SQA on the unmasked windows (SPEC §6.3)."""
        return self.objective.sqa_scores(self.ema.module, self.objective_batch(batch))

    def _log_step(self, stage: str, result: ObjectiveResult, batch_size: int) -> None:
        options = dict(on_step=stage == "train", on_epoch=True, batch_size=batch_size, sync_dist=stage != "train")
        self.log(f"{stage}/loss", result.loss.detach(), prog_bar=True, **options)
        self.log_dict({f"{stage}/{name}": value.detach().float() for name, value in result.terms.items()}, **options)

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

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        result = self.compute_losses(batch, self.schedule_progress())
        self._log_step("val", result, len(batch["motion"]))
        if batch_idx == 0:
            self.evaluation.log_media(batch, None if result.selection is None else result.selection.mask)
        if self.evaluation.metrics_epoch():
            self.evaluation.update_monitors(batch)

    def on_validation_epoch_end(self) -> None:
        if self.evaluation.metrics_epoch():
            self.evaluation.log_monitors()

    # ---------------------------------------------------------------------------------- test

    @torch.no_grad()
    def generate_sequence(
        self,
        motion: Tensor,
        expressions: Tensor,
        speaker: Tensor,
        audio_low: Tensor,
        audio_high: Tensor,
        betas: Tensor | None = None,
    ) -> tuple[dict[str, np.ndarray], Tensor, dict[str, Tensor]]:
        """One whole sequence as the test loop generates it: seeded with the ground truth's first `seed_frames`
        frames, driven by the given speech features.

        Args:
            motion: (T, 337) ground truth (only its seed frames are read); expressions: (T, 100), likewise.
            speaker: () speaker index; audio_low, audio_high: (T, D) speech features.
            betas: (300,) body shape written into the SMPL-X arrays (None: zeros).

        Returns:
            The SMPL-X arrays of the generated motion (`motion_to_smplx`), its (T,) SQA frame scores and its
            stitched code indices, part -> (N, L) (N tokens cover at least T frames).
        """
        seed = self.hparams.seed_frames
        result = self.synthesizer.generate(
            audio_low[None],
            audio_high[None],
            speaker.reshape(1),
            motion[None, :seed],
            expressions[None, :seed],
            decoding=self.decoding,
            scores=True,
        )
        betas = None if betas is None else betas.cpu()
        arrays = motion_to_smplx(result["motion"][0], result["expressions"][0], betas)
        return arrays, result["scores"][0], {part: indices[0] for part, indices in result["indices"].items()}

    def on_test_epoch_start(self) -> None:
        self.evaluation.start_test()

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.evaluation.test_sequence(batch)

    def on_test_epoch_end(self) -> None:
        self.evaluation.finish_test()
