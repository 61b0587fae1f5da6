"""Training of the FGD feature extractor on corpora that ship no ``AESKConv_240_100.bin`` (SPEC §8.2).

BEAT2 ships EMAGE's skeleton-conv autoencoder as ``weights/AESKConv_240_100.bin``; FGD on BEAT2 uses that
file unchanged. The synthetic corpus and any new dataset have none, so ``make train-evaluator``
(``echomask fit --config experiments/evaluator.yaml``) trains the same architecture here, and
``echomask evaluate`` records which checkpoint produced every FGD number.
"""
from __future__ import annotations

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor

from echomask.models.motion_autoencoder import MotionAutoencoder

RECONSTRUCTION_LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss}


class EvaluatorModule(pl.LightningModule):
    """Trains :class:`MotionAutoencoder` (the architecture of BEAT2's ``AESKConv_240_100.bin``) to reconstruct motion.

    The autoencoder is held as ``self.model`` with its default (released) architecture, so
    :meth:`MotionAutoencoder.from_checkpoint` loads this module's Lightning checkpoints; only its encoder is
    used afterwards, as the FGD feature extractor (SPEC §8.2).

    A batch must hold ``"motion"`` windows ``(B, T, 337)`` from :class:`~echomask.data.datamodule.BEAT2DataModule`
    (``items: [motion]``); their first 330 columns, the 55 joints in 6D, are the autoencoder's input and
    target. ``T`` must be a multiple of 16 (one latent per 16 frames; the default 64-frame windows are).

    Loss: ``reconstruction_weight · d(x̂, x) + velocity_weight · d(Δx̂, Δx)``, with ``d`` the L1 or mean squared
    error and ``Δx = x[:, 1:] - x[:, :-1]`` the frame-to-frame change.

    Args:
        lr: Adam learning rate.
        betas: Adam betas.
        reconstruction_loss: ``"l1"`` or ``"mse"``, used for both terms.
        reconstruction_weight: weight of the pose reconstruction term.
        velocity_weight: weight of the velocity term (0 turns it off).
    """

    def __init__(
        self,
        lr: float = 3e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        reconstruction_loss: str = "l1",
        reconstruction_weight: float = 1.0,
        velocity_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if reconstruction_loss not in RECONSTRUCTION_LOSSES:
            raise ValueError(
                f"EvaluatorModule: reconstruction_loss must be one of {sorted(RECONSTRUCTION_LOSSES)}, "
                f"got {reconstruction_loss!r}"
            )
        for name, weight in (("reconstruction_weight", reconstruction_weight), ("velocity_weight", velocity_weight)):
            if weight < 0:
                raise ValueError(f"EvaluatorModule: {name} must be >= 0, got {weight}")
        self.save_hyperparameters()
        self.model = MotionAutoencoder()
        self.distance = RECONSTRUCTION_LOSSES[reconstruction_loss]

    def rotations(self, batch: dict[str, Tensor]) -> Tensor:
        """The autoencoder's input ``(B, T, 330)``: the 6D joint rotations of the batch's ``"motion"`` windows."""
        if "motion" not in batch:
            raise ValueError(
                f"EvaluatorModule needs 'motion' in each batch (set the data module's items to [motion]); "
                f"got {sorted(batch)}"
            )
        motion = batch["motion"]
        frames = motion.shape[1]
        if frames % self.model.frames_per_latent != 0:
            raise ValueError(
                f"EvaluatorModule: windows of {frames} frames are not a multiple of {self.model.frames_per_latent} "
                "(the data module's window must be)"
            )
        return motion[..., : self.model.input_dim]

    def losses(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``{"loss", "reconstruction", "velocity"}`` of one batch (scalars)."""
        target = self.rotations(batch)
        reconstruction = self.model(target)
        pose_error = self.distance(reconstruction, target)
        velocity_error = self.distance(reconstruction.diff(dim=1), target.diff(dim=1))
        hp = self.hparams
        total = hp.reconstruction_weight * pose_error + hp.velocity_weight * velocity_error
        return {"loss": total, "reconstruction": pose_error, "velocity": velocity_error}

    def _log_losses(self, stage: str, losses: dict[str, Tensor], batch_size: int) -> None:
        for name, value in losses.items():
            self.log(
                f"{stage}/{name}",
                value,
                prog_bar=name == "loss",
                on_step=stage == "train",
                on_epoch=True,
                sync_dist=True,
                batch_size=batch_size,
            )

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        losses = self.losses(batch)
        self._log_losses("train", losses, batch_size=batch["motion"].shape[0])
        return losses["loss"]

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._log_losses("val", self.losses(batch), batch_size=batch["motion"].shape[0])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.model.parameters(), lr=self.hparams.lr, betas=tuple(self.hparams.betas))
