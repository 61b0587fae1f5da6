"""The masking ablation script's pieces that do not train (bench/ablation_masking.py): argument parsing,
the length fitting of speech features and the shuffled-audio donors; the `make ablation` recipe (dry run)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.ablation_masking import fit_length, parse_arguments, speech_of  # noqa: E402


def item(identifier: int, frames: int) -> dict:
    features = torch.full((frames, 3), float(identifier))
    return {"id": str(identifier), "motion": torch.zeros(frames, 337), "audio_low": features, "audio_high": -features}


def test_fit_length_crops_or_repeats_whole():
    features = torch.arange(10.0)[:, None]
    assert torch.equal(fit_length(features, 4), features[:4])
    longer = fit_length(features, 25)
    assert longer.shape == (25, 1)
    assert torch.equal(longer[:10], features) and torch.equal(longer[10:20], features)
    assert torch.equal(longer[20:], features[:5])


def test_speech_of_keeps_or_rotates_donors_and_fits_lengths():
    items = [item(0, 6), item(1, 9), item(2, 4)]
    own = speech_of(items, shuffled=False)
    assert [low[0, 0].item() for low, _ in own] == [0.0, 1.0, 2.0]
    shuffled = speech_of(items, shuffled=True)
    assert [low[0, 0].item() for low, _ in shuffled] == [1.0, 2.0, 0.0]  # every item gets another item's speech
    assert [low.shape[0] for low, _ in shuffled] == [6, 9, 4]  # ... fitted to its own motion length
    assert all(torch.equal(high, -low) for low, high in shuffled)
    with pytest.raises(ValueError, match="at least 2 test sequences"):
        speech_of(items[:1], shuffled=True)


def test_arguments_defaults_and_stage1_overrides():
    options = parse_arguments(["--epochs", "5", "--stage1", "face=a.ckpt", "--stage1", "lower=b.ckpt"])
    assert options.epochs == 5 and options.seed == 42
    assert options.stage1 == ["face=a.ckpt", "lower=b.ckpt"]
    assert options.out == Path("outputs/ablation")



@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_ablation_trains_stage1_on_the_larger_corpus_and_hands_every_checkpoint_to_the_script():
    dry_run = subprocess.run(["make", "-n", "ablation"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    corpus = "data/synthetic_ablation"
    assert f"synth-data --out {corpus} --sequences-per-speaker 40 --val-per-speaker 2 --test-per-speaker 4" in dry_run
    assert f"--data.root {corpus}" in dry_run and "--trainer.logger.init_args.save_dir logs/ablation/vqvae" in dry_run
    assert f"bench/ablation_masking.py --data-root {corpus}" in dry_run
    for name in ("face", "upper", "hands", "lower", "translation"):
        assert f"--stage1 {name}=logs/ablation/vqvae/{name}/checkpoints/last.ckpt" in dry_run
