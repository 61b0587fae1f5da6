"""GeneratorModule (SPEC §6.5, §6.6, §7, §8): training passes, EMA, masking strategies, checkpoints, test loop, DDP.

Stage 1 is a set of real Lightning checkpoints of the demo sizes (experiments/demo/vqvae.yaml), each trained
for one step on the session's small synthetic corpus, so the generator module reads them exactly as it reads
the output of `make train-vqvae`.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import yaml

from echomask.cli import main as echomask_main
from echomask.data.beat2 import read_motion
from echomask.data.datamodule import BEAT2DataModule
from echomask.evaluation import evaluate_predictions
from echomask.lit.generator_module import STAGE1_MODELS, GeneratorModule
from echomask.lit.translation_module import TranslationModule
from echomask.lit.vqvae_module import VQVAEModule
from echomask.models.masking import MASK_STRATEGIES
from echomask.models.motion_autoencoder import MotionAutoencoder
from echomask.motion.parts import WHOLE_BODY_DIM

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"
WINDOW_ITEMS = ["motion", "expressions", "speaker", "audio_low", "audio_high", "audio"]
TEST_ITEMS = ["motion", "expressions", "joints", "betas", "audio", "audio_low", "audio_high", "speaker", "id"]
TINY_GENERATOR = dict(
    hidden_dim=32,
    hidden_heads=2,
    encoder_width=32,
    encoder_blocks=1,
    face_decoder_layers=1,
    cascade_layers=1,
    latent_heads=2,
    mam_heads=2,
    mam_layers_per_block=1,
    sqa_layers=1,
    sqa_heads=2,
    dropout=0.0,
)


def demo_stage1_sizes() -> dict:
    """The model settings of experiments/demo/vqvae.yaml, without the validation clip."""
    settings = yaml.safe_load((EXPERIMENTS / "demo" / "vqvae.yaml").read_text())["model"]["init_args"]
    return {**settings, "render_frames": 0}


def demo_speech_settings() -> dict:
    """The speech-feature settings of experiments/demo/generator.yaml (extractor and size)."""
    data = yaml.safe_load((EXPERIMENTS / "demo" / "generator.yaml").read_text())["data"]["init_args"]
    return {"hubert": data["hubert"], "feature_dim": data["feature_dim"]}


def quiet_trainer(root: Path, **overrides) -> pl.Trainer:
    settings = dict(
        accelerator="cpu",
        devices=1,
        max_steps=1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )
    return pl.Trainer(**{**settings, **overrides})


@pytest.fixture(scope="module")
def workspace(synthetic_corpus, tmp_path_factory) -> dict:
    """The corpus, a feature cache, one-step stage-1 checkpoints and an (untrained) FGD evaluator checkpoint."""
    folder = tmp_path_factory.mktemp("generator_module")
    cache = folder / "cache"
    stage1_data = BEAT2DataModule(
        root=str(synthetic_corpus),
        cache_dir=str(cache),
        items=["motion", "expressions"],
        batch_size=8,
        **demo_speech_settings(),
    )
    checkpoints = {}
    sizes = demo_stage1_sizes()
    for name in STAGE1_MODELS:
        pl.seed_everything(0)
        module = TranslationModule(width=sizes["width"]) if name == "translation" else VQVAEModule(part=name, **sizes)
        trainer = quiet_trainer(folder)
        trainer.fit(module, datamodule=stage1_data)
        checkpoints[name] = folder / "vqvae" / name / "checkpoints" / "last.ckpt"
        trainer.save_checkpoint(checkpoints[name])
    evaluator = folder / "evaluator.ckpt"
    untrained = {f"model.{key}": value for key, value in MotionAutoencoder().state_dict().items()}
    torch.save({"state_dict": untrained}, evaluator)
    return {"corpus": synthetic_corpus, "cache": cache, "stage1": checkpoints, "evaluator": evaluator, "folder": folder}


def make_datamodule(workspace: dict, **overrides) -> BEAT2DataModule:
    settings = dict(
        root=str(workspace["corpus"]),
        cache_dir=str(workspace["cache"]),
        items=WINDOW_ITEMS,
        test_items=TEST_ITEMS,
        batch_size=4,
        **demo_speech_settings(),
    )
    return BEAT2DataModule(**{**settings, **overrides})


def make_module(workspace: dict, tmp_path: Path, **overrides) -> GeneratorModule:
    settings = dict(
        generator=TINY_GENERATOR,
        stage1_checkpoints={name: str(path) for name, path in workspace["stage1"].items()},
        fgd_checkpoint=str(workspace["evaluator"]),
        output_dir=str(tmp_path / "test_output"),
        render_frames=0,
        **demo_speech_settings(),
    )
    return GeneratorModule(**{**settings, **overrides})


def window_batch(workspace: dict) -> dict:
    datamodule = make_datamodule(workspace)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return next(iter(datamodule.train_dataloader()))


# ----------------------------------------------------------------------------------------- the CLI


def test_fast_dev_run_through_the_cli_with_the_demo_config(workspace, tmp_path):
    stage1 = json.dumps({name: str(path) for name, path in workspace["stage1"].items()})
    status = echomask_main(
        [
            "fit",
            "--config", str(EXPERIMENTS / "generator.yaml"),
            "--config", str(EXPERIMENTS / "demo" / "generator.yaml"),
            "--data.root", str(workspace["corpus"]),
            "--data.cache_dir", str(workspace["cache"]),
            "--model.init_args.stage1_checkpoints", stage1,
            "--model.init_args.fgd_checkpoint", str(workspace["evaluator"]),
            "--model.init_args.output_dir", str(tmp_path / "test_output"),
            "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"),
            "--trainer.default_root_dir", str(tmp_path),  # fast_dev_run's checkpoint goes here, not into the repo
            "--trainer.accelerator", "cpu",
            "--trainer.enable_progress_bar", "false",
            "--data.batch_size", "4",
            "--trainer.fast_dev_run", "1",
        ]
    )  # fmt: skip
    assert status == 0


# ----------------------------------------------------------------------------------------- training


def test_ema_moves_towards_the_live_weights_by_the_decay_rule(workspace, tmp_path):
    pl.seed_everything(0)
    decay = 0.9
    module = make_module(workspace, tmp_path, ema_decay=decay)
    live = module.generator
    before = {name: value.detach().clone() for name, value in module.ema.module.named_parameters()}
    assert all(torch.equal(before[name], value) for name, value in live.named_parameters())  # starts as a copy

    quiet_trainer(tmp_path).fit(module, datamodule=make_datamodule(workspace))

    assert int(module.ema.num_updates) == 1
    moved = 0
    for name, averaged in module.ema.module.named_parameters():
        expected = decay * before[name] + (1 - decay) * live.get_parameter(name).detach()
        torch.testing.assert_close(averaged, expected, rtol=1e-5, atol=1e-7)
        moved += int(not torch.equal(averaged, before[name]))
    assert moved > 0, "no averaged parameter changed"
    assert not any(p.requires_grad for p in module.ema.parameters())
    assert "ema.num_updates" in module.state_dict()
    assert not module.ema.module.training  # stays in eval mode while the owner trains


def test_batching_passes_b_and_c_gives_the_same_losses_and_gradients(workspace, tmp_path):
    pl.seed_everything(0)
    module = make_module(workspace, tmp_path)  # dropout 0
    batch = window_batch(workspace)
    results = {}
    for batched in (True, False):
        module.hparams.batch_passes_bc = batched
        module.zero_grad()
        torch.manual_seed(7)  # the same mask draws in both runs
        result = module.compute_losses(batch, progress=0.5)
        result.loss.backward()
        gradients = {name: p.grad.clone() for name, p in module.generator.named_parameters() if p.grad is not None}
        results[batched] = (result, gradients)
    (joint, joint_gradients), (separate, separate_gradients) = results[True], results[False]
    assert torch.equal(joint.selection.mask, separate.selection.mask)
    assert joint.terms.keys() == separate.terms.keys() and {"B/loss", "C/loss"} <= joint.terms.keys()
    for name in joint.terms:
        torch.testing.assert_close(joint.terms[name], separate.terms[name], rtol=1e-5, atol=1e-6, msg=name)
    torch.testing.assert_close(joint.loss, separate.loss, rtol=1e-5, atol=1e-6)
    assert joint_gradients.keys() == separate_gradients.keys()
    for name, gradient in joint_gradients.items():
        torch.testing.assert_close(gradient, separate_gradients[name], rtol=1e-4, atol=1e-6, msg=name)
    # passes B and C really differ (C has the speech injection), so the test compares two different things
    assert not torch.equal(joint.terms["B/cross_entropy"], joint.terms["C/cross_entropy"])


@pytest.mark.parametrize("strategy", MASK_STRATEGIES)
def test_each_masking_strategy_runs_a_training_step(workspace, tmp_path, strategy):
    pl.seed_everything(0)
    module = make_module(workspace, tmp_path, masking=strategy)
    trainer = quiet_trainer(tmp_path)
    trainer.fit(module, datamodule=make_datamodule(workspace))
    logged = trainer.logged_metrics
    assert torch.isfinite(logged["train/loss_step"])
    assert ("train/B/loss_step" in logged) == (strategy != "none")
    assert ("train/C/loss_step" in logged) == (strategy != "none")
    assert "train/A/infonce_face_step" in logged and "train/A/accuracy_l0_step" in logged
    if strategy != "none":
        masked = module.hparams.num_masked / module.hparams.window
        hard, soft = logged["train/mask/hard_fraction_step"], logged["train/mask/soft_fraction_step"]
        total = hard + soft + logged["train/mask/random_fraction_step"]
        torch.testing.assert_close(total, torch.tensor(masked))
        # progress 0 of the schedule: no hard frames; soft 20 % of 24 = 5 frames except for the random mask
        assert hard == 0
        expected_soft = 0.0 if strategy == "random" else round(0.2 * module.hparams.num_masked) / module.hparams.window
        torch.testing.assert_close(soft, torch.tensor(expected_soft))


# ----------------------------------------------------------------------------------------- checkpoints and errors


def test_generator_checkpoint_alone_rebuilds_everything_and_generates(workspace, tmp_path):
    pl.seed_everything(0)
    copies = {}
    for name, path in workspace["stage1"].items():
        copies[name] = tmp_path / "stage1" / f"{name}.ckpt"
        copies[name].parent.mkdir(exist_ok=True)
        shutil.copy(path, copies[name])
    module = make_module(workspace, tmp_path, stage1_checkpoints={name: str(path) for name, path in copies.items()})
    datamodule = make_datamodule(workspace)
    trainer = quiet_trainer(tmp_path)
    trainer.fit(module, datamodule=datamodule)
    checkpoint = tmp_path / "generator.ckpt"
    trainer.save_checkpoint(checkpoint)
    shutil.rmtree(tmp_path / "stage1")

    loaded = GeneratorModule.load_for_inference(checkpoint)
    assert not loaded.training and not loaded.synthesizer.vqvaes["face"].training
    assert loaded.hparams.stage1_hparams["face"]["code_dim"] == demo_stage1_sizes()["code_dim"]
    torch.testing.assert_close(loaded.speech_projection, datamodule.cache.speech_features.projection)
    original_state = module.state_dict()
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, original_state[name]), name

    datamodule.setup("test")
    sequence = datamodule.test_dataloader().dataset[0]
    batch = {name: value.unsqueeze(0) for name, value in sequence.items() if isinstance(value, torch.Tensor)}
    seed = (batch["motion"][:, :4], batch["expressions"][:, :4])
    inputs = (batch["audio_low"], batch["audio_high"], batch["speaker"], *seed)
    result = loaded.synthesizer.generate(*inputs)
    frames = batch["motion"].shape[1]
    assert result["motion"].shape == (1, frames, WHOLE_BODY_DIM) and torch.isfinite(result["motion"]).all()
    assert result["expressions"].shape == (1, frames, 100)
    torch.testing.assert_close(result["motion"], module.eval().synthesizer.generate(*inputs)["motion"])


def test_missing_stage1_checkpoint_names_the_file_and_the_make_target(workspace, tmp_path):
    missing = tmp_path / "nowhere" / "last.ckpt"
    with pytest.raises(FileNotFoundError, match="make train-vqvae") as error:
        stage1 = {**{name: str(path) for name, path in workspace["stage1"].items()}, "hands": str(missing)}
        make_module(workspace, tmp_path, stage1_checkpoints=stage1)
    assert str(missing) in str(error.value)


def test_speech_settings_must_match_the_data_module(workspace, tmp_path):
    module = make_module(workspace, tmp_path, hubert_low_layer=5)
    with pytest.raises(ValueError, match="hubert_low_layer: model 5 vs data 11"):
        quiet_trainer(tmp_path).fit(module, datamodule=make_datamodule(workspace))


def test_generator_sizes_fixed_by_stage1_are_rejected(workspace, tmp_path):
    with pytest.raises(ValueError, match="latent_dim"):
        make_module(workspace, tmp_path, generator={**TINY_GENERATOR, "latent_dim": 32})


# ----------------------------------------------------------------------------------------- test loop


def test_test_loop_writes_one_readable_npz_per_sequence_and_prints_the_table(workspace, tmp_path, capsys):
    pl.seed_everything(0)
    module = make_module(workspace, tmp_path)
    datamodule = make_datamodule(workspace)
    quiet_trainer(tmp_path).test(module, datamodule=datamodule)
    printed = capsys.readouterr().out

    output = Path(module.hparams.output_dir)
    sequences = datamodule.datasets["test"].sequences
    assert sorted(path.stem for path in output.glob("*.npz")) == sorted(sequence.id for sequence in sequences)
    for sequence in sequences:
        motion = read_motion(output / f"{sequence.id}.npz")
        assert motion["poses"].shape == (sequence.num_frames, 165) and motion["fps"] == 30
        assert np.isfinite(motion["poses"]).all()
    header = printed.splitlines()[0]
    for column in ("FGD", "BC", "L1div"):
        assert column in header
    assert f"FGD checkpoint: {workspace['evaluator']}" in printed and "protocol: paper" in printed
    report = json.loads((output / "metrics.json").read_text())
    assert report["num_sequences"] == len(sequences)
    assert {"fgd", "bc", "l1div", "face_mse"} <= report["metrics"].keys()
    assert all(np.isfinite(value) for value in report["metrics"].values())
    # `echomask evaluate --pred <output_dir>` re-scores the written files to the same numbers
    rescored = evaluate_predictions(output, workspace["corpus"], fgd_checkpoint=workspace["evaluator"], progress=False)
    assert rescored["metrics"].keys() == report["metrics"].keys()
    for name, value in report["metrics"].items():
        assert value == pytest.approx(rescored["metrics"][name], rel=1e-4), name


# ----------------------------------------------------------------------------------------- DDP (SPEC §7)


@pytest.mark.slow
def test_two_process_ddp_fit_and_test_on_cpu(workspace, tmp_path):
    pl.seed_everything(0)
    module = make_module(workspace, tmp_path, metrics_every_n_epochs=1)
    datamodule = make_datamodule(workspace)
    trainer = quiet_trainer(
        tmp_path, strategy="ddp_spawn", devices=2, max_steps=2, limit_val_batches=1, num_sanity_val_steps=0
    )
    trainer.fit(module, datamodule=datamodule)
    assert int(module.ema.num_updates) == 2  # rank 0's weights come back to this process after ddp_spawn
    trainer.test(module, datamodule=datamodule)
    report = json.loads((Path(module.hparams.output_dir) / "metrics.json").read_text())
    # each rank generated its own sequence; the gathered report and the synced metrics cover both
    assert report["num_sequences"] == len(datamodule.cache.sequences(["test"])) == 2
    assert all(np.isfinite(value) for value in report["metrics"].values())
