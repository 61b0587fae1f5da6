"""Shared test fixtures; test modules take them from here and never import each other.

Markers (registered in setup.cfg): ``slow`` (not part of `make test`), ``ddp`` (several processes), ``e2e`` (an
`echomask` command or a notebook end to end on real outputs).

Every session checks that the tests leave no file in the repository (``working_tree_untouched``).

Session fixtures, built once because each costs seconds:

- ``shared_dir``: ../shared, the reference folder (the test is skipped where it is absent);
- ``synthetic_corpus`` and its ``test_sequences``;
- ``fgd_checkpoint``: a randomly initialised FGD evaluator checkpoint (what `make train-evaluator` writes);
- ``stage1_checkpoints``: the five stage-1 models of the tiny configs (the stage table's), one training step each;
- ``generator_fit``: ``echomask fit`` of the tiny generator configs for one step on them, with a feature cache;
- ``pipeline_outputs``: an ``outputs/`` folder as `make demo` leaves it: ``echomask test`` of that generator
  (``generator/test/``) and ``echomask generate`` with it (``demo/``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TINY = "tiny"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.exists():
        pytest.skip("../shared is not present (a user's clone has none)")
    return SHARED


def working_tree_changes() -> set[str] | None:
    """`git status --porcelain` entries of the repository (None where it is not a git checkout)."""
    import subprocess

    try:
        listed = subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, check=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return set(listed.stdout.splitlines())


@pytest.fixture(scope="session", autouse=True)
def working_tree_untouched():
    """No test may leave a file in the repository outside the ignored folders (e.g. a config.yaml that
    LightningCLI saves into the working directory when a run has no log folder)."""
    before = working_tree_changes()
    yield
    after = working_tree_changes()
    if before is not None and after is not None:
        assert after <= before, f"the tests left files in the repository: {sorted(after - before)}"


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Small tensor ops are far faster with one thread on the 2-core test machines."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------------ data


@pytest.fixture(scope="session")
def synthetic_corpus(tmp_path_factory) -> Path:
    """A small synthetic BEAT2-format corpus (2 speakers × 3 sequences × 6 s), made once per test session."""
    from echomask.data.synthetic import write_synthetic_corpus

    return write_synthetic_corpus(
        tmp_path_factory.mktemp("synthetic"), num_speakers=2, sequences_per_speaker=3, seconds_per_sequence=6, seed=3
    )


@pytest.fixture(scope="session")
def test_sequences(synthetic_corpus) -> list:
    """The test split of the synthetic corpus (`echomask.data.beat2.Sequence`s)."""
    from echomask.data.beat2 import BEAT2Corpus

    return list(BEAT2Corpus(synthetic_corpus, splits=["test"]))


@pytest.fixture(scope="session")
def speech_wav():
    """`speech_wav(path, seconds)`: write a speech-like stereo wav at 44.1 kHz (voiced syllables about 4 per
    second: harmonics of a wandering pitch under an envelope, plus noise) and return its path."""
    import soundfile

    def write(path: Path, seconds: float, sample_rate: int = 44100, seed: int = 0) -> Path:
        rng = np.random.default_rng(seed)
        time = np.arange(round(seconds * sample_rate)) / sample_rate
        pitch = 160 + 40 * np.sin(2 * np.pi * 0.7 * time)  # Hz, a speaking voice's range
        phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
        voice = sum(np.sin(k * phase) / k for k in range(1, 8))
        envelope = np.clip(np.sin(2 * np.pi * 4.0 * time), 0, None)
        mono = 0.2 * envelope * voice + 0.01 * rng.standard_normal(len(time))
        stereo = np.stack([mono, 0.8 * mono], axis=1)
        soundfile.write(path, stereo.astype(np.float32), sample_rate, subtype="PCM_16")
        return path

    return write


# ------------------------------------------------------------------------------------------------ models


@pytest.fixture(scope="session")
def fgd_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised evaluator, saved as a Lightning checkpoint (`state_dict` with `model.` names)."""
    import torch

    from echomask.lit.evaluator_module import EvaluatorModule

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("evaluator") / "last.ckpt"
    torch.save({"state_dict": EvaluatorModule().state_dict()}, path)
    return path


