"""`VQVAEModule`: trains one body-part RVQ-VAE (SPEC §5). One class, four configs (face, upper, hands, lower).

Thin by design: the network is `models.conv_vqvae.RVQVAE`, the loss terms are
`lit.part_losses`, the weights come from the config. Logged: every loss term, per-layer codebook
usage and perplexity, reconstruction error in degrees (geodesic, the part's joints) and metres (mean
joint-position error of the part's joints; not for the face, whose error is the expression MSE),
at validation ``val/geodesic_static``, the error of holding each window still at its mean (a ``val/geodesic``
not clearly below it means the tokens carry the pose but not the motion), and a rendered
ground-truth-vs-reconstruction skeleton clip.
"""
from __future__ import annotations

import math

import lightning.pytorch as pl
import torch

from echomask.lit.kinematics_holder import KinematicsHolder
from echomask.lit.media import log_skeleton_clip
from echomask.lit.part_losses import body_terms, face_terms, static_geodesic, whole_body_joints
from echomask.models.conv_vqvae import RVQVAE
from echomask.motion.parts import PART_DIMS, PART_JOINTS, PART_NAMES, whole_body_to_parts

# SPEC §5.2: commitment weight 1.0 (paper release), foot skate 20; every other term 1.0.
DEFAULT_LOSS_WEIGHTS = {
    "geodesic": 1.0,
    "velocity": 1.0,
    "acceleration": 1.0,
    "joint_mse": 1.0,
    "expression_mse": 1.0,
    "contact_mse": 1.0,
    "translation": 1.0,
    "foot_skate": 20.0,
    "commitment": 1.0,
}


class VQVAEModule(KinematicsHolder, pl.LightningModule):
    """Stage-1 RVQ-VAE of one body part.

    Args:
        part: "face", "upper", "hands" or "lower".
        width: conv channels (paper 256).
        depth: downsampling stages, ×2 each (paper 2: 64 frames → 16 tokens).
        dilations: dilations of the residual stacks (paper 1, 3, 9).
        num_quantizers: residual VQ layers (paper 6).
        codebook_size: codes per layer (paper 256).
        code_dim: code vector size (paper 256).
        ema_decay: codebook EMA decay (paper 0.99).
        dead_code_threshold: EMA count below which a code is replaced (paper 1.0).
        gumbel_temperature: code sampling temperature in training (paper 0.5).
        quantizer_dropout: probability of dropping the layers above a random cut-off (SPEC 0.2).
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
        dilations: tuple[int, ...] = (1, 3, 9),
        num_quantizers: int = 6,
        codebook_size: int = 256,
        code_dim: int = 256,
        ema_decay: float = 0.99,
        dead_code_threshold: float = 1.0,
        gumbel_temperature: float = 0.5,
        quantizer_dropout: float = 0.2,
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
        self.save_hyperparameters()
        self.part = part
        self.loss_weights = {**DEFAULT_LOSS_WEIGHTS, **(loss_weights or {})}
        self.model = RVQVAE(
            input_dim=PART_DIMS[part],
            width=width,
            depth=depth,
            dilations=tuple(dilations),
            num_quantizers=num_quantizers,
            codebook_size=codebook_size,
            code_dim=code_dim,
            decay=ema_decay,
            dead_code_threshold=dead_code_threshold,
            temperature=gumbel_temperature,
            quantizer_dropout=quantizer_dropout,
        )
        self.init_kinematics(smplx_model_dir)

    def part_stream(self, batch: dict) -> torch.Tensor:
        """(B, T, D_part) target stream of this part from a batch with `motion` and `expressions`."""
        return whole_body_to_parts(batch["motion"], batch["expressions"])[self.part]

    def _step(self, batch: dict, stage: str) -> tuple[torch.Tensor, dict]:
        target = self.part_stream(batch)
        output = self.model(target)
        recon = output["recon"]
        if self.part == "face":
            terms = face_terms(recon, target)
            recon_joints = target_joints = None
        else:
            terms, recon_joints, target_joints = body_terms(self.part, recon, target, batch["motion"], self.kinematics)
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
