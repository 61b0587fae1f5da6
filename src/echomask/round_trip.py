"""`echomask round-trip`: do the stage-1 tokenizers carry the motion?

Whatever the generator predicts, the motion it shows is what the stage-1 RVQ-VAEs decode. This diagnostic takes
each whole test sequence (the ground truth), encodes every given part with its tokenizer (eval mode: argmin codes),
decodes the tokens again and compares the result with the ground truth with
:mod:`echomask.metrics.motion_statistics`: a tokenizer that carries the motion keeps each ratio (round trip / GT)
near 1, one that decodes a still pose drives it towards 0. Per part, the statistics that part owns:

=======  =================================
part     statistics
=======  =================================
face     ``jaw_speed``, ``expression_std``
upper    ``arms_speed``
hands    ``hands_speed``
lower    ``lower_speed``
=======  =================================

each with its **tracking**: the regression gain of the decoded part-stream features that statistic reads (the
rotation 6D of its joints, or the expression coefficients) on the ground truth's, both centred per sequence over time
and pooled over the sequences (sum of products over sum of squares). A ratio near 1 says the decoding moves as much as
the ground truth; only a tracking near 1 says it moves *with* it: a tokenizer that decodes noise of the right size has
a ratio near 1 and a tracking near 0, one that decodes the still mean has both near 0.

And, per RVQ layer, the usage of its codes over all test tokens (:func:`echomask.metrics.token_statistics.code_usage`:
distinct codes, perplexity, the most frequent code's share). A perplexity near 1 means nearly every token is the
same code: the tokens cannot tell one movement from another.

Only the given parts are replaced; the others keep the ground truth, and the translation stays the ground truth's
(the global-translation model is not part of this round trip). Frames after the last whole token are dropped.
"""
from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import torch

from echomask.metrics.display import aligned_columns
from echomask.metrics.motion_statistics import SPEED_JOINTS, aggregate_statistics, compare_motion
from echomask.metrics.token_statistics import code_usage
from echomask.models.conv_vqvae import RVQVAE
from echomask.motion.parts import (
    NUM_EXPRESSIONS,
    PART_JOINTS,
    PART_NAMES,
    ROT6D_DIM,
    parts_to_smplx,
    whole_body_to_parts,
)

# the motion statistics each part's tokenizer owns
PART_STATISTICS: dict[str, tuple[str, ...]] = {
    "face": ("jaw_speed", "expression_std"),
    "upper": ("arms_speed",),
    "hands": ("hands_speed",),
    "lower": ("lower_speed",),
}
TEST_ITEMS = ("motion", "expressions", "id")
TOKENIZER_SPEECH = {"hubert": "signal"}  # the stage-1 demo overlay's: its corpus cache is shared


def statistic_features(part: str, statistic: str) -> list[int]:
    """Indices of the features of `part`'s stream that `statistic` reads (the tracking's features)."""
    if statistic == "expression_std":
        return list(range(ROT6D_DIM, ROT6D_DIM + NUM_EXPRESSIONS))
    joints = PART_JOINTS[part]
    positions = [joints.index(joint) for joint in SPEED_JOINTS[statistic.removesuffix("_speed")]]
    return [ROT6D_DIM * position + offset for position in positions for offset in range(ROT6D_DIM)]


