"""Token statistics (echomask.metrics.token_statistics): accuracy and code usage of predicted vs ground-truth
stage-1 tokens, on constructed cases with known values, and the report section the generator's test writes."""
import math

import numpy as np
import pytest
import torch

from echomask.metrics.token_statistics import aggregate_tokens, code_usage, compare_tokens, token_table
from echomask.motion.kinematics import build_kinematics
from echomask.scoring import SECTIONS_KEY, MotionScorer, Provenance, TokenStatisticsSection, format_report


def random_motion(frames: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    poses = 0.1 * torch.randn(frames, 165, generator=generator)
    return {"poses": poses, "trans": torch.zeros(frames, 3), "expressions": torch.zeros(frames, 100)}


def test_code_usage_of_known_histograms():
    assert code_usage(np.array([0, 0, 1, 1])) == {"distinct": 2, "perplexity": pytest.approx(2.0), "mode_share": 0.5}
    assert code_usage(np.array([3, 3, 3])) == {"distinct": 1, "perplexity": pytest.approx(1.0), "mode_share": 1.0}
    uniform = code_usage(np.arange(64).repeat(3))
    assert uniform["distinct"] == 64 and uniform["perplexity"] == pytest.approx(64.0)
    skewed = code_usage(np.array([0] * 6 + [1, 2]))  # shares 3/4, 1/8, 1/8
    entropy = -(0.75 * math.log(0.75) + 2 * 0.125 * math.log(0.125))
    assert skewed["perplexity"] == pytest.approx(math.exp(entropy)) and skewed["mode_share"] == 0.75
    with pytest.raises(ValueError, match="non-empty"):
        code_usage(np.zeros((2, 2), dtype=int))


def test_a_predictor_collapsed_to_the_mode():
    """Ground truth cycles through 8 codes on layer 0 and 4 on layer 1; the prediction repeats code 0: accuracy
    is code 0's share, perplexity 1 against 8 and 4."""
    truth = np.stack([np.arange(32) % 8, np.arange(32) % 4])
    predicted = np.zeros_like(truth)
    result = compare_tokens({"upper": truth}, {"upper": predicted})
    assert result["tokens"] == 32
    layer0, layer1 = result["upper"]["layer_0"], result["upper"]["layer_1"]
    assert layer0["accuracy"] == pytest.approx(1 / 8) and layer1["accuracy"] == pytest.approx(1 / 4)
    assert (layer0["distinct_gt"], layer0["distinct_pred"]) == (8, 1)
    assert layer0["perplexity_gt"] == pytest.approx(8.0) and layer0["perplexity_pred"] == pytest.approx(1.0)
    assert (layer0["mode_share_gt"], layer0["mode_share_pred"]) == (pytest.approx(1 / 8), 1.0)


def test_aggregation_weights_by_tokens():
    short = compare_tokens({"face": np.zeros((1, 10), dtype=int)}, {"face": np.zeros((1, 10), dtype=int)})
    long = compare_tokens({"face": np.zeros((1, 30), dtype=int)}, {"face": np.ones((1, 30), dtype=int)})
    pooled = aggregate_tokens([short, long])
    assert pooled["tokens"] == 40 and pooled["face"]["layer_0"]["accuracy"] == pytest.approx(10 / 40)
    assert "accuracy" in token_table(pooled) and "face" in token_table(pooled)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="parts differ"):
        compare_tokens({"face": np.zeros((1, 4))}, {"hands": np.zeros((1, 4))})
    with pytest.raises(ValueError, match="hands: need two"):
        compare_tokens({"hands": np.zeros((2, 4))}, {"hands": np.zeros((2, 5))})
    with pytest.raises(ValueError, match="no sequences"):
        aggregate_tokens([])


def test_the_report_section_and_its_printout():
    scorer = MotionScorer(
        build_kinematics(), np.ones(55), "given", fgd_checkpoint=None, statistics=[TokenStatisticsSection()]
    )
    samples = np.arange(16000 * 8)
    audio = np.sin(samples / 16000 * 2 * np.pi * 220) * (samples % 8000 < 2000)  # a beep every half second
    truth = np.stack([np.arange(60) % 6])
    scorer.add("a", random_motion(240, 0), random_motion(240, 1), audio, tokens={"lower": (truth, truth)})
    scorer.add("b", random_motion(240, 0), random_motion(240, 1), audio, tokens={"lower": (truth, np.zeros_like(truth))})
    report = scorer.report("toy", Provenance("corpus", "test", None, "pred", "none"), seconds=0.0)
    section = report[SECTIONS_KEY]["token_statistics"]
    assert section["lower"]["layer_0"]["accuracy"] == pytest.approx((1 + 1 / 6) / 2)
    assert report["per_sequence"]["b"]["token_statistics"]["lower"]["layer_0"]["perplexity_pred"] == pytest.approx(1)
    assert "stage-1 tokens, predicted vs ground truth (120 per part and layer)" in format_report(report)
    with pytest.raises(ValueError, match="sequence c: token statistics need"):
        scorer.add("c", random_motion(240, 0), random_motion(240, 1), audio)
