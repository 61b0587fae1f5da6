"""`echomask import-official --generator`: the release's stage-2 file as one generator checkpoint (issue 15 item 3).

Release files are made by the golden folder's weight recipe (``../shared/golden/official``, skipped where absent):
the generator's live tensors plus its small dead ones (so that dropping dead keys is exercised without writing the
85 M dead parameters), and the five stage-1 files. The imported checkpoint must reproduce the release's inference
outputs (the golden README's tolerances) and drive `echomask generate` (tiny random HuBERT) unchanged.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import soundfile
import torch
from golden_generator import check_outputs, golden, golden_batch, release_sizes  # noqa: F401

from echomask.cli import main as echomask_main
from echomask.data.beat2 import MOTION_FPS, read_motion
from echomask.lit.generator_module import GeneratorModule
from echomask.official.generator_keys import is_dead_release_key
from echomask.official.recipe import RECIPE, recipe_state_dict
from echomask.official.stage1 import RELEASE_FILE_NAMES
from echomask.stages import STAGE1_MODELS

REPO = Path(__file__).resolve().parents[1]

SMALL_DEAD = 100_000  # dead tensors up to this many values go into the file (the large ones are left out)


def save_release_file(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """As the release writes it: {"model_state": ...}, names prefixed by the DataParallel wrapper."""
    torch.save({"model_state": {f"module.{key}": value for key, value in state.items()}, "epoch": 1}, path)
    return path


@pytest.fixture(scope="module")
def release_files(shared_dir, golden, tmp_path_factory) -> dict:  # noqa: F811
    folder = tmp_path_factory.mktemp("release")
    seed = golden["info"]["weight_seed"]
    sizes = {entry.key: math.prod(entry.shape) for entry in golden["entries"] if entry.source == RECIPE}
    state, _ = recipe_state_dict(
        golden["entries"], seed, keep=lambda key: not is_dead_release_key(key) or sizes[key] <= SMALL_DEAD
    )
    generator = save_release_file(folder / "best_echomask.bin", state)
    stage1 = folder / "pretrained_vq"
    stage1.mkdir()
    official = shared_dir / "golden" / "official"
    for name, file_name in RELEASE_FILE_NAMES.items():
        table = official / ("translation" if name == "translation" else f"stage1/{name}") / "state_dict.tsv"
        save_release_file(stage1 / file_name, recipe_state_dict(table, seed)[0])
    dead = [key for key in state if is_dead_release_key(key)]
    return {"generator": generator, "stage1": stage1, "dead": dead, "folder": folder}


def import_generator(files: dict, out: Path, *extra: str) -> int:
    return echomask_main([
        "import-official", "--generator", str(files["generator"]), "--stage1", str(files["stage1"]),
        "--out", str(out / "vqvae"), "--generator-out", str(out / "generator.ckpt"), "--hubert", "tiny-random", *extra,
    ])  # fmt: skip


@pytest.fixture(scope="module")
def imported(release_files, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("imported")
    assert import_generator(release_files, out) == 0
    return out / "generator.ckpt"


def test_the_imported_checkpoint_reproduces_the_release_inference(imported, release_files, golden, golden_batch):  # noqa: F811
    saved = torch.load(imported, map_location="cpu", weights_only=True)
    assert saved["imported_from"]["file"] == str(release_files["generator"].resolve())
    module = GeneratorModule.load_for_inference(imported)
    assert module.hparams.num_speakers == release_sizes(golden)["num_speakers"] and module.hparams.speech["hubert"] == "tiny-random"
    model = module.generator
    batch, seed_mask = golden_batch
    output = model.infer(batch.motion, seed_mask, batch.speaker, batch.speech_low, batch.speech_high)
    speech = model.mam.speech_features(batch.speech_low, batch.speech_high)
    check_outputs(golden, "inference", output, speech)
    for name, value in model.state_dict().items():  # the EMA copy starts as the imported weights
        assert torch.equal(module.ema.module.state_dict()[name], value), name


def test_dead_tensors_are_dropped_and_counted(release_files, tmp_path, capsys):
    assert release_files["dead"], "the file holds dead tensors"
    assert import_generator(release_files, tmp_path) == 0
    printed = capsys.readouterr().out
    assert "never reached by the release's forward passes or losses" in printed
    count = int(printed.split("generator: ")[1].split(" release tensors dropped")[0])
    assert count >= len(release_files["dead"])
    assert f"generator: {release_files['generator']} -> {tmp_path / 'generator.ckpt'}" in printed
    assert import_generator(release_files, tmp_path) != 0  # no --overwrite: nothing replaced
    assert "add --overwrite" in capsys.readouterr().err


def test_generate_runs_with_the_imported_checkpoint(imported, shared_dir, tmp_path):
    audio = shared_dir / "audio" / "speech_44k_stereo_mp3.wav"
    arguments = ["generate", "--audio", str(audio), "--ckpt", str(imported), "--out", str(tmp_path), "--no-video"]
    assert echomask_main(arguments) == 0
    motion = read_motion(tmp_path / f"{audio.stem}.npz")
    assert motion["poses"].shape == (int(soundfile.info(str(audio)).duration * MOTION_FPS), 165)
    assert (tmp_path / f"{audio.stem}_sqa.npz").is_file()


def test_echomask_test_runs_with_the_imported_checkpoint(imported, synthetic_corpus, fgd_checkpoint, tmp_path):
    """`echomask test --config experiments/generator.yaml --ckpt_path <imported>`: the paper config builds the network
    the checkpoint fills (the imported stage 1 and the tiny random HuBERT named on the command line)."""
    stage1 = {name: str(imported.parent / "vqvae" / name / "checkpoints" / "last.ckpt") for name in STAGE1_MODELS}
    output_dir = tmp_path / "test"
    arguments = [
        "test", "--config", str(REPO / "experiments" / "generator.yaml"),
        "--data.root", str(synthetic_corpus),
        "--data.cache_dir", str(tmp_path / "cache"),
        "--data.speech.hubert", "tiny-random",
        "--model.init_args.stage1_checkpoints", json.dumps(stage1),
        "--model.init_args.fgd_checkpoint", str(fgd_checkpoint),
        "--model.init_args.render_frames", "0",
        "--model.init_args.test_videos", "0",
        "--model.init_args.output_dir", str(output_dir),
        "--trainer.precision", "32-true",
        "--trainer.logger", "false",
        "--trainer.default_root_dir", str(tmp_path),  # where LightningCLI saves the config (not the working dir)
        "--trainer.enable_progress_bar", "false",
        "--ckpt_path", str(imported),
    ]  # fmt: skip
    assert echomask_main(arguments) == 0
    assert (tmp_path / "config.yaml").is_file()
    report = json.loads((output_dir / "metrics.json").read_text())
    sequences = sorted(path.stem for path in output_dir.glob("*.npz") if not path.stem.endswith("_sqa"))
    assert sequences and math.isfinite(report["metrics"]["fgd"]), report["metrics"]


def test_a_wrong_file_gives_one_line_naming_it(release_files, tmp_path, capsys):
    stage1_file = release_files["stage1"] / RELEASE_FILE_NAMES["face"]
    files = {**release_files, "generator": stage1_file}
    assert import_generator(files, tmp_path) != 0
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and str(stage1_file) in error and "not the release's generator" in error