@pytest.fixture(scope="session")
def stage1_checkpoints(synthetic_corpus, tmp_path_factory) -> dict[str, Path]:
    """name -> checkpoint of the five stage-1 models of the tiny configs, one training step each on the corpus."""
    import lightning.pytorch as pl

    from echomask.lightning_cli import compose
    from echomask.lit.quiet_trainer import quiet_trainer
    from echomask.stages import STAGE1_MODELS, stage

    folder = tmp_path_factory.mktemp("stage1")
    checkpoints = {}
    for name in STAGE1_MODELS:
        data = ["--data.root", str(synthetic_corpus), "--data.cache_dir", str(folder / "cache")]
        cli = compose(stage(name).config_arguments(TINY), *data, "--data.batch_size", "8")
        pl.seed_everything(0, verbose=False)
        trainer = quiet_trainer(max_steps=1, limit_val_batches=0)
        trainer.fit(cli.model, datamodule=cli.datamodule)
        checkpoints[name] = folder / name / "last.ckpt"
        trainer.save_checkpoint(checkpoints[name])
    return checkpoints


@dataclass(frozen=True)
class GeneratorRun:
    """What `generator_fit` leaves: the checkpoint, the feature cache, and the `echomask` options (stage table
    configs, corpus, stage 1, FGD extractor, logs) that `fit` and `test` shared."""

    checkpoint: Path
    cache: Path
    options: list[str]


@pytest.fixture(scope="session")
def generator_fit(synthetic_corpus, stage1_checkpoints, fgd_checkpoint, tmp_path_factory) -> GeneratorRun:
    """`echomask fit` of the tiny generator configs for one step (batches of 4) on the synthetic corpus."""
    from echomask.cli import main
    from echomask.stages import STAGES

    folder = tmp_path_factory.mktemp("generator")
    stage1 = json.dumps({name: str(path) for name, path in stage1_checkpoints.items()})
    options = [
        *STAGES["generator"].config_arguments(TINY),
        "--data.root", str(synthetic_corpus),
        "--data.cache_dir", str(folder / "cache"),
        "--data.batch_size", "4",
        "--model.init_args.stage1_checkpoints", stage1,
        "--model.init_args.fgd_checkpoint", str(fgd_checkpoint),
        "--model.init_args.render_frames", "0",
        "--trainer.logger.init_args.save_dir", str(folder / "logs"),
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
    ]  # fmt: skip
    fit_only = ["--trainer.max_steps", "1", "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0"]
    assert main(["fit", *options, *fit_only]) == 0
    checkpoint = folder / "logs" / "generator" / "checkpoints" / "last.ckpt"
    assert checkpoint.is_file(), f"`echomask fit` left no {checkpoint}"
    return GeneratorRun(checkpoint=checkpoint, cache=folder / "cache", options=options)


@pytest.fixture(scope="session")
def pipeline_outputs(generator_fit, speech_wav, tmp_path_factory) -> Path:
    """`outputs/` as `make demo` leaves it: `generator/test/` from `echomask test` (metrics.json, <id>.npz,
    <id>_sqa.npz) and `demo/` from `echomask generate` on a 3 s speech-like wav (talk.npz, talk_sqa.npz, talk.mp4)."""
    from echomask.cli import main

    outputs = tmp_path_factory.mktemp("pipeline") / "outputs"
    test_run = ["--model.init_args.output_dir", str(outputs / "generator" / "test")]
    assert main(["test", *generator_fit.options, *test_run, "--ckpt_path", str(generator_fit.checkpoint)]) == 0
    audio = speech_wav(outputs.parent / "talk.wav", seconds=3.0)
    assert main(["generate", "--audio", str(audio), "--ckpt", str(generator_fit.checkpoint), "--out",
                 str(outputs / "demo")]) == 0  # fmt: skip
    return outputs
