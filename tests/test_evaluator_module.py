"""The FGD evaluator training (SPEC §8.2): the evaluator stage's tiny configs through LightningCLI."""
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml

from echomask.lightning_cli import build_lightning_cli
from echomask.lit.evaluator_module import EvaluatorModule
from echomask.models.motion_autoencoder import MotionAutoencoder
from echomask.stages import STAGES

REPO = Path(__file__).resolve().parents[1]
EVALUATOR = STAGES["evaluator"]
TRAIN_STEPS = 50


class LossRecorder(pl.Callback):
    """Keeps the training loss of every step."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


@pytest.fixture(scope="module")
def trained(synthetic_corpus, tmp_path_factory):
    """The tiny configs fitted for TRAIN_STEPS steps on the synthetic corpus, everything written under tmp (the
    logger's and checkpoint's folders follow trainer.default_root_dir by interpolation)."""
    work = tmp_path_factory.mktemp("evaluator")
    recorder = LossRecorder()
    cli = build_lightning_cli(
        [
            "fit",
            *EVALUATOR.config_arguments("tiny", root=REPO),
            "--trainer.default_root_dir", str(work / "logs"),
            "--data.init_args.root", str(synthetic_corpus),
            "--data.init_args.cache_dir", str(work / "cache"),
            "--data.init_args.batch_size", "6",
            "--trainer.max_steps", str(TRAIN_STEPS),
            "--trainer.max_epochs", "-1",
            "--trainer.limit_val_batches", "1",
            "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false",
        ],
        trainer_defaults={"callbacks": [recorder]},
    )
    return cli, recorder.losses, work / "logs"


def test_the_training_loss_decreases(trained):
    _, losses, _ = trained
    assert len(losses) == TRAIN_STEPS
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, f"loss went from {first:.4f} to {last:.4f}"


def test_train_and_validation_losses_are_logged(trained):
    cli, _, _ = trained
    logged = cli.trainer.logged_metrics
    for name in ("train/loss_epoch", "train/reconstruction_epoch", "train/velocity_epoch", "val/loss", "val/velocity"):
        assert name in logged and torch.isfinite(logged[name])


def test_last_checkpoint_loads_as_the_fgd_encoder(trained):
    cli, _, logs = trained
    checkpoint = logs / "evaluator" / "checkpoints" / "last.ckpt"
    assert checkpoint.is_file()
    assert torch.load(checkpoint, map_location="cpu", weights_only=False)["global_step"] == TRAIN_STEPS
    loaded = MotionAutoencoder.from_checkpoint(checkpoint).eval()
    trained_model = cli.model.model.eval()
    motion = torch.randn(2, 64, 330)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(motion), trained_model.encode(motion), rtol=0, atol=0)
    assert (logs / "evaluator").is_dir() and any((logs / "evaluator").glob("version_*/events.out.tfevents.*"))


def test_the_tiny_overlay_changes_only_the_budget_the_precision_and_the_speech_features():
    full, tiny = (yaml.safe_load((REPO / path).read_text()) for path in EVALUATOR.config_files("tiny"))
    assert set(tiny) == {"trainer", "data"}
    assert set(tiny["trainer"]) == {"max_epochs", "log_every_n_steps", "precision"}
    assert tiny["trainer"]["max_epochs"] < full["trainer"]["max_epochs"]
    assert (full["trainer"]["precision"], tiny["trainer"]["precision"]) == ("auto", "32-true")
    # the speech features only, which the tiny configs of every stage share (one feature cache)
    assert tiny["data"] == {"init_args": {"speech": {"hubert": "signal"}}}


def test_windows_must_be_a_multiple_of_16_frames():
    module = EvaluatorModule()
    with pytest.raises(ValueError, match="not a multiple of 16"):
        module.losses({"motion": torch.zeros(1, 40, 337)})
    with pytest.raises(ValueError, match="needs 'motion'"):
        module.losses({"expressions": torch.zeros(1, 64, 100)})


@pytest.mark.parametrize(
    "settings, message",
    [({"reconstruction_loss": "huber"}, "reconstruction_loss must be one of"), ({"velocity_weight": -1.0}, ">= 0")],
)
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        EvaluatorModule(**settings)


def test_mse_and_velocity_weight_change_the_loss():
    torch.manual_seed(0)
    batch = {"motion": torch.randn(2, 64, 337)}
    torch.manual_seed(1)
    l1 = EvaluatorModule(velocity_weight=0.0)
    torch.manual_seed(1)
    mse = EvaluatorModule(reconstruction_loss="mse", velocity_weight=2.0)
    l1_losses, mse_losses = l1.losses(batch), mse.losses(batch)
    torch.testing.assert_close(l1_losses["loss"], l1_losses["reconstruction"])
    torch.testing.assert_close(mse_losses["loss"], mse_losses["reconstruction"] + 2.0 * mse_losses["velocity"])
    target = batch["motion"][..., :330]
    torch.testing.assert_close(mse_losses["reconstruction"], ((mse.model(target) - target) ** 2).mean())
