"""The paper's masking claim in miniature (issue 5 item 5): speech-queried vs random masking on the synthetic corpus.

    .venv/bin/python bench/ablation_masking.py [--data-root data/synthetic] [--epochs N] [--seeds 42 43 44]
                                               [--out outputs/ablation]

Steps (run from the repository root: the configs name the stage-1 checkpoints relative to it):
1. for every seed, train the tiny generator (the stage table's generator configs at the tiny size) twice,
   with ``masking: speech_queried`` and ``masking: random``, same seed and budget, into
   ``<out>/seed<seed>/<masking>/``; the generator is the released network and its mask the release's (hard and
   soft groups as fractions of the whole 64-frame window: about 13 score-driven frames of the 24 masked, issue 15
   U3); the paper's other ablation axes are switches of the configs (README "Stage 2");
2. generate the test split with each model (``GeneratorModule.generate_sequence``, as the test loop does), plus a
   shuffled-audio control: the speech-queried model driven by ANOTHER test sequence's speech features (cropped or
   repeated to the length), seeded with the ground truth's first 4 frames;
3. score them with ``evaluate_predictions`` (paper protocol, the FGD evaluator; each folder's report is written as
   its ``metrics.json``, which the notebook reads), next to the ground truth, the
   ground truth of the donor sequence scored in each sequence's place (what a perfect speech-driven model
   would produce from the control's audio: it calibrates what the control can show on each metric) and the
   ground truth through stage 1 (its tokens decoded: what a perfect token predictor would produce); each
   row also gets BC of the same motion with the next test sequence's audio (report section ``bc_audio``);
4. print one paper-style table per seed and the spread over seeds, and write ``<out>/ablation.json``
   (rewritten after every seed).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from einops import repeat

from echomask.data.beat2 import BEAT2Corpus, read_audio_checked, read_motion, resolve_corpus_root
from echomask.data.datamodule import BEAT2DataModule
from echomask.evaluation import evaluate_predictions, train_split_joint_mean_speed
from echomask.inference import START_XZ_COLUMNS, MotionSynthesizer, motion_to_smplx, write_smplx_npz
from echomask.lightning_cli import run_lightning_cli
from echomask.lit.generator_module import TEST_ITEMS, GeneratorModule
from echomask.metrics import BeatConsistency
from echomask.metrics.display import format_table
from echomask.motion.kinematics import build_kinematics
from echomask.scoring import SECTIONS_KEY, resolve_joint_mean_speed, table_row, write_report
from echomask.stages import STAGES

GENERATOR = STAGES["generator"]
SIZE = "tiny"  # the demo budget
MASKINGS = ("speech_queried", "random")
SHUFFLED = "shuffled_audio"  # the control: speech_queried model, another sequence's speech
GROUND_TRUTH = "ground truth"
GROUND_TRUTH_SHUFFLED = "ground truth, another file's audio"  # the donor's motion in each sequence's place
STAGE1_ROUND_TRIP = "ground truth through stage 1"  # its tokens decoded: a perfect token predictor's motion
COMPARED = ("fgd", "bc")  # the bar: the generator beats the control on both
LOWER_IS_BETTER = {"fgd": True, "bc": False}
FGD_CHECKPOINT = STAGES["evaluator"].checkpoint
PROTOCOL = "paper"  # SPEC §8.1


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default="data/synthetic", help="the corpus (default: data/synthetic)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the demo overlay's)")
    parser.add_argument("--out", type=Path, default=Path("outputs/ablation"), help="logs, predictions, results")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[42], help="seed_everything of the runs; both maskings per seed"
    )
    parser.add_argument("--fgd-checkpoint", default=FGD_CHECKPOINT, help="the FGD feature extractor")
    parser.add_argument(
        "--reuse-checkpoints",
        action="store_true",
        help="skip the training of a run whose <out>/seed<seed>/<masking>/checkpoints/last.ckpt exists (rescore it)",
    )
    parser.add_argument(
        "--stage1",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a stage-1 checkpoint instead of the config's (NAME: face, upper, hands, lower, translation); repeatable",
    )
    options = parser.parse_args(argv)
    if len(set(options.seeds)) != len(options.seeds):
        parser.error(f"--seeds must be distinct, got {options.seeds}")
    return options


def train(masking: str, seed: int, options: argparse.Namespace) -> tuple[Path, float | None]:
    """Fit the tiny generator with one masking strategy and seed; (its last.ckpt, training seconds: None where
    ``--reuse-checkpoints`` found the checkpoint)."""
    run_dir = options.out / f"seed{seed}"
    checkpoint = run_dir / masking / "checkpoints" / "last.ckpt"
    if options.reuse_checkpoints and checkpoint.is_file():
        print(f"reusing {checkpoint} (not trained again)")
        return checkpoint, None
    arguments = [
        "fit",
        *GENERATOR.config_arguments(SIZE),
        f"--seed_everything={seed}",
        f"--data.init_args.root={options.data_root}",
        f"--model.init_args.masking={masking}",
        f"--model.init_args.output_dir={run_dir / masking / 'test'}",
        f"--trainer.logger.init_args.save_dir={run_dir}",  # checkpoints: <out>/seed<seed>/<masking>/checkpoints/
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
    run_lightning_cli(arguments)
    return checkpoint, time.perf_counter() - started


def test_items(module: GeneratorModule, data_root: str) -> list[dict]:
    """The whole test sequences, with the features the model was trained on."""
    datamodule = BEAT2DataModule(root=data_root, test_items=[*TEST_ITEMS, "betas"], speech=module.speech)
    datamodule.prepare_data()
    datamodule.setup("test")
    return [datamodule.datasets["test"][position] for position in range(len(datamodule.datasets["test"]))]


def fit_length(features: torch.Tensor, frames: int) -> torch.Tensor:
    """(T', F) features cropped, or repeated whole, to (frames, F)."""
    copies = -(-frames // len(features))
    return repeat(features, "t f -> (n t) f", n=copies)[:frames]


def donors_of(items: list, shuffled: bool) -> list:
    """The item whose speech drives each item: itself, or (shuffled) the next item in the list."""
    if shuffled and len(items) < 2:
        raise ValueError(f"the shuffled-audio control needs at least 2 test sequences, the split has {len(items)}")
    return items[1:] + items[:1] if shuffled else items


def speech_of(items: list[dict], shuffled: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(low, high) per item: its own, or (shuffled) those of its donor, fitted to its length."""
    return [
        (fit_length(donor["audio_low"], len(item["motion"])), fit_length(donor["audio_high"], len(item["motion"])))
        for item, donor in zip(items, donors_of(items, shuffled))
    ]


def write_donor_ground_truth(items: list[dict], pred_dir: Path) -> Path:
    """Each item's place filled with its donor's ground-truth motion (fitted to the item's length): the motion
    of the control's audio, as a perfect speech-driven model would generate it. Writes <id>.npz."""
    for item, donor in zip(items, donors_of(items, shuffled=True)):
        frames = len(item["motion"])
        motion, expressions = fit_length(donor["motion"], frames), fit_length(donor["expressions"], frames)
        write_smplx_npz(pred_dir / f"{item['id']}.npz", motion_to_smplx(motion, expressions, item["betas"]))
    return pred_dir


@torch.no_grad()
def write_stage1_round_trip(synthesizer: MotionSynthesizer, items: list[dict], pred_dir: Path) -> Path:
    """Each sequence's ground truth encoded to stage-1 tokens and decoded again (translation from the stage-1
    translation model, started at the ground truth's first x/z), as the generator's motion is: what predicting
    every token right would give. Frames after the last whole token keep the ground truth. Writes <id>.npz."""
    frames_per_token = synthesizer.frames_per_token
    for item in items:
        tokenized = len(item["motion"]) // frames_per_token * frames_per_token
        motion, expressions = item["motion"][None, :tokenized], item["expressions"][None, :tokenized]
        indices = {part: target[0] for part, target in synthesizer.encode_targets(motion, expressions).items()}
        decoded, decoded_expressions = synthesizer.decode(indices, motion[:, 0, START_XZ_COLUMNS])
        motion = torch.cat([decoded[0], item["motion"][tokenized:]])
        expressions = torch.cat([decoded_expressions[0], item["expressions"][tokenized:]])
        write_smplx_npz(pred_dir / f"{item['id']}.npz", motion_to_smplx(motion, expressions, item["betas"]))
    return pred_dir


def predict(module: GeneratorModule, items: list[dict], speech: list, pred_dir: Path) -> Path:
    """Generate every test sequence from the given speech features, seeded as the test loop; write <id>.npz."""
    for item, (low, high) in zip(items, speech):
        arrays, _, _ = module.generate_sequence(
            item["motion"], item["expressions"], item["speaker"], low, high, betas=item["betas"]
        )
        write_smplx_npz(pred_dir / f"{item['id']}.npz", arrays)
    return pred_dir


def score(pred_dir: Path | None, name: str, options: argparse.Namespace) -> dict:
    """`evaluate_predictions` of one folder (None: the ground truth), named for the table, with BC against its
    own and the next sequence's audio as the report section ``bc_audio``; the report is written as
    ``<pred_dir>/metrics.json`` (the ground truth's: ``<out>/ground_truth/metrics.json``)."""
    result = evaluate_predictions(
        pred_dir, options.data_root, fgd_checkpoint=options.fgd_checkpoint, protocol=PROTOCOL, progress=False
    )
    result["name"] = name
    result[SECTIONS_KEY]["bc_audio"] = bc_own_and_next_audio(pred_dir, options.data_root)
    write_report(result, (options.out / "ground_truth" if pred_dir is None else pred_dir) / "metrics.json")
    return result


def score_references(synthesizer: MotionSynthesizer, items: list[dict], options: argparse.Namespace) -> dict:
    """The rows every run is read against: the ground truth, the donor's ground truth in each place (a perfect
    model's shuffled-audio control) and the ground truth through stage 1 (a perfect token predictor)."""
    donor_dir = write_donor_ground_truth(items, options.out / "ground_truth_shuffled_audio" / "pred")
    round_trip_dir = write_stage1_round_trip(synthesizer, items, options.out / "ground_truth_stage1" / "pred")
    return {
        GROUND_TRUTH: score(None, GROUND_TRUTH, options),
        GROUND_TRUTH_SHUFFLED: score(donor_dir, GROUND_TRUTH_SHUFFLED, options),
        STAGE1_ROUND_TRIP: score(round_trip_dir, STAGE1_ROUND_TRIP, options),
    }


def summarised(result: dict) -> dict[str, float]:
    """The raw values of one scored result that the spread over seeds reports: its metrics, BC with the next
    test sequence's audio and the gap to BC with its own."""
    bc_audio = result[SECTIONS_KEY]["bc_audio"]
    return {**result["metrics"], "bc_next_audio": bc_audio["next"], "bc_gap": bc_audio["gap"]}


def bc_own_and_next_audio(pred_dir: Path | None, data_root: str) -> dict[str, float]:
    """BC (raw, paper protocol) of the same motion against its own sequence's audio and against the next test
    sequence's (cropped or repeated to its length): motion that follows its speech scores higher with its own.
    Joints from each file's own body shape (`predict` writes the ground truth's).

    Args:
        pred_dir: one ``<id>.npz`` per test sequence; None: the ground truth.

    Returns:
        ``{"own": ..., "next": ..., "gap": own - next}``.
    """
    root = resolve_corpus_root(data_root)
    sequences = list(BEAT2Corpus(root, splits=["test"]))
    kinematics = build_kinematics(None)
    joint_speed, _ = resolve_joint_mean_speed(root, lambda: train_split_joint_mean_speed(root, kinematics))
    scores = {key: BeatConsistency(joint_mean_speed=joint_speed, protocol=PROTOCOL) for key in ("own", "next")}
    for sequence, following in zip(sequences, donors_of(sequences, shuffled=True)):
        motion = read_motion(sequence.motion_path if pred_dir is None else pred_dir / f"{sequence.id}.npz")
        poses, trans, betas = (torch.from_numpy(motion[key]) for key in ("poses", "trans", "betas"))
        joints = kinematics(poses, trans, betas=betas)
        audio = read_audio_checked(sequence.audio_path)
        scores["own"].update(joints, audio)
        scores["next"].update(joints, np.resize(read_audio_checked(following.audio_path), len(audio)))
    own, following = (float(scores[key].compute()) for key in ("own", "next"))
    return {"own": own, "next": following, "gap": own - following}


def better_than(method: dict, control: dict, metric: str) -> bool:
    """Whether `method`'s raw value of `metric` is better than `control`'s."""
    difference = method["metrics"][metric] - control["metrics"][metric]
    return difference < 0 if LOWER_IS_BETTER[metric] else difference > 0


def spread(runs: dict[int, dict[str, dict]]) -> dict[str, dict[str, dict[str, float]]]:
    """{method: {value: {mean, min, max}}} of the :func:`summarised` values over the seeds' results
    {seed: {method: result}}."""
    first = next(iter(runs.values()))
    summary = {}
    for method, result in first.items():
        summary[method] = {}
        for key in summarised(result):
            values = [summarised(results[method])[key] for results in runs.values()]
            summary[method][key] = {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}
    return summary


def verdicts(runs: dict[int, dict[str, dict]], method: str, control: str) -> dict[str, int]:
    """{metric: in how many seeds `method` beats `control`} for the metrics of the issue's bar."""
    return {metric: sum(better_than(results[method], results[control], metric) for results in runs.values())
            for metric in COMPARED}


def spread_table(summary: dict) -> str:
    """The means over the seeds as a paper-style table, then every raw value's mean [min, max] per method."""
    mean_rows = [{"name": method, **{key: value["mean"] for key, value in values.items()}}
                 for method, values in summary.items()]
    lines = ["mean over seeds:", format_table(mean_rows), "raw mean [min, max] over seeds:"]
    for method, values in summary.items():
        ranges = ", ".join(f"{key} {value['mean']:.6g} [{value['min']:.6g}, {value['max']:.6g}]"
                           for key, value in values.items())
        lines.append(f"  {method}: {ranges}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    options = parse_arguments(argv)
    reference, runs, train_seconds = {}, {}, {}
    path = options.out / "ablation.json"
    for seed in options.seeds:
        run_dir = options.out / f"seed{seed}"
        checkpoints, train_seconds[seed] = {}, {}
        for masking in MASKINGS:
            checkpoints[masking], train_seconds[seed][masking] = train(masking, seed, options)

        prediction_dirs = {}
        for masking in MASKINGS:
            module = GeneratorModule.load_for_inference(checkpoints[masking])
            items = test_items(module, options.data_root)
            prediction_dirs[masking] = predict(module, items, speech_of(items, False), run_dir / masking / "pred")
            if masking == "speech_queried":
                control_dir = run_dir / SHUFFLED / "pred"
                prediction_dirs[SHUFFLED] = predict(module, items, speech_of(items, True), control_dir)
        if not reference:  # the stage-1 models are frozen: the same in every run
            reference = score_references(module.synthesizer, items, options)
        runs[seed] = {name: score(pred_dir, name, options) for name, pred_dir in prediction_dirs.items()}

        print(f"seed {seed}:")
        print(format_table([table_row(result) for result in [*reference.values(), *runs[seed].values()]]))
        print("BC (raw) of the same motion with its own audio / the next test sequence's (gap):")
        for result in [*reference.values(), *runs[seed].values()]:
            bc = result[SECTIONS_KEY]["bc_audio"]
            print(f"  {result['name']}: {bc['own']:.4f} / {bc['next']:.4f} ({bc['gap']:+.4f})")
        for masking, seconds in train_seconds[seed].items():
            print(f"train time {masking}: " + ("reused checkpoint" if seconds is None else f"{seconds:.0f} s"))
        summary = {
            "seeds": list(runs),
            "epochs": options.epochs,
            "train_seconds": train_seconds,
            "reference": reference,
            "runs": runs,
            "spread": spread(runs),
            "speech_queried_beats_control": verdicts(runs, "speech_queried", SHUFFLED),
            "speech_queried_beats_random": verdicts(runs, "speech_queried", "random"),
        }
        path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(spread_table(summary["spread"]))
    for key in ("speech_queried_beats_control", "speech_queried_beats_random"):
        counts = ", ".join(f"{metric} {count}/{len(runs)}" for metric, count in summary[key].items())
        print(f"{key.replace('_', ' ')}: {counts} seeds")
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
