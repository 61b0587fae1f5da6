"""GeneratorModule (SPEC §6.5, §6.6, §7, §8): training passes, EMA, masking strategies, checkpoints, test loop, DDP.

Stage 1 is the session's `stage1_checkpoints` (tests/conftest.py): real Lightning checkpoints of the tiny stage-1
configs, each trained for one step on the small synthetic corpus, so the generator module reads them exactly as it
reads the output of `make train-vqvae`. The generator itself is trained through `echomask fit` once per session
(`generator_fit`); the tests here build smaller modules directly.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from echomask.audio.speech_settings import SpeechSettings
from echomask.data.beat2 import read_motion
from echomask.data.datamodule import BEAT2DataModule
from echomask.evaluation import evaluate_predictions
from echomask.lightning_cli import compose
from echomask.lit.generator_module import GeneratorModule
from echomask.lit.quiet_trainer import quiet_trainer
from echomask.models.masking import MASK_STRATEGIES
from echomask.motion.parts import PART_NAMES, WHOLE_BODY_DIM

TINY_SIZE = "tiny"

WINDOW_ITEMS = ["motion", "expressions", "speaker", "audio_low", "audio_high", "audio"]
TEST_ITEMS = ["motion", "expressions", "joints", "betas", "audio", "audio_low", "audio_high", "speaker", "id"]
TINY_GENERATOR = dict(
    hidden_dim=32,
    hidden_heads=2,
    hidden_feedforward=64,
    encoder_width=32,
    encoder_blocks=1,
    face_decoder_layers=1,
    fusion_heads=2,
    fusion_feedforward=64,
    base_classifier_hidden=32,
    classifier_hidden=32,
    cascade_layers=1,
    cascade_heads=2,
    cascade_feedforward=64,
    mam_heads=2,
    mam_feedforward=64,
    mam_layers_per_block=1,
    sqa_layers=1,
    sqa_heads=2,
    sqa_feedforward=64,
    dropout=0.0,
)


def fitted_speech(checkpoint: Path) -> SpeechSettings:
    """The speech settings a checkpoint of `echomask fit` was trained with (its data module's)."""
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return SpeechSettings.of(saved["datamodule_hyper_parameters"]["speech"])


def one_step_trainer(root: Path, **overrides) -> pl.Trainer:
    """One training step, no validation, nothing written but under `root`."""
    return quiet_trainer(**{"max_steps": 1, "limit_val_batches": 0, "default_root_dir": root, **overrides})


@pytest.fixture(scope="module")
def workspace(synthetic_corpus, stage1_checkpoints, fgd_checkpoint, generator_fit) -> dict:
    """The corpus, the session's feature cache, stage-1 checkpoints and (untrained) FGD evaluator checkpoint."""
    return {
        "corpus": synthetic_corpus,
        "cache": generator_fit.cache,
        "stage1": stage1_checkpoints,
        "evaluator": fgd_checkpoint,
        "speech": fitted_speech(generator_fit.checkpoint),  # the tiny configs' (stage 1's code size)
    }


def make_datamodule(workspace: dict, **overrides) -> BEAT2DataModule:
    settings = dict(
        root=str(workspace["corpus"]),
        cache_dir=str(workspace["cache"]),
        items=WINDOW_ITEMS,
        test_items=TEST_ITEMS,
        batch_size=4,
        speech=workspace["speech"],
    )
    return BEAT2DataModule(**{**settings, **overrides})


def make_module(workspace: dict, tmp_path: Path, **overrides) -> GeneratorModule:
    settings = dict(
        generator=TINY_GENERATOR,
        stage1_checkpoints={name: str(path) for name, path in workspace["stage1"].items()},
        fgd_checkpoint=str(workspace["evaluator"]),
        output_dir=str(tmp_path / "test_output"),
        render_frames=0,
        speech=workspace["speech"],
    )
    return GeneratorModule(**{**settings, **overrides})


def window_batch(workspace: dict) -> dict:
    datamodule = make_datamodule(workspace)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return next(iter(datamodule.train_dataloader()))


# ----------------------------------------------------------------------------------------- the CLI


def test_echomask_fit_with_the_tiny_configs_leaves_a_loadable_checkpoint(generator_fit, workspace):
    """The session's `echomask fit` run (tests/conftest.py): its checkpoint records the speech settings as plain
    data (loadable with weights_only=True) and rebuilds the module."""
    saved = torch.load(generator_fit.checkpoint, map_location="cpu", weights_only=True)
    tiny_data = compose(generator_fit.options).datamodule  # the tiny configs and the session's files
    assert saved["hyper_parameters"]["speech"] == tiny_data.speech.as_dict() == workspace["speech"].as_dict()
    assert GeneratorModule.load_for_inference(generator_fit.checkpoint).speech == tiny_data.speech


# ----------------------------------------------------------------------------------------- training


def test_ema_moves_towards_the_live_weights_by_the_decay_rule(workspace, tmp_path):
    pl.seed_everything(0)
    decay = 0.9
    module = make_module(workspace, tmp_path, ema_decay=decay)
    live = module.generator
    before = {name: value.detach().clone() for name, value in module.ema.module.named_parameters()}
    assert all(torch.equal(before[name], value) for name, value in live.named_parameters())  # starts as a copy

    one_step_trainer(tmp_path).fit(module, datamodule=make_datamodule(workspace))

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


def test_the_release_objective_options_give_the_same_losses_and_gradients(workspace, tmp_path):
    """mam_once, batch_passes_bc and share_work off (the release's three separate passes) vs on (our default)."""
    batch = window_batch(workspace)
    results = {}
    for shared in (True, False):
        pl.seed_everything(0)
        module = make_module(workspace, tmp_path, mam_once=shared, batch_passes_bc=shared, share_work=shared)
        torch.manual_seed(7)  # the same mask draws in both runs
        result = module.compute_losses(batch, progress=0.5)
        result.loss.backward()
        gradients = {name: p.grad.clone() for name, p in module.generator.named_parameters() if p.grad is not None}
        results[shared] = (result, gradients)
    (joint, joint_gradients), (separate, separate_gradients) = results[True], results[False]
    assert torch.equal(joint.selection.mask, separate.selection.mask)
    torch.testing.assert_close(joint.loss, separate.loss, rtol=1e-5, atol=1e-6)
    assert joint.terms.keys() == separate.terms.keys() and {"B/loss", "C/loss"} <= joint.terms.keys()
    for name in joint.terms:
        torch.testing.assert_close(joint.terms[name], separate.terms[name], rtol=1e-5, atol=1e-6, msg=name)
    assert joint_gradients.keys() == separate_gradients.keys()
    for name, gradient in joint_gradients.items():
        torch.testing.assert_close(gradient, separate_gradients[name], rtol=1e-4, atol=1e-6, msg=name)
    # passes B and C really differ (C has the speech injection), so the test compares two different things
    assert not torch.equal(joint.terms["B/cross_entropy"], joint.terms["C/cross_entropy"])


@pytest.mark.parametrize("strategy", MASK_STRATEGIES)
def test_each_masking_strategy_runs_a_training_step(workspace, tmp_path, strategy):
    pl.seed_everything(0)
    module = make_module(workspace, tmp_path, masking=strategy)
    trainer = one_step_trainer(tmp_path)
    trainer.fit(module, datamodule=make_datamodule(workspace))
    logged = trainer.logged_metrics
    assert torch.isfinite(logged["train/loss_step"])
    assert ("train/B/loss_step" in logged) == (strategy != "none")
    assert ("train/C/loss_step" in logged) == (strategy != "none")
    assert "train/A/infonce_face_step" in logged and "train/A/accuracy_l0_step" in logged
    if strategy != "none":
        hard, soft = logged["train/mask/hard_frames_step"], logged["train/mask/soft_frames_step"]
        torch.testing.assert_close(hard + soft + logged["train/mask/uniform_frames_step"], torch.tensor(24.0))
        # progress 0 of the schedule: no hard frames; soft 0.2 of the 64-frame window = 13 frames (the release)
        assert hard == 0
        torch.testing.assert_close(soft, torch.tensor(0.0 if strategy == "random" else 13.0))


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
    trainer = one_step_trainer(tmp_path)
    trainer.fit(module, datamodule=datamodule)
    checkpoint = tmp_path / "generator.ckpt"
    trainer.save_checkpoint(checkpoint)
    shutil.rmtree(tmp_path / "stage1")

    loaded = GeneratorModule.load_for_inference(checkpoint)
    assert not loaded.training and not loaded.synthesizer.vqvaes["face"].training
    assert loaded.hparams.stage1_hparams["face"]["code_dim"] == workspace["speech"].feature_dim
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
    settings = {**workspace["speech"].as_dict(), "hubert_low_layer": 5}
    module = make_module(workspace, tmp_path, speech=settings)
    with pytest.raises(ValueError, match="speech.hubert_low_layer: model 5 vs data 11"):
        one_step_trainer(tmp_path).fit(module, datamodule=make_datamodule(workspace))


def test_generator_sizes_fixed_by_stage1_are_rejected(workspace, tmp_path):
    with pytest.raises(ValueError, match="latent_dim"):
        make_module(workspace, tmp_path, generator={**TINY_GENERATOR, "latent_dim": 32})


# ----------------------------------------------------------------------------------------- test loop


def test_test_loop_writes_one_readable_npz_per_sequence_and_prints_the_table(workspace, tmp_path, capsys):
    pl.seed_everything(0)
    module = make_module(workspace, tmp_path, test_videos=1)
    datamodule = make_datamodule(workspace)
    one_step_trainer(tmp_path).test(module, datamodule=datamodule)
    printed = capsys.readouterr().out

    output = Path(module.hparams.output_dir)
    sequences = datamodule.datasets["test"].sequences
    ids = sorted(sequence.id for sequence in sequences)
    assert sorted(path.name for path in output.glob("*.npz")) == sorted(
        [f"{seq_id}.npz" for seq_id in ids] + [f"{seq_id}_sqa.npz" for seq_id in ids]
    )
    for sequence in sequences:
        motion = read_motion(output / f"{sequence.id}.npz")
        assert motion["poses"].shape == (sequence.num_frames, 165) and motion["fps"] == 30
        assert np.isfinite(motion["poses"]).all()
        with np.load(output / f"{sequence.id}_sqa.npz") as sqa:  # the SQA scores the notebook plots
            assert sqa["scores"].shape == (sequence.num_frames,) and int(sqa["sample_rate"]) == 16000
    videos = list(output.glob("*.mp4"))  # test_videos=1: the first sequence, ground truth beside generated
    assert [path.name for path in videos] == [f"{sequences[0].id}.mp4"] and videos[0].stat().st_size > 10_000
    header = printed.splitlines()[0]
    for column in ("FGD", "BC", "L1div"):
        assert column in header
    assert f"FGD checkpoint: {workspace['evaluator']}" in printed and "protocol: paper" in printed
    report = json.loads((output / "metrics.json").read_text())
    assert report["num_sequences"] == len(sequences)
    assert {"fgd", "bc", "l1div", "face_mse"} <= report["metrics"].keys()
    assert all(np.isfinite(value) for value in report["metrics"].values())
    # the generator's codes against the ground truth's stage-1 codes, per part and layer
    tokens = report["sections"]["token_statistics"]
    assert set(tokens) == {"tokens", "face", "upper", "hands", "lower"}
    assert tokens["tokens"] == sum(sequence.num_frames // 4 for sequence in sequences)
    assert all(0 <= layer["accuracy"] <= 1 for part in PART_NAMES for layer in tokens[part].values())
    assert "stage-1 tokens, predicted vs ground truth" in printed
    # `echomask evaluate --pred <output_dir>` re-scores the written files to the same numbers
    rescored = evaluate_predictions(output, workspace["corpus"], fgd_checkpoint=workspace["evaluator"], progress=False)
    assert rescored["metrics"].keys() == report["metrics"].keys()
    for name, value in report["metrics"].items():
        assert value == pytest.approx(rescored["metrics"][name], rel=1e-4), name
    # one scorer: the same per-sequence values and report layout as `echomask evaluate`
    assert report.keys() == rescored.keys()
    for seq_id, values in report["per_sequence"].items():
        assert values["npz"] == str(output / f"{seq_id}.npz")
        for name in ("frames", "bc", "l1div", "face_mse"):
            assert values[name] == pytest.approx(rescored["per_sequence"][seq_id][name], rel=1e-4), (seq_id, name)


# ----------------------------------------------------------------------------------------- DDP (SPEC §7)


@pytest.mark.slow
@pytest.mark.ddp
def test_two_process_ddp_fit_and_test_on_cpu(workspace, tmp_path):
    pl.seed_everything(0)
    module = make_module(workspace, tmp_path, metrics_every_n_epochs=1)
    datamodule = make_datamodule(workspace)
    trainer = one_step_trainer(tmp_path, strategy="ddp_spawn", devices=2, max_steps=2, limit_val_batches=1)
    trainer.fit(module, datamodule=datamodule)
    assert int(module.ema.num_updates) == 2  # rank 0's weights come back to this process after ddp_spawn
    trainer.test(module, datamodule=datamodule)
    report = json.loads((Path(module.hparams.output_dir) / "metrics.json").read_text())
    # each rank generated its own sequence; the gathered report and the synced metrics cover both
    assert report["num_sequences"] == len(datamodule.cache.sequences(["test"])) == 2
    assert all("bc" in values for values in report["per_sequence"].values())
    assert all(np.isfinite(value) for value in report["metrics"].values())


# ----------------------------------------------------------------------------------------- the CLI per config, resume


def cli_fit(generator_fit, workdir: Path, *options: str) -> dict:
    """`echomask fit` with the session's tiny-config options (logs under `workdir`); the saved last.ckpt."""
    from echomask.cli import main

    arguments = [*generator_fit.options, "--trainer.logger.init_args.save_dir", str(workdir), *options]
    assert main(["fit", *arguments]) == 0
    return torch.load(workdir / "generator" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


@pytest.mark.e2e
def test_fast_dev_run_through_the_cli_with_the_paper_sizes(generator_fit, tmp_path):
    """experiments/generator.yaml without the demo overlay (the released network's sizes, batch 2) for one
    training and one validation step; stage 1 and the speech size stay the session's tiny ones."""
    from echomask.cli import main
    from echomask.stages import STAGES

    paper = STAGES["generator"].config_arguments("paper")
    tiny = STAGES["generator"].config_arguments(TINY_SIZE)
    session_options = generator_fit.options[len(tiny) :]
    speech = ["--data.speech", json.dumps(fitted_speech(generator_fit.checkpoint).as_dict())]
    arguments = [*paper, *session_options, *speech, "--data.batch_size", "2", "--trainer.fast_dev_run", "true"]
    workdir = ["--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.default_root_dir", str(tmp_path)]
    assert main(["fit", *arguments, *workdir]) == 0


def test_a_resumed_run_continues_exactly_like_an_uninterrupted_run(generator_fit, tmp_path, monkeypatch):
    """2 of 4 epochs, stop, resume to 4 == 4 epochs in one go: every parameter, the EMA copy and Adam's moments
    bit for bit (the masks draw random numbers; the schedule reads the same total length in both runs)."""
    options = (
        "--trainer.max_epochs", "4",
        "--trainer.limit_train_batches", "2",
        "--trainer.limit_val_batches", "0",
        "--trainer.num_sanity_val_steps", "0",
    )  # fmt: skip
    uninterrupted = cli_fit(generator_fit, tmp_path / "uninterrupted", *options)

    def stop_after_two_epochs(module):
        module.trainer.should_stop = module.current_epoch >= 1

    with monkeypatch.context() as patch:
        patch.setattr(GeneratorModule, "on_train_epoch_end", stop_after_two_epochs, raising=False)
        first_half = cli_fit(generator_fit, tmp_path / "first_half", *options)
    assert first_half["global_step"] == 4
    saved = tmp_path / "first_half" / "generator" / "checkpoints" / "last.ckpt"
    resumed = cli_fit(generator_fit, tmp_path / "resumed", *options, "--ckpt_path", str(saved))
    assert resumed["global_step"] == uninterrupted["global_step"] == 8
    for name, value in uninterrupted["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], value), name
    for index, moments in uninterrupted["optimizer_states"][0]["state"].items():
        for key, value in moments.items():
            assert torch.equal(resumed["optimizer_states"][0]["state"][index][key], value), (index, key)
    mask_embedding = "synthesizer.generator.mask_embedding"
    assert not torch.equal(first_half["state_dict"][mask_embedding], uninterrupted["state_dict"][mask_embedding])


# ----------------------------------------------------------------------------------------- the paper's ablation axes


@pytest.mark.parametrize("switch", [{"speech_injection": False}, {"mam_speech_levels": "low"}, {"mam_speech_levels": "high"}])
def test_network_ablation_switches_train_from_the_generator_dict(workspace, tmp_path, switch):
    pl.seed_everything(0)
    module = make_module(workspace, tmp_path, generator={**TINY_GENERATOR, **switch})
    assert module.generator.speech_injection == switch.get("speech_injection", True)
    assert module.generator.mam.speech_levels == switch.get("mam_speech_levels", "both")
    result = module.compute_losses(window_batch(workspace), progress=0.5)
    assert torch.isfinite(result.loss)
    without_injection = switch.get("speech_injection") is False  # pass C = pass B (dropout 0)
    assert torch.equal(result.terms["B/loss"], result.terms["C/loss"]) == without_injection


def test_a_single_quantizer_layer_stage1_gives_a_one_layer_generator(workspace, tmp_path):
    """The stage-1 option `single_layer` (experiments/vqvae/single_layer.yaml): one RVQ layer per part, so the
    generator predicts one code per token; it trains and generates."""
    from echomask.lit.stage1_loading import read_stage1

    architectures, _ = read_stage1({name: str(path) for name, path in workspace["stage1"].items()})
    for part in PART_NAMES:
        architectures[part] = {**architectures[part], "num_quantizers": 1}
    pl.seed_everything(0)
    module = make_module(workspace, tmp_path, stage1_hparams=architectures)
    assert module.generator.num_rvq_layers == 1
    datamodule = make_datamodule(workspace)
    trainer = one_step_trainer(tmp_path)
    trainer.fit(module, datamodule=datamodule)
    assert torch.isfinite(trainer.logged_metrics["train/loss_step"]) and "train/A/accuracy_l1_step" not in trainer.logged_metrics
    datamodule.setup("test")
    sequence = datamodule.test_dataloader().dataset[0]
    arrays, scores, _ = module.eval().generate_sequence(
        *(sequence[name] for name in ("motion", "expressions", "speaker", "audio_low", "audio_high"))
    )
    assert arrays["poses"].shape == (sequence["motion"].shape[0], 165) and np.isfinite(arrays["poses"]).all()
