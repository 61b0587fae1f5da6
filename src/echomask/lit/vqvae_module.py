"""`VQVAEModule`: trains one body-part RVQ-VAE (SPEC §5). One class, four configs (face, upper, hands, lower).

Thin by design: the network is `models.conv_vqvae.RVQVAE`, the loss terms are
`lit.part_losses` (the release's terms), the weights come from the config. Logged: every loss term, per-layer codebook
usage and perplexity, reconstruction error in degrees (geodesic, the part's joints) and metres (mean
joint-position error of the part's joints; not for the face, whose error is the expression MSE),
at validation ``val/geodesic_static``, the error of holding each window still at its mean (a ``val/geodesic``
not clearly below it means the tokens carry the pose but not the motion), and a rendered
ground-truth-vs-reconstruction skeleton clip.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import lightning.pytorch as pl
import torch

from echomask.lit.kinematics_holder import KinematicsHolder
from echomask.lit.media import log_skeleton_clip
from echomask.lit.part_losses import body_terms, face_terms, static_geodesic, whole_body_joints
from echomask.models.conv_vqvae import RVQVAE
from echomask.motion.parts import PART_DIMS, PART_JOINTS, PART_NAMES, whole_body_to_parts

logger = logging.getLogger(__name__)

# The release's weights (configs/cnn_vqvae_*_30.yaml: rec_weight = rec_pos_weight = rec_ver_weight = 1): foot skate
# 20, every other term 1; the lower part has no translation loss in the release (weight 0).
DEFAULT_LOSS_WEIGHTS = {
    "geodesic": 1.0,
    "velocity": 1.0,
    "acceleration": 1.0,
    "position_mse": 1.0,
    "position_velocity": 1.0,
    "position_acceleration": 1.0,
    "expression_mse": 1.0,
    "expression_velocity": 1.0,
    "expression_acceleration": 1.0,
    "contact_mse": 1.0,
    "translation": 0.0,
    "foot_skate": 20.0,
    "commitment": 1.0,
}

# VQVAEModule hyper-parameter -> RVQVAE argument, where the names differ.
RVQVAE_ARGUMENT_NAMES = {"ema_decay": "decay", "gumbel_temperature": "temperature"}
RVQVAE_HPARAMS = (
    "width",
    "depth",
    "encoder_dilations",
    "decoder_dilations",
    "dropout",
    "num_quantizers",
    "codebook_size",
    "code_dim",
    "ema_decay",
    "dead_code_threshold",
    "gumbel_temperature",
    "quantizer_dropout",
    "straight_through",
    "codebook_rows",
    "dead_code_count",
    "normalize",
)
# Hyper-parameters added after checkpoints were written, with the value that gives the behaviour of those checkpoints.
LATER_HPARAMS = {"normalize": False}


def rvqvae_arguments(hparams: Mapping, part: str) -> dict:
    """`RVQVAE` keyword arguments from the hyper-parameters of a `VQVAEModule` (or its checkpoint)."""
    hparams = {**LATER_HPARAMS, **hparams}
    arguments = {RVQVAE_ARGUMENT_NAMES.get(name, name): hparams[name] for name in RVQVAE_HPARAMS}
    for name in ("encoder_dilations", "decoder_dilations"):
        arguments[name] = list(arguments[name])
    return {"input_dim": PART_DIMS[part], **arguments}


class VQVAEModule(KinematicsHolder, pl.LightningModule):
    """Stage-1 RVQ-VAE of one body part.

    Args:
        part: "face", "upper", "hands" or "lower".
        width: conv channels (paper 256).
        depth: downsampling stages, ×2 each (paper 2: 64 frames → 16 tokens).
        encoder_dilations, decoder_dilations: dilations of the residual stacks (release: 9, 3, 1 both).
        dropout: dropout in the residual blocks (release 0.2).
        num_quantizers: residual VQ layers (paper 6).
        codebook_size: codes per layer (paper 256).
        code_dim: code vector size (paper 256).
        ema_decay: codebook EMA decay (paper 0.99).
        dead_code_threshold: EMA count below which a code is replaced (paper 1.0).
        gumbel_temperature: code sampling temperature in training (paper 0.5).
        quantizer_dropout: probability of dropping the layers above a random cut-off (SPEC 0.2; release 0).
        straight_through, codebook_rows, dead_code_count: quantizer rules, see `models.residual_vq`
            (release: "per_layer", "in_order", "keep").
        normalize: z-score the part stream's features before the encoder (undone after the decoder) with the mean
            and std of the training windows, computed once at the start of fitting and stored in the checkpoint
            (release: off).
        normalize_std_floor: the smallest std a feature is divided by (features that barely move are not blown up).
        foot_skate_translation: translation under the feet in the lower part's skate term, "ground_truth" or
            "zero" (the release).
        loss_weights: overrides of `DEFAULT_LOSS_WEIGHTS`.
        lr: Adam learning rate (paper 1.5e-4).
        adam_betas: Adam betas (paper (0.5, 0.999)).
        smplx_model_dir: SMPL-X model folder for joint positions; None: the approximate skeleton.
        render_frames: frames of the validation clip rendered to TensorBoard (0 disables).
    """

    def __init__(
        self,
        part: str,
        width: int = 256,
        depth: int = 2,
        encoder_dilations: tuple[int, ...] = (9, 3, 1),
        decoder_dilations: tuple[int, ...] = (9, 3, 1),
        dropout: float = 0.2,
        num_quantizers: int = 6,
        codebook_size: int = 256,
        code_dim: int = 256,
        ema_decay: float = 0.99,
        dead_code_threshold: float = 1.0,
        gumbel_temperature: float = 0.5,
        quantizer_dropout: float = 0.2,
        straight_through: str = "per_layer",
        codebook_rows: str = "random",
        dead_code_count: str = "reset",
        normalize: bool = False,
        normalize_std_floor: float = 1.0e-4,
        foot_skate_translation: str = "ground_truth",
        loss_weights: dict[str, float] | None = None,
        lr: float = 1.5e-4,
        adam_betas: tuple[float, float] = (0.5, 0.999),
        smplx_model_dir: str | None = None,
        render_frames: int = 64,
    ):
        super().__init__()
        if part not in PART_NAMES:
            raise ValueError(f"part must be one of {PART_NAMES}, got {part!r}")
        unknown = sorted(set(loss_weights or {}) - set(DEFAULT_LOSS_WEIGHTS))
        if unknown:
            raise ValueError(f"unknown loss weight(s) {unknown}; known: {sorted(DEFAULT_LOSS_WEIGHTS)}")
        if normalize_std_floor <= 0:
            raise ValueError(f"normalize_std_floor must be positive, got {normalize_std_floor}")
        self.save_hyperparameters()
        self.part = part
        self.loss_weights = {**DEFAULT_LOSS_WEIGHTS, **(loss_weights or {})}
        self.model = RVQVAE(**rvqvae_arguments(self.hparams, part))
        self.init_kinematics(smplx_model_dir)

    def on_fit_start(self) -> None:
        if self.hparams.normalize and not self.model.normalization_set:  # a resumed run keeps the checkpoint's
            self._set_normalization()
        if self.kinematics.is_approximate:
            logger.info(
                "stage 1 %s: position losses on the joints of the approximate skeleton (the release uses SMPL-X mesh "
                "vertices; set smplx_model_dir)%s", self.part, "; no face-vertex terms" if self.part == "face" else ""
            )

    @torch.no_grad()
    def _set_normalization(self) -> None:
        """Per-feature mean and std (floored at `normalize_std_floor`) of the part stream over every frame of the
        training windows (read in order from the datamodule's training set: no random state is used)."""
        datamodule = self.trainer.datamodule
        if datamodule is None:
            raise ValueError(
                "VQVAEModule(normalize=True) needs a datamodule: it computes the input statistics from its training set"
            )
        dataset = datamodule.train_dataloader().dataset
        windows = (dataset[index] for index in range(len(dataset)))
        frames = torch.cat([self.part_stream(window) for window in windows]).to(torch.float64)
        raw_std = frames.std(dim=0, correction=0)
        std = raw_std.clamp_min(self.hparams.normalize_std_floor)
        self.model.set_normalization(frames.mean(dim=0).to(self.model.input_mean), std.to(self.model.input_std))
        logger.info(
            "stage 1 %s: input normalisation from %d training frames; std median %.4f, %d of %d features at the "
            "floor %g",
            self.part, len(frames), float(raw_std.median()),
            int((std == self.hparams.normalize_std_floor).sum()), len(std), self.hparams.normalize_std_floor,
        )

    def part_stream(self, batch: dict) -> torch.Tensor:
        """(B, T, D_part) target stream of this part from a batch with `motion` and `expressions`."""
        return whole_body_to_parts(batch["motion"], batch["expressions"])[self.part]

    def _step(self, batch: dict, stage: str) -> tuple[torch.Tensor, dict]:
        target = self.part_stream(batch)
        output = self.model(target)
        recon = output["recon"]
        if self.part == "face":
            terms = face_terms(recon, target, batch["motion"], self.kinematics)
            recon_joints = target_joints = None
        else:
            terms, recon_joints, target_joints = body_terms(
                self.part,
                recon,
                target,
                batch["motion"],
                self.kinematics,
                foot_skate_translation=self.hparams.foot_skate_translation,
            )
        terms["commitment"] = output["commitment"]
        loss = sum(self.loss_weights[name] * value for name, value in terms.items())
        batch_size = len(target)
        log = dict(on_step=stage == "train", on_epoch=True, batch_size=batch_size, sync_dist=stage != "train")
        self.log(f"{stage}/loss", loss, prog_bar=True, **log)
        self.log_dict({f"{stage}/{name}": value for name, value in terms.items()}, **log)
        self.log(f"{stage}/rotation_error_deg", math.degrees(1) * terms["geodesic"].detach(), **log)
        if stage == "val":  # the error of a still window: the geodesic must beat it for the tokens to carry motion
            self.log(f"{stage}/geodesic_static", static_geodesic(self.part, target), **log)
        if recon_joints is not None:
            # the part's own joints: averaging over all 55 would dilute the error by the joints it does not move
            joints = list(PART_JOINTS[self.part])
            joint_error = (recon_joints[:, :, joints] - target_joints[:, :, joints]).norm(dim=-1).mean()
            self.log(f"{stage}/joint_error_m", joint_error.detach(), **log)
        self._log_codebook(output["stats"], stage, log)
        return loss, output

    def _log_codebook(self, stats: dict, stage: str, log: dict) -> None:
        for layer, active in enumerate(stats["active"].tolist()):
            if active:
                self.log(f"{stage}/codebook/usage_l{layer}", stats["usage"][layer], **log)
                self.log(f"{stage}/codebook/perplexity_l{layer}", stats["perplexity"][layer], **log)
        if stage == "train":
            self.log(f"{stage}/codebook/dead_code_resets", stats["dead_code_resets"].sum().float(), **log)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, _ = self._step(batch, "train")
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        _, output = self._step(batch, "val")
        if batch_idx == 0 and self.hparams.render_frames > 0:
            frames = slice(0, self.hparams.render_frames)
            recon_joints, target_joints = whole_body_joints(
                self.part, output["recon"][:1, frames], batch["motion"][:1, frames], self.kinematics
            )
            log_skeleton_clip(self, f"val/clip_{self.part}", [target_joints[0], recon_joints[0]], ["GT", "reconstruction"])

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, betas=tuple(self.hparams.adam_betas))
