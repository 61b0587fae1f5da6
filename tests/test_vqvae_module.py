"""Stage-1 LightningModules through the CLI and Lightning (SPEC §5, §7, §9; issue 4).

Every run uses the tiny demo sizes (experiments/demo/vqvae.yaml) on the session's small synthetic
corpus, with one feature cache for the whole module and logs/checkpoints in tmp folders.
"""
from __future__ import annotations

import math
import random
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from echomask.cli import main as echomask_main
from echomask.data.datamodule import BEAT2DataModule, EpochShuffleSampler
from echomask.lit.callbacks import RNGStateCheckpoint
from echomask.lit.part_losses import part_rotations, static_geodesic
from echomask.lit.quiet_trainer import quiet_trainer
from echomask.lit.vqvae_module import VQVAEModule, rvqvae_arguments
from echomask.motion.parts import PART_DIMS
from echomask.motion.rotations import axis_angle_to_rot6d, geodesic_distance
from echomask.stages import stage

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"
BODY_PARTS = ("upper", "hands", "lower")
STAGE1 = ("face", *BODY_PARTS, "translation")
DEMO_MODEL = yaml.safe_load((EXPERIMENTS / "demo" / "vqvae.yaml").read_text())["model"]["init_args"]
TINY_BATCH = 4  # a few steps per epoch on the session's corpus

# SPEC §5.2 / §5.3: the loss terms each stage-1 model must log (the release's terms, lit/part_losses.py,
# lit/translation_module.py; positions = joints of the approximate skeleton here, no face vertices without SMPL-X).
ROTATION_TERMS = ("geodesic", "velocity", "acceleration", "commitment")
POSITION_TERMS = ("position_mse", "position_velocity", "position_acceleration")
LOSS_TERMS = {
    "face": (*ROTATION_TERMS, "expression_mse", "expression_velocity", "expression_acceleration"),
    "upper": (*ROTATION_TERMS, *POSITION_TERMS),
    "hands": (*ROTATION_TERMS, *POSITION_TERMS),
    "lower": (*ROTATION_TERMS, "position_mse", "contact_mse", "translation", "foot_skate"),
    "translation": (
        "contact_mse", "velocity", "velocity_delta", "velocity_delta2", "translation", "translation_velocity",
        "translation_acceleration", *POSITION_TERMS, "foot_skate",
    ),
}


@pytest.fixture(scope="module")
def stage1(synthetic_corpus, tmp_path_factory) -> dict[str, Path]:
    """The corpus and a feature cache built once for this module (the configs' speech-feature settings)."""
    cache = tmp_path_factory.mktemp("stage1_cache")
    BEAT2DataModule(root=str(synthetic_corpus), cache_dir=str(cache)).prepare_data()
    return {"corpus": synthetic_corpus, "cache": cache}


def fit(stage1: dict, part: str, workdir: Path, *options: str) -> Path:
    """`echomask fit` with the part's tiny configs; returns the run's log folder (`<workdir>/<part>`)."""
    args = [
        "fit",
        *stage(part).config_arguments("tiny", root=REPO),
        "--data.root", str(stage1["corpus"]),
        "--data.cache_dir", str(stage1["cache"]),
        "--data.batch_size", str(TINY_BATCH),
        "--trainer.logger.init_args.save_dir", str(workdir),
        "--trainer.default_root_dir", str(workdir),
        "--trainer.enable_progress_bar", "false",
        *options,
    ]
    assert echomask_main(args) == 0
    return workdir / part


def tiny_vqvae(part: str) -> VQVAEModule:
    """The model settings of experiments/demo/vqvae.yaml, without the validation clip."""
    return VQVAEModule(part=part, **{**DEMO_MODEL, "render_frames": 0})


def tiny_datamodule(stage1: dict) -> BEAT2DataModule:
    """The module's corpus and cache with the configs' data settings and small batches."""
    return BEAT2DataModule(root=str(stage1["corpus"]), cache_dir=str(stage1["cache"]), batch_size=TINY_BATCH)


