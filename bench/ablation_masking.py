"""The paper's masking claim in miniature (issue 5 item 5): speech-queried vs random masking on the synthetic corpus.

    .venv/bin/python bench/ablation_masking.py [--data-root data/synthetic] [--epochs N] [--out outputs/ablation]

Steps (run from the repository root: the configs name the stage-1 checkpoints relative to it):
1. train the tiny generator (experiments/generator.yaml + experiments/demo/generator.yaml) twice, with
   ``masking: speech_queried`` and ``masking: random``, same seed and budget, into ``<out>/<masking>/``;
2. generate the test split with each model, plus a shuffled-audio control: the speech-queried model driven by
   ANOTHER test sequence's speech features (cropped or repeated to the length), seeded with the ground truth's
   first 4 frames as the test loop does;
3. score the three and the ground truth with ``evaluate_predictions`` (paper protocol, the FGD evaluator),
   print one paper-style table and write ``<out>/ablation.json``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from einops import repeat

from echomask.cli import main as echomask_main
from echomask.data.datamodule import BEAT2DataModule
from echomask.evaluation import evaluate_predictions, table_row
from echomask.inference import motion_to_smplx, write_smplx_npz
from echomask.lit.generator_module import GeneratorModule
from echomask.metrics.display import format_table

CONFIGS = ("experiments/generator.yaml", "experiments/demo/generator.yaml")
MASKINGS = ("speech_queried", "random")
SHUFFLED = "shuffled_audio"  # the control: speech_queried model, another sequence's speech
FGD_CHECKPOINT = "logs/evaluator/checkpoints/last.ckpt"
PROTOCOL = "paper"  # SPEC §8.1


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default="data/synthetic", help="the corpus (default: data/synthetic)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the demo overlay's)")
    parser.add_argument("--out", type=Path, default=Path("outputs/ablation"), help="logs, predictions, results")
    parser.add_argument("--seed", type=int, default=42, help="seed_everything of both runs")
    parser.add_argument("--fgd-checkpoint", default=FGD_CHECKPOINT, help="the FGD feature extractor")
    parser.add_argument(
        "--stage1",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a stage-1 checkpoint instead of the config's (NAME: face, upper, hands, lower, translation); repeatable",
    )
    return parser.parse_args(argv)


def train(masking: str, options: argparse.Namespace) -> tuple[Path, float]:
    """Fit the tiny generator with one masking strategy; (its last.ckpt, training seconds)."""
    arguments = ["fit"]
    for config in CONFIGS:
        arguments += ["--config", config]
    arguments += [
        f"--seed_everything={options.seed}",
        f"--data.init_args.root={options.data_root}",
        f"--model.init_args.masking={masking}",
        f"--model.init_args.output_dir={options.out / masking / 'test'}",
        f"--trainer.logger.init_args.save_dir={options.out}",  # checkpoints: <out>/<masking>/checkpoints/
        f"--trainer.logger.init_args.name={masking}",
    ]
    for override in options.stage1:
        name, separator, path = override.partition("=")
        if not separator:
            raise ValueError(f"--stage1 takes NAME=PATH, got {override!r}")
        arguments.append(f"--model.init_args.stage1_checkpoints.{name}={path}")
    if options.epochs is not None:
        arguments.append(f"--trainer.max_epochs={options.epochs}")
    started = time.perf_counter()
    status = echomask_main(arguments)
    seconds = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"training with masking={masking} failed (exit status {status})")
    return options.out / masking / "checkpoints" / "last.ckpt", seconds


def test_items(module: GeneratorModule, data_root: str) -> list[dict]:
    """The whole test sequences, with the features the model was trained on."""
    settings = {name: module.hparams[name] for name in ("hubert", "hubert_low_layer", "hubert_high_layer")}
    datamodule = BEAT2DataModule(
        root=data_root,
        test_items=["motion", "expressions", "betas", "speaker", "audio_low", "audio_high", "id"],
        feature_dim=module.hparams.feature_dim,
        projection_seed=module.hparams.projection_seed,
        **settings,
    )
    datamodule.prepare_data()
    datamodule.setup("test")
    return [datamodule.datasets["test"][position] for position in range(len(datamodule.datasets["test"]))]


def fit_length(features: torch.Tensor, frames: int) -> torch.Tensor:
    """(T', F) features cropped, or repeated whole, to (frames, F)."""
    copies = -(-frames // len(features))
    return repeat(features, "t f -> (n t) f", n=copies)[:frames]


def speech_of(items: list[dict], shuffled: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(low, high) per item: its own, or (shuffled) those of the next item in the list, fitted to its length."""
    if shuffled and len(items) < 2:
        raise ValueError(f"the shuffled-audio control needs at least 2 test sequences, the split has {len(items)}")
    donors = items[1:] + items[:1] if shuffled else items
    return [
        (fit_length(donor["audio_low"], len(item["motion"])), fit_length(donor["audio_high"], len(item["motion"])))
        for item, donor in zip(items, donors)
    ]


@torch.no_grad()
def predict(module: GeneratorModule, items: list[dict], speech: list, pred_dir: Path) -> Path:
    """Generate every test sequence from the given speech features, seeded as the test loop; write <id>.npz."""
    seed = module.hparams.seed_frames
    for item, (low, high) in zip(items, speech):
        result = module.synthesizer.generate(
            low[None],
            high[None],
            item["speaker"][None],
            item["motion"][None, :seed],
            item["expressions"][None, :seed],
            temperature=module.hparams.temperature,
            top_k=module.hparams.top_k,
        )
        arrays = motion_to_smplx(result["motion"][0], result["expressions"][0], item["betas"])
        write_smplx_npz(pred_dir / f"{item['id']}.npz", arrays)
    return pred_dir


def score(pred_dir: Path | None, name: str, options: argparse.Namespace) -> dict:
    """`evaluate_predictions` of one folder (None: the ground truth), named for the table."""
    result = evaluate_predictions(
        pred_dir, options.data_root, fgd_checkpoint=options.fgd_checkpoint, protocol=PROTOCOL, progress=False
    )
    return {**result, "name": name}


def main(argv: list[str] | None = None) -> int:
    options = parse_arguments(argv)
    checkpoints, train_seconds = {}, {}
    for masking in MASKINGS:
        checkpoints[masking], train_seconds[masking] = train(masking, options)

    prediction_dirs = {}
    for masking in MASKINGS:
        module = GeneratorModule.load_for_inference(checkpoints[masking])
        items = test_items(module, options.data_root)
        prediction_dirs[masking] = predict(module, items, speech_of(items, False), options.out / masking / "pred")
        if masking == "speech_queried":
            control_dir = options.out / SHUFFLED / "pred"
            prediction_dirs[SHUFFLED] = predict(module, items, speech_of(items, True), control_dir)

    results = [score(None, "ground truth", options)]
    results += [score(pred_dir, name, options) for name, pred_dir in prediction_dirs.items()]
    print(format_table([table_row(result) for result in results]))
    for masking, seconds in train_seconds.items():
        print(f"train time {masking}: {seconds:.0f} s")
    summary = {"train_seconds": train_seconds, "seed": options.seed, "epochs": options.epochs, "results": results}
    path = options.out / "ablation.json"
    path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
