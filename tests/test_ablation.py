"""The masking ablation script's pieces that do not train (bench/ablation_masking.py): argument parsing,
the length fitting of speech features, the shuffled-audio donors, the donor's ground truth as a perfect model's
control, the verdicts and spread over seeds; the `make ablation` recipe (dry run)."""
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import ablation_masking
from bench.ablation_masking import (
    bc_own_and_next_audio,
    fit_length,
    parse_arguments,
    speech_of,
    spread,
    verdicts,
    write_donor_ground_truth,
    write_stage1_round_trip,
)
from echomask.data.beat2 import BEAT2Corpus
from echomask.inference import START_XZ_COLUMNS
from echomask.scoring import SECTIONS_KEY
from echomask.stages import STAGE1_MODELS, stage

REPO = Path(__file__).resolve().parents[1]


def item(identifier: int, frames: int) -> dict:
    features = torch.full((frames, 3), float(identifier))
    return {
        "id": str(identifier),
        "motion": torch.zeros(frames, 337),
        "expressions": torch.full((frames, 100), float(identifier)),
        "betas": torch.zeros(300),
        "audio_low": features,
        "audio_high": -features,
    }


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


def test_the_donors_ground_truth_fills_each_place_fitted_to_its_length(tmp_path):
    items = [item(0, 6), item(1, 9), item(2, 4)]
    write_donor_ground_truth(items, tmp_path)
    for place, donor in zip(items, (1, 2, 0)):
        written = np.load(tmp_path / f"{place['id']}.npz")
        assert written["poses"].shape == (len(place["motion"]), 165)
        assert np.all(written["expressions"] == donor)


class FakeSynthesizer:
    """Stage 1 stand-in: records what it encodes and decodes every token to frames of expression 7."""

    frames_per_token = 4

    def __init__(self):
        self.encoded_frames, self.start_xz = [], []

    def encode_targets(self, motion, expressions):
        self.encoded_frames.append(motion.shape[1])
        tokens = motion.shape[1] // self.frames_per_token
        return {"upper": (torch.zeros(1, tokens, 2, dtype=torch.long), None)}

    def decode(self, indices, start_xz):
        self.start_xz.append(start_xz)
        frames = indices["upper"].shape[1] * self.frames_per_token
        return torch.zeros(1, frames, 337), torch.full((1, frames, 100), 7.0)


def test_the_stage1_round_trip_decodes_the_whole_tokens_and_keeps_the_rest(tmp_path):
    items = [item(1, 10), item(2, 8)]
    items[0]["motion"][0, START_XZ_COLUMNS] = torch.tensor([0.5, -0.25])
    synthesizer = FakeSynthesizer()
    write_stage1_round_trip(synthesizer, items, tmp_path)
    assert synthesizer.encoded_frames == [8, 8]  # whole tokens only
    assert torch.equal(synthesizer.start_xz[0], torch.tensor([[0.5, -0.25]]))  # translation starts at the GT's
    first = np.load(tmp_path / "1.npz")["expressions"]
    assert first.shape == (10, 100) and np.all(first[:8] == 7) and np.all(first[8:] == 1)
    assert np.all(np.load(tmp_path / "2.npz")["expressions"] == 7)


def test_arguments_defaults_and_stage1_overrides():
    options = parse_arguments(["--epochs", "5", "--stage1", "face=a.ckpt", "--stage1", "lower=b.ckpt"])
    assert options.epochs == 5 and options.seeds == [42]
    assert options.stage1 == ["face=a.ckpt", "lower=b.ckpt"]
    assert options.out == Path("outputs/ablation")
    assert parse_arguments(["--seeds", "1", "2", "3"]).seeds == [1, 2, 3]
    with pytest.raises(SystemExit):
        parse_arguments(["--seeds", "1", "1"])