def checkpoint(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


# --- every stage-1 config trains through the CLI -------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("part", STAGE1)
def test_fast_dev_run_through_the_cli(stage1, part, tmp_path):
    fit(stage1, part, tmp_path, "--trainer.fast_dev_run", "true")


# --- logging (SPEC §5.2, §9) -----------------------------------------------------------------


def logged(run: Path) -> tuple[set[str], set[str]]:
    """Scalar and image tags of the TensorBoard event files of one run."""
    events = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return set(events.Tags()["scalars"]), set(events.Tags()["images"])


@pytest.mark.parametrize("part", STAGE1)
def test_logs_every_loss_term_codebook_statistics_errors_and_a_clip(stage1, part, tmp_path):
    run = fit(
        stage1, part, tmp_path,
        "--trainer.max_epochs", "1",
        "--trainer.limit_train_batches", "2",
        "--trainer.limit_val_batches", "1",
        "--trainer.log_every_n_steps", "1",
        "--trainer.num_sanity_val_steps", "0",
    )
    scalars, images = logged(run)
    expected = {"val/loss", "train/loss_step", "train/loss_epoch"}
    for term in LOSS_TERMS[part]:
        expected |= {f"val/{term}", f"train/{term}_step", f"train/{term}_epoch"}
    if part == "translation":
        expected |= {"val/translation_error_m"}
    else:
        expected |= {"val/rotation_error_deg", "train/rotation_error_deg_epoch", "train/codebook/dead_code_resets_epoch"}
        expected |= {"val/geodesic_static"}
        for layer in range(DEMO_MODEL["num_quantizers"]):  # all layers are active in validation
            expected |= {f"val/codebook/usage_l{layer}", f"val/codebook/perplexity_l{layer}"}
        assert f"val/clip_{part}" in images, "the GT-vs-reconstruction clip is rendered at validation"
    if part in BODY_PARTS:
        expected |= {"val/joint_error_m"}
    missing = expected - scalars
    assert not missing, f"{part}: not logged: {sorted(missing)}"


def test_static_geodesic_is_the_error_of_holding_the_window_at_its_mean():
    joints = PART_DIMS["upper"] // 6
    still = axis_angle_to_rot6d(torch.full((1, 8, joints, 3), 0.2)).reshape(1, 8, -1)
    assert static_geodesic("upper", still) < 1e-5
    # every joint swings about x between -a and +a: the mean 6D is the identity's, so the error is a everywhere
    angle = 0.3
    swing = torch.zeros(1, 8, joints, 3)
    swing[:, :, :, 0] = torch.tensor([angle, -angle] * 4)[None, :, None]
    error = static_geodesic("upper", axis_angle_to_rot6d(swing).reshape(1, 8, -1))
    torch.testing.assert_close(error, torch.tensor(angle), rtol=1e-4, atol=1e-5)


# --- exact resume (SPEC §5.1) ----------------------------------------------------------------


def test_training_order_depends_only_on_seed_and_epoch():
    data = list(range(50))
    orders = {}
    for epoch in (0, 1):
        for draw in range(2):
            torch.manual_seed(draw)  # the global generator must not matter
            sampler = EpochShuffleSampler(data, seed=7)
            sampler.set_epoch(epoch)
            orders[epoch, draw] = list(sampler)
    assert orders[0, 0] == orders[0, 1] and orders[1, 0] == orders[1, 1]
    assert orders[0, 0] != orders[1, 0], "a new order every epoch"
    assert sorted(orders[0, 0]) == data
    other_seed = EpochShuffleSampler(data, seed=8)
    assert list(other_seed) != orders[0, 0]


def test_rng_state_callback_restores_torch_numpy_and_python_generators(tmp_path):
    callback = RNGStateCheckpoint()
    trainer = quiet_trainer()
    saved: dict = {}
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    callback.on_save_checkpoint(trainer, None, saved)
    torch.save(saved, tmp_path / "states.pt")
    first = (torch.rand(3), np.random.rand(3), random.random())
    callback.on_load_checkpoint(trainer, None, torch.load(tmp_path / "states.pt", weights_only=True))
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]
    with pytest.warns(UserWarning, match="will not continue exactly"):
        callback.on_load_checkpoint(trainer, None, {})