def _smplx_arrays(parts: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Part streams of one sequence (T, D_part) -> ``poses``, ``trans``, ``expressions`` as float64 numpy arrays."""
    smplx = parts_to_smplx({name: stream.to(torch.float64) for name, stream in parts.items()}, method="stable")
    return {key: smplx[key].numpy() for key in ("poses", "trans", "expressions")}


@torch.no_grad()
def round_trip(tokenizers: Mapping[str, RVQVAE], sequences: Iterable[Mapping[str, torch.Tensor]]) -> dict:
    """The round trip of the module docstring.

    Args:
        tokenizers: part -> its RVQ-VAE (any of face, upper, hands, lower); switched to eval mode.
        sequences: whole sequences with ``motion`` (T, 337), ``expressions`` (T, 100) and ``id``.

    Returns:
        ``{"motion": aggregate_statistics(...) of the compared sequences, "per_sequence": {id: compare_motion(...)},
        "tracking": {statistic: gain}, "codes": {part: {"layer_<l>": code_usage(...)}}, "codebook_size": {part: K}}``
        (a tracking is NaN where the ground truth's features do not move).
    """
    unknown = sorted(set(tokenizers) - set(PART_NAMES))
    if unknown or not tokenizers:
        raise ValueError(f"round_trip: tokenizers must be keyed by some of {PART_NAMES}, got {sorted(tokenizers)}")
    frames_per_token = {part: tokenizer.frames_per_token for part, tokenizer in tokenizers.items()}
    if len(set(frames_per_token.values())) != 1:
        raise ValueError(f"round_trip: the tokenizers disagree on frames per token: {frames_per_token}")
    step = next(iter(frames_per_token.values()))
    for tokenizer in tokenizers.values():
        tokenizer.eval()
    per_sequence: dict[str, dict] = {}
    indices: dict[str, list[torch.Tensor]] = {part: [] for part in tokenizers}
    products = {name: torch.zeros((), dtype=torch.float64) for part in tokenizers for name in PART_STATISTICS[part]}
    squares = dict(products)
    for sequence in sequences:
        frames = len(sequence["motion"]) // step * step
        if frames == 0:
            raise ValueError(f"round_trip: sequence {sequence['id']} is shorter than one token ({step} frames)")
        truth = whole_body_to_parts(sequence["motion"][:frames].float(), sequence["expressions"][:frames].float())
        decoded = dict(truth)
        for part, tokenizer in tokenizers.items():
            tokens = tokenizer.encode(truth[part][None])  # (1, N, L)
            decoded[part] = tokenizer.decode(tokens)[0]
            indices[part].append(tokens[0])
            for name in PART_STATISTICS[part]:
                features = statistic_features(part, name)
                truth_centred, decoded_centred = (
                    (stream[:, features] - stream[:, features].mean(dim=0)).to(torch.float64)
                    for stream in (truth[part], decoded[part])
                )
                products[name] = products[name] + (truth_centred * decoded_centred).sum()
                squares[name] = squares[name] + truth_centred.square().sum()
        per_sequence[str(sequence["id"])] = compare_motion(_smplx_arrays(truth), _smplx_arrays(decoded))
    if not per_sequence:
        raise ValueError("round_trip: no sequences")
    codes = {
        part: {f"layer_{number}": code_usage(layer.numpy()) for number, layer in enumerate(torch.cat(chunks).T)}
        for part, chunks in indices.items()
    }
    return {
        "motion": aggregate_statistics(per_sequence.values()),
        "per_sequence": per_sequence,
        "tracking": {
            name: float(products[name] / squares[name]) if squares[name] > 0 else math.nan for name in products
        },
        "codes": codes,
        "codebook_size": {part: tokenizer.quantizer.codebook_size for part, tokenizer in tokenizers.items()},
    }


def round_trip_table(report: Mapping) -> str:
    """Two tables of a :func:`round_trip` report: each part's motion statistics (GT, round trip, ratio, tracking) and
    each part's and layer's code usage."""
    motion = report["motion"]
    statistics = aligned_columns(
        ["part", "statistic", "GT", "round trip", "round trip / GT", "tracking"],
        [
            [
                part,
                name,
                *(f"{motion[f'{name}_{side}']:.4f}" for side in ("gt", "pred")),
                f"{motion[f'{name}_ratio']:.2f}",
                f"{report['tracking'][name]:.2f}",
            ]
            for part in report["codes"]
            for name in PART_STATISTICS[part]
        ],
    )
    codes = aligned_columns(
        ["part", "layer", "distinct codes", "perplexity", "mode share"],
        [
            [
                part,
                layer.removeprefix("layer_"),
                f"{usage['distinct']} of {report['codebook_size'][part]}",
                f"{usage['perplexity']:.1f}",
                f"{usage['mode_share']:.2f}",
            ]
            for part, layers in report["codes"].items()
            for layer, usage in layers.items()
        ],
    )
    return f"{statistics}\n\n{codes}"


def load_tokenizer(path: str | Path) -> tuple[str, RVQVAE]:
    """(part, RVQ-VAE) of a stage-1 checkpoint written by ``echomask fit`` or ``echomask import-official``."""
    from echomask.checkpoints import verify_checkpoint_file
    from echomask.lit.vqvae_module import VQVAEModule

    path = verify_checkpoint_file(path)
    module = VQVAEModule.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    return module.part, module.model


def test_sequences(data_root: str | Path, cache_dir: str | Path) -> list[dict]:
    """The whole test sequences of a corpus (motion, expressions, id), read through the corpus cache."""
    from echomask.data.datamodule import BEAT2DataModule

    datamodule = BEAT2DataModule(root=str(data_root), cache_dir=str(cache_dir), test_items=list(TEST_ITEMS),
                                 speech=TOKENIZER_SPEECH)
    datamodule.prepare_data()
    datamodule.setup("test")
    dataset = datamodule.datasets["test"]
    return [dataset[position] for position in range(len(dataset))]


def add_round_trip_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoints",
        nargs="*",
        help="stage-1 RVQ-VAE checkpoints (default: those of the stage table that exist)",
    )
    parser.add_argument("--data-root", default="data/synthetic", help="the corpus whose test split is round-tripped")
    parser.add_argument("--cache-dir", default="data/cache", help="the corpus cache (default: data/cache)")
    parser.add_argument("--json", default=None, help="also write the report to this JSON file")


def round_trip_command(options: argparse.Namespace) -> int:
    from echomask.stages import stage1_checkpoint

    paths = options.checkpoints or [
        stage1_checkpoint(part) for part in PART_NAMES if Path(stage1_checkpoint(part)).is_file()
    ]
    if not paths:
        raise FileNotFoundError(
            "no stage-1 checkpoints given and none at the stage table's paths; run `make train-vqvae`"
        )
    tokenizers: dict[str, RVQVAE] = {}
    for path in paths:
        part, tokenizer = load_tokenizer(path)
        if part in tokenizers:
            raise ValueError(f"{path}: a second checkpoint of the {part} tokenizer")
        tokenizers[part] = tokenizer
    report = round_trip(tokenizers, test_sequences(options.data_root, options.cache_dir))
    print(f"stage-1 round trip of the test split of {options.data_root} ({', '.join(map(str, paths))})")
    print(round_trip_table(report))
    if options.json:
        Path(options.json).parent.mkdir(parents=True, exist_ok=True)
        Path(options.json).write_text(json.dumps(report, indent=2))
    return 0