def test_reuse_checkpoints_skips_only_the_runs_that_have_one(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(ablation_masking, "run_lightning_cli", lambda arguments: calls.append(arguments) or 0)
    existing = tmp_path / "seed7" / "random" / "checkpoints" / "last.ckpt"
    existing.parent.mkdir(parents=True)
    existing.touch()
    options = parse_arguments(["--out", str(tmp_path), "--reuse-checkpoints"])
    assert ablation_masking.train("random", 7, options) == (existing, None)
    assert calls == []
    path, seconds = ablation_masking.train("speech_queried", 7, options)
    assert path == tmp_path / "seed7" / "speech_queried" / "checkpoints" / "last.ckpt" and seconds >= 0
    assert "--seed_everything=7" in calls[0] and "--model.init_args.masking=speech_queried" in calls[0]
    assert calls[0][:5] == ["fit", *stage("generator").config_arguments("tiny")]
    options.reuse_checkpoints = False
    ablation_masking.train("random", 7, options)
    assert len(calls) == 2  # without the flag an existing checkpoint is trained again


def result(fgd: float, bc: float, bc_next: float = 0.6) -> dict:
    bc_audio = {"own": bc, "next": bc_next, "gap": bc - bc_next}
    return {"metrics": {"fgd": fgd, "bc": bc}, SECTIONS_KEY: {"bc_audio": bc_audio}}


def test_verdicts_count_the_seeds_where_a_method_beats_the_control_lower_fgd_higher_bc():
    runs = {
        1: {"model": result(0.20, 0.76), "control": result(0.21, 0.73)},  # beats on both
        2: {"model": result(0.22, 0.75), "control": result(0.21, 0.74)},  # BC only
        3: {"model": result(0.21, 0.74), "control": result(0.21, 0.74)},  # a tie is not a win
    }
    assert verdicts(runs, "model", "control") == {"fgd": 1, "bc": 2}
    assert verdicts(runs, "control", "model") == {"fgd": 1, "bc": 0}


def test_spread_gives_mean_min_and_max_over_seeds():
    runs = {1: {"model": result(0.2, 0.7, bc_next=0.7)}, 2: {"model": result(0.4, 0.8, bc_next=0.6)}}
    summary = spread(runs)
    assert summary["model"]["fgd"] == pytest.approx({"mean": 0.3, "min": 0.2, "max": 0.4})
    assert summary["model"]["bc"] == pytest.approx({"mean": 0.75, "min": 0.7, "max": 0.8})
    assert summary["model"]["bc_next_audio"] == pytest.approx({"mean": 0.65, "min": 0.6, "max": 0.7})
    assert summary["model"]["bc_gap"] == pytest.approx({"mean": 0.1, "min": 0.0, "max": 0.2})


def test_ground_truth_scores_higher_bc_with_its_own_audio_than_with_the_next_sequences(synthetic_corpus, tmp_path):
    own = bc_own_and_next_audio(None, str(synthetic_corpus))
    assert own["gap"] == pytest.approx(own["own"] - own["next"]) and own["gap"] > 0.02
    sequences = list(BEAT2Corpus(synthetic_corpus, splits=["test"]))
    for sequence, following in zip(sequences, sequences[1:] + sequences[:1]):
        shutil.copyfile(following.motion_path, tmp_path / f"{sequence.id}.npz")
    played_to_the_previous = bc_own_and_next_audio(tmp_path, str(synthetic_corpus))
    assert played_to_the_previous["gap"] < -0.02  # each motion scores higher with the audio it was made for


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_ablation_trains_stage1_on_the_larger_corpus_and_hands_every_checkpoint_to_the_script():
    dry_run = subprocess.run(["make", "-n", "ablation"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    corpus = "data/synthetic_ablation"
    assert f"synth-data --out {corpus} --sequences-per-speaker 40 --val-per-speaker 2 --test-per-speaker 4" in dry_run
    assert f"--data.root {corpus}" in dry_run and "--trainer.logger.init_args.save_dir logs/ablation/vqvae" in dry_run
    for name in STAGE1_MODELS:  # the tiny configs of the stage table; the rhythm-carrying parts train longer
        epochs = 40 if name in ("upper", "translation") else 10
        configs = " ".join(stage(name).config_arguments("tiny"))
        fit = f"fit {configs} --data.root {corpus} --trainer.max_epochs {epochs} "
        assert fit in dry_run, fit
        assert f"--stage1 {name}=logs/ablation/vqvae/{name}/checkpoints/last.ckpt" in dry_run
    assert f"bench/ablation_masking.py --data-root {corpus}" in dry_run and "--seeds 42 43 " in dry_run
