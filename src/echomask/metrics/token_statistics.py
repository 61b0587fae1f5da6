"""Token statistics: does the generator predict the stage-1 tokens, and does it use the codebooks as the data does?

The generator predicts, per body part and RVQ layer, one code index per token (4 frames). When its motion is
still, either it predicts few distinct codes (argmax collapsing to the most frequent one) or the tokenizer itself
decodes still motion; these numbers tell the first case apart (the tokenizer's round trip is a motion-statistics
row of its own).

Per part and layer, of one sequence (:func:`compare_tokens`), under these names:

======================  ====================================================================================
name                    what
======================  ====================================================================================
``accuracy``            share of tokens whose predicted index equals the ground truth's (ground truth: the
                        ground-truth motion encoded by the stage-1 tokenizer)
``distinct_gt/_pred``   number of different codes used
``perplexity_gt/_pred`` exp(entropy) of the code histogram: the number of equally used codes with the same
                        entropy (1: one code only; the codebook size: every code equally often)
``mode_share_gt/_pred`` share of tokens taken by the most frequent code
======================  ====================================================================================

:func:`aggregate_tokens` pools sequences: every value is the token-weighted mean of the sequences' values.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from echomask.metrics.display import aligned_columns

TOKEN_STATISTICS = ("accuracy", "distinct_gt", "distinct_pred", "perplexity_gt", "perplexity_pred",
                    "mode_share_gt", "mode_share_pred")


def code_usage(indices: np.ndarray) -> dict[str, float]:
    """Distinct codes, perplexity and the most frequent code's share of a (N,) array of code indices."""
    indices = np.asarray(indices)
    if indices.ndim != 1 or indices.size == 0:
        raise ValueError(f"code_usage: need a non-empty (N,) array of indices, got shape {indices.shape}")
    _, counts = np.unique(indices, return_counts=True)
    shares = counts / counts.sum()
    return {
        "distinct": int(len(counts)),
        "perplexity": float(np.exp(-(shares * np.log(shares)).sum())),
        "mode_share": float(shares.max()),
    }


def compare_tokens(ground_truth: Mapping[str, np.ndarray], predicted: Mapping[str, np.ndarray]) -> dict:
    """Per part and layer, the statistics of the module docstring for one sequence.

    Args:
        ground_truth, predicted: part -> (L, N) code indices (L RVQ layers, N tokens); the same parts and shapes.
    Returns:
        ``{"tokens": N, part: {"layer_<l>": {name: value}}}``.
    """
    if set(ground_truth) != set(predicted):
        raise ValueError(f"compare_tokens: parts differ: {sorted(ground_truth)} vs {sorted(predicted)}")
    result: dict = {}
    for part in ground_truth:
        gt, pred = np.asarray(ground_truth[part]), np.asarray(predicted[part])
        if gt.shape != pred.shape or gt.ndim != 2:
            raise ValueError(f"compare_tokens: {part}: need two (L, N) arrays of one shape, got {gt.shape}, {pred.shape}")
        result["tokens"] = int(gt.shape[1])
        result[part] = {}
        for layer, (gt_layer, pred_layer) in enumerate(zip(gt, pred)):
            usage_gt, usage_pred = code_usage(gt_layer), code_usage(pred_layer)
            result[part][f"layer_{layer}"] = {
                "accuracy": float((gt_layer == pred_layer).mean()),
                **{f"{name}_gt": value for name, value in usage_gt.items()},
                **{f"{name}_pred": value for name, value in usage_pred.items()},
            }
    return result


def aggregate_tokens(per_sequence: Iterable[Mapping]) -> dict:
    """The token-weighted mean of each part's and layer's values over sequences (:func:`compare_tokens` each)."""
    sequences = list(per_sequence)
    if not sequences:
        raise ValueError("aggregate_tokens: no sequences")
    weights = np.array([sequence["tokens"] for sequence in sequences], dtype=np.float64)
    pooled: dict = {"tokens": int(weights.sum())}
    for part in (key for key in sequences[0] if key != "tokens"):
        pooled[part] = {}
        for layer in sequences[0][part]:
            pooled[part][layer] = {
                name: float(np.average([s[part][layer][name] for s in sequences], weights=weights))
                for name in TOKEN_STATISTICS
            }
    return pooled


def token_table(statistics: Mapping, digits: int = 3) -> str:
    """One row per part and layer: accuracy, and distinct codes, perplexity and mode share as GT / predicted."""
    header = ["part", "layer", "accuracy", "distinct GT / pred", "perplexity GT / pred", "mode share GT / pred"]
    body = []
    for part, layers in ((key, value) for key, value in statistics.items() if key != "tokens"):
        for layer, values in layers.items():
            body.append(
                [
                    part,
                    layer.removeprefix("layer_"),
                    f"{values['accuracy']:.{digits}f}",
                    f"{values['distinct_gt']:.1f} / {values['distinct_pred']:.1f}",
                    f"{values['perplexity_gt']:.1f} / {values['perplexity_pred']:.1f}",
                    f"{values['mode_share_gt']:.{digits}f} / {values['mode_share_pred']:.{digits}f}",
                ]
            )
    return aligned_columns(header, body)