def assert_same_state(one: dict, other: dict, context: str) -> None:
    assert one.keys() == other.keys()
    differing = [name for name in one if not torch.equal(one[name], other[name])]
    assert not differing, f"{context}: {differing}"


def test_resumed_run_continues_exactly_like_an_uninterrupted_run(stage1, tmp_path, monkeypatch):
    """2 epochs, save, resume for 2 more == 4 epochs in one go: every parameter and buffer bit for bit.

    The demo config samples codes (Gumbel), may drop quantizer layers (p 0.2) and replaces dead codes
    (about ten per step here): all of these draw random numbers.
    """
    datamodule = tiny_datamodule(stage1)
    datamodule.setup("fit")
    steps_per_epoch = len(datamodule.train_dataloader())
    options = ("--model.render_frames", "0")
    first_half = fit(stage1, "upper", tmp_path / "first_half", "--trainer.max_epochs", "2", *options)
    saved = checkpoint(first_half)
    assert saved["global_step"] == 2 * steps_per_epoch and "rng_states" in saved

    states_at_train_start = []
    original_on_train_start = VQVAEModule.on_train_start

    def record(module):
        states_at_train_start.append({name: value.clone() for name, value in module.state_dict().items()})
        original_on_train_start(module)

    monkeypatch.setattr(VQVAEModule, "on_train_start", record)
    resume = ("--ckpt_path", str(first_half / "checkpoints" / "last.ckpt"))
    resumed = checkpoint(fit(stage1, "upper", tmp_path / "resumed", "--trainer.max_epochs", "4", *options, *resume))
    uninterrupted = checkpoint(fit(stage1, "upper", tmp_path / "uninterrupted", "--trainer.max_epochs", "4", *options))

    # Right after loading, the model is the saved one (codebooks, EMA sums/counts, flags): nothing re-initialised.
    assert_same_state(states_at_train_start[0], saved["state_dict"], "state at the start of the resumed run")
    initialised = [name for name in saved["state_dict"] if name.endswith("initialised")]
    assert initialised and all(bool(saved["state_dict"][name]) for name in initialised)

    assert resumed["global_step"] == uninterrupted["global_step"] == 4 * steps_per_epoch
    assert_same_state(resumed["state_dict"], uninterrupted["state_dict"], "resumed vs uninterrupted")
    resumed_moments = resumed["optimizer_states"][0]["state"]
    for index, moments in uninterrupted["optimizer_states"][0]["state"].items():
        assert_same_state(resumed_moments[index], moments, f"Adam state {index}")
    codebook = "model.quantizer.codebooks.0.codebook"
    assert not torch.equal(saved["state_dict"][codebook], uninterrupted["state_dict"][codebook]), "training went on"

    # The test can fail: without the saved random states, the continuation draws other codes.
    monkeypatch.setattr(RNGStateCheckpoint, "on_load_checkpoint", lambda *args: None)
    unseeded = checkpoint(fit(stage1, "upper", tmp_path / "unseeded", "--trainer.max_epochs", "4", *options, *resume))
    assert not torch.equal(unseeded["state_dict"][codebook], uninterrupted["state_dict"][codebook])


# --- DDP (SPEC §7) -------------------------------------------------------------------------


class SaveStatePerRank(pl.Callback):
    """Writes every rank's model state at the end of training to `<folder>/rank<r>.pt`."""

    def __init__(self, folder: str):
        self.folder = folder

    def on_train_end(self, trainer, pl_module):
        state = {name: value.detach().cpu().clone() for name, value in pl_module.state_dict().items()}
        torch.save(state, Path(self.folder) / f"rank{trainer.global_rank}.pt")


