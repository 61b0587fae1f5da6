"""`TranslationModule`: trains the global-translation model (SPEC §5.3) with the release's losses (`aelowerfoot`).

The model (`models.translation.TranslationModel`, the release's `VAEConvZero`) reads the ground-truth
lower-body stream with translation and contact zeroed. From its output (same 61-d layout) it takes the
translation in the velocity representation, [x velocity, y, z velocity] in m/s, and the foot contact.

| term                            | what                                                                  | weight |
|---------------------------------|-----------------------------------------------------------------------|--------|
| contact_mse                     | MSE of the predicted foot contact                                      | 1      |
| velocity                        | L1 of the x and of the z velocity (central differences of the truth)  | 1      |
| velocity_delta, velocity_delta2 | L1 of their first and second frame differences (x and z)               | 5, 5   |
| translation                     | L1 of the integrated translation (x/z from the true start, y as is)   | 1      |
| translation_velocity, _acceleration | L1 of its first and second frame differences                      | 5, 5   |
| position_mse                    | MSE of the joints (true pose, predicted translation)                   | 1      |
| position_velocity, _acceleration | MSE of their first and second frame differences                      | 5, 5   |
| foot_skate                      | foot velocity where the predicted contact > 0.95 (`part_losses`)      | 20     |

The release computes the position terms on SMPL-X vertices; with the true pose on both sides every vertex
and every joint moves with the translation alone, so joints give the same values without SMPL-X.
"""
from __future__ import annotations

from collections.abc import Mapping

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from einops import rearrange

from echomask.lit.kinematics_holder import KinematicsHolder
from echomask.lit.part_losses import foot_skate, temporal_terms, velocity
from echomask.models.translation import (
    HORIZONTAL_AXES,
    LOWER_CONTACT,
    LOWER_TRANSLATION,
    TranslationModel,
    integrate_translation,
    network_input,
    translation_velocity_target,
)
from echomask.motion.parts import CONTACT_DIM, NUM_JOINTS, ROT6D_DIM, TRANS_DIM, whole_body_to_parts
from echomask.motion.rotations import rot6d_to_matrix

# The release's weights (aelowerfoot_trainer.py with rec_weight = rec_ver_weight = 1).
DEFAULT_LOSS_WEIGHTS = {
    "contact_mse": 1.0,
    "velocity": 1.0,
    "velocity_delta": 5.0,
    "velocity_delta2": 5.0,
    "translation": 1.0,
    "translation_velocity": 5.0,
    "translation_acceleration": 5.0,
    "position_mse": 1.0,
    "position_velocity": 5.0,
    "position_acceleration": 5.0,
    "foot_skate": 20.0,
}
CONTACT_THRESHOLD = 0.95  # release: predicted contact above which the feet must not slide
TRANSLATION_HPARAMS = ("width", "layers", "negative_slope", "frame_rate", "test_contact", "integration")


def translation_arguments(hparams: Mapping) -> dict:
    """`TranslationModel` keyword arguments from the hyper-parameters of a `TranslationModule` (or its checkpoint)."""
    return {name: hparams[name] for name in TRANSLATION_HPARAMS}


def per_axis_l1(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum over the last axis of the L1 loss of each channel (the release adds the x and the z term)."""
    return sum(F.l1_loss(prediction[..., axis], target[..., axis]) for axis in range(prediction.shape[-1]))


class TranslationModule(KinematicsHolder, pl.LightningModule):
    """Args:
    width, layers, negative_slope, frame_rate, test_contact, integration: see `TranslationModel` (release: 256, 4,
        0.2, 30, test_contact "decoded", integration "velocity"); the last two act at test time only.
    loss_weights: overrides of `DEFAULT_LOSS_WEIGHTS`.
    lr, adam_betas: Adam settings (as stage 1: 1.5e-4, (0.5, 0.999)).
    smplx_model_dir: SMPL-X model folder; None: the approximate skeleton.
    """

    def __init__(
        self,
        width: int = 256,
        layers: int = 4,
        negative_slope: float = 0.2,
        frame_rate: float = 30.0,
        test_contact: str = "zeroed",
        integration: str = "contact_locked",
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
        self.model = TranslationModel(**translation_arguments(self.hparams))
        self.init_kinematics(smplx_model_dir)

    def _terms(self, batch: dict) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """(loss terms, predicted translation (B, T, 3), true translation (B, T, 3))."""
        motion = batch["motion"]
        rot_dim = ROT6D_DIM * NUM_JOINTS
        trans = motion[..., rot_dim : rot_dim + TRANS_DIM]
        contact = motion[..., rot_dim + TRANS_DIM : rot_dim + TRANS_DIM + CONTACT_DIM]
        output = self.model(network_input(whole_body_to_parts(motion, batch["expressions"])["lower"]))
        representation, predicted_contact = output[..., LOWER_TRANSLATION], output[..., LOWER_CONTACT]
        speed = representation[..., HORIZONTAL_AXES]
        target_speed = translation_velocity_target(trans, self.model.frame_rate)[..., HORIZONTAL_AXES]
        predicted = integrate_translation(representation, trans[:, 0, HORIZONTAL_AXES], self.model.frame_rate)
        rotations = rot6d_to_matrix(rearrange(motion[..., :rot_dim], "b t (j six) -> b t j six", six=ROT6D_DIM))
        joints = self.kinematics.joints_from_rotmats(rotations, predicted)
        target_joints = self.kinematics.joints_from_rotmats(rotations, trans)
        terms = {
            "contact_mse": F.mse_loss(predicted_contact, contact),
            "velocity": per_axis_l1(speed, target_speed),
            "velocity_delta": per_axis_l1(velocity(speed), velocity(target_speed)),
            "velocity_delta2": per_axis_l1(velocity(velocity(speed)), velocity(velocity(target_speed))),
            "translation": F.l1_loss(predicted, trans),
            **temporal_terms(predicted, trans, F.l1_loss, prefix="translation_"),
            "position_mse": F.mse_loss(joints, target_joints),
            **temporal_terms(joints, target_joints, F.mse_loss, prefix="position_"),
            "foot_skate": foot_skate(joints, predicted_contact, CONTACT_THRESHOLD),
        }
        return terms, predicted, trans

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        terms, predicted, trans = self._terms(batch)
        loss = sum(self.loss_weights[name] * value for name, value in terms.items())
        log = dict(on_step=stage == "train", on_epoch=True, batch_size=len(trans), sync_dist=stage != "train")
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
