"""`TranslationModule`: trains the global-translation model (SPEC §5.3).

The model sees the lower-body stream with translation and contact zeroed and predicts x/z
translation velocity and absolute height. Losses: L1 on that representation, L1 on its
velocity and acceleration (weight 5 in the paper), and foot skating (weight 20): the speed of
the feet, placed by the integrated predicted translation, on frames where the ground truth says
they are planted. The model predicts no contact itself (contact comes from the lower-body
RVQ-VAE), so contact enters only through the skating term. At inference its integrated output
replaces the lower RVQ's translation.
"""
from __future__ import annotations

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from einops import rearrange

from echomask.lit.kinematics_holder import KinematicsHolder
from echomask.lit.part_losses import temporal_l1_terms, velocity
from echomask.models.translation import (
    TranslationModel,
    integrate_translation,
    translation_to_velocity_representation,
)
from echomask.motion.parts import CONTACT_DIM, NUM_JOINTS, ROT6D_DIM, TRANS_DIM, whole_body_to_parts
from echomask.motion.rotations import rot6d_to_matrix
from echomask.motion.skeleton import FOOT_JOINTS

# SPEC §5.3: velocity/acceleration weight 5, foot skating 20.
DEFAULT_LOSS_WEIGHTS = {"representation": 1.0, "velocity": 5.0, "acceleration": 5.0, "foot_skate": 20.0}


class TranslationModule(KinematicsHolder, pl.LightningModule):
    """Args:
    width, depth, latent_dim, dilations: the conv autoencoder's sizes (paper: 256, 2, 256, (1, 3, 9)).
    loss_weights: overrides of `DEFAULT_LOSS_WEIGHTS`.
    lr, adam_betas: Adam settings (paper: 1.5e-4, (0.5, 0.999), as stage 1).
    smplx_model_dir: SMPL-X model folder; None: the approximate skeleton.
    """

    def __init__(
        self,
        width: int = 256,
        depth: int = 2,
        latent_dim: int = 256,
        dilations: tuple[int, ...] = (1, 3, 9),
        loss_weights: dict[str, float] | None = None,
        lr: float = 1.5e-4,
        adam_betas: tuple[float, float] = (0.5, 0.999),
        smplx_model_dir: str | None = None,
    ):
        super().__init__()
        unknown = sorted(set(loss_weights or {}) - set(DEFAULT_LOSS_WEIGHTS))
        if unknown:
            raise ValueError(f"unknown loss weight(s) {unknown}; known: {sorted(DEFAULT_LOSS_WEIGHTS)}")
        self.save_hyperparameters()
        self.loss_weights = {**DEFAULT_LOSS_WEIGHTS, **(loss_weights or {})}
        self.model = TranslationModel(width=width, depth=depth, latent_dim=latent_dim, dilations=tuple(dilations))
        self.init_kinematics(smplx_model_dir)

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        whole_body = batch["motion"]
        lower = whole_body_to_parts(whole_body, batch["expressions"])["lower"]
        rot_dim = ROT6D_DIM * NUM_JOINTS
        trans = whole_body[..., rot_dim : rot_dim + TRANS_DIM]
        contact = whole_body[..., rot_dim + TRANS_DIM : rot_dim + TRANS_DIM + CONTACT_DIM]
        representation = self.model(lower)
        predicted = integrate_translation(representation, start_xz=trans[:, 0, [0, 2]])
        target = translation_to_velocity_representation(trans)
        rotations = rot6d_to_matrix(rearrange(whole_body[..., :rot_dim], "b t (j six) -> b t j six", six=ROT6D_DIM))
        feet = self.kinematics.joints_from_rotmats(rotations, predicted)[:, :, list(FOOT_JOINTS)]
        foot_speed = velocity(feet).norm(dim=-1)
        terms = {
            "representation": F.l1_loss(representation, target),
            **temporal_l1_terms(representation, target),
            "foot_skate": (foot_speed * contact[:, :-1]).mean(),
        }
        loss = sum(self.loss_weights[name] * value for name, value in terms.items())
        log = dict(on_step=stage == "train", on_epoch=True, batch_size=len(whole_body), sync_dist=stage != "train")
        self.log(f"{stage}/loss", loss, prog_bar=True, **log)
        self.log_dict({f"{stage}/{name}": value for name, value in terms.items()}, **log)
        self.log(f"{stage}/translation_error_m", (predicted - trans).norm(dim=-1).mean().detach(), **log)
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, betas=tuple(self.hparams.adam_betas))