@pytest.mark.slow
@pytest.mark.ddp
def test_ddp_two_processes_keep_codebooks_identical_across_ranks(stage1, tmp_path):
    """2 CPU processes (gloo). DDP's own buffer broadcast is off, so only the RVQ's all-reduce keeps ranks equal."""
    from lightning.pytorch.strategies import DDPStrategy

    pl.seed_everything(0)
    trainer = quiet_trainer(
        devices=2,
        strategy=DDPStrategy(start_method="spawn", broadcast_buffers=False),
        max_epochs=2,
        limit_val_batches=0,
        callbacks=[SaveStatePerRank(str(tmp_path))],
    )
    trainer.fit(tiny_vqvae("upper"), datamodule=tiny_datamodule(stage1))
    rank0, rank1 = (torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in (0, 1))
    assert_same_state(rank0, rank1, "rank 0 vs rank 1")
    assert all(bool(rank0[name]) for name in rank0 if name.endswith("initialised"))


# --- learning (SPEC §5.2) ------------------------------------------------------------------


def rotation_error_deg(module: VQVAEModule, loader) -> float:
    """Mean geodesic error (degrees) of the eval-mode reconstruction of the part's joints."""
    module.eval()
    errors = []
    with torch.no_grad():
        for batch in loader:
            target = module.part_stream(batch)
            recon = module.model(target)["recon"]
            errors.append(geodesic_distance(part_rotations(module.part, recon), part_rotations(module.part, target)))
    module.train()
    return math.degrees(torch.cat([e.flatten() for e in errors]).mean().item())


def test_short_training_lowers_reconstruction_error_well_below_its_initial_value(stage1):
    pl.seed_everything(0)
    datamodule = tiny_datamodule(stage1)
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = tiny_vqvae("upper")
    initial = rotation_error_deg(module, datamodule.val_dataloader())
    trainer = quiet_trainer(max_steps=100, limit_val_batches=0)
    trainer.fit(module, datamodule=datamodule)
    final = rotation_error_deg(module, datamodule.val_dataloader())  # held-out windows
    assert final < 0.2 * initial, f"rotation error {initial:.1f}° -> {final:.1f}° after 100 steps"


# --- input normalisation (off in the release) ----------------------------------------------------


def test_normalization_statistics_come_from_the_training_windows_and_a_resumed_run_keeps_them(stage1, tmp_path):
    floor = 0.02
    options = ("--model.render_frames", "0", "--model.normalize", "true", "--model.normalize_std_floor", str(floor))
    first = fit(stage1, "upper", tmp_path / "first", "--trainer.max_epochs", "1", *options)
    saved = checkpoint(first)
    datamodule = tiny_datamodule(stage1)
    datamodule.setup("fit")
    windows = datamodule.datasets["train"]
    frames = torch.cat([tiny_vqvae("upper").part_stream(windows[index]) for index in range(len(windows))]).double()
    state = saved["state_dict"]
    assert bool(state["model.normalization_set"]) and saved["hyper_parameters"]["normalize"] is True
    torch.testing.assert_close(state["model.input_mean"].double(), frames.mean(0), atol=1e-6, rtol=1e-5)
    std = frames.std(0, correction=0).clamp_min(floor)
    torch.testing.assert_close(state["model.input_std"].double(), std, atol=1e-6, rtol=1e-5)
    assert (std == floor).any() and (std > floor).any()  # the floor acts on some features only

    # resuming loads the statistics instead of computing them again: a marked mean survives
    marked = {**saved, "state_dict": {**state, "model.input_mean": state["model.input_mean"] + 1.0}}
    torch.save(marked, tmp_path / "marked.ckpt")
    resume = ("--ckpt_path", str(tmp_path / "marked.ckpt"))
    resumed = checkpoint(fit(stage1, "upper", tmp_path / "resumed", "--trainer.max_epochs", "2", *options, *resume))
    assert torch.equal(resumed["state_dict"]["model.input_mean"], marked["state_dict"]["model.input_mean"])


def test_checkpoints_from_before_the_normalization_option_build_without_it():
    hparams = dict(tiny_vqvae("upper").hparams)
    del hparams["normalize"]
    assert rvqvae_arguments(hparams, "upper")["normalize"] is False
