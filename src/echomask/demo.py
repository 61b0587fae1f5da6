"""`echomask demo`: the whole pipeline on the synthetic corpus with the tiny demo configs (SPEC §2).

synthetic corpus → FGD evaluator → stage 1 (four RVQ-VAEs + translation) → stage 2 → test-split
metrics → `generate` on a speech file. Each stage is the same `echomask` command a user would type
(printed before it runs); the wall time of each is reported at the end with where the outputs are.
Run it from the repository root (the configs live in `experiments/`).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

STAGE1_PARTS = ("face", "upper", "hands", "lower", "translation")
SHARED_SPEECH = Path("../shared/audio/speech_44k_stereo_mp3.wav")
GENERATOR_CHECKPOINT = "logs/generator/checkpoints/last.ckpt"
TEST_OUTPUTS = "outputs/generator/test"


def demo_stages(data_root: str, audio: str, generate_out: str) -> list[tuple[str, list[str]]]:
    """(stage name, echomask arguments) in order."""
    data = ["--data.root", data_root]
    generator = ["--config", "experiments/generator.yaml", "--config", "experiments/demo/generator.yaml", *data]
    stages = [("evaluator", ["fit", "--config", "experiments/demo/evaluator.yaml", *data])]
    for part in STAGE1_PARTS:
        configs = ["--config", "experiments/vqvae/base.yaml", "--config", "experiments/demo/vqvae.yaml"]
        stages.append((f"stage 1: {part}", ["fit", *configs, "--config", f"experiments/vqvae/{part}.yaml", *data]))
    stages.append(("stage 2: generator", ["fit", *generator]))
    stages.append(("test metrics", ["test", *generator, "--ckpt_path", GENERATOR_CHECKPOINT]))
    stages.append(("generate", ["generate", "--audio", audio, "--out", generate_out]))
    return stages


def demo_audio(data_root: Path) -> Path:
    """The shared real speech file when present, else the first test recording of the synthetic corpus."""
    if SHARED_SPEECH.exists():
        return SHARED_SPEECH
    from echomask.data.beat2 import BEAT2Corpus

    return BEAT2Corpus(data_root, splits=["test"])[0].audio_path


def demo_command(options: argparse.Namespace) -> int:
    from echomask.cli import main
    from echomask.data.synthetic import write_synthetic_corpus

    timings: list[tuple[str, float]] = []
    started = time.perf_counter()
    data_root = Path(options.data_root)
    if not (data_root / "beat_english_v2.0.0" / "train_test_split.csv").exists():
        write_synthetic_corpus(data_root, seed=options.seed)
    timings.append(("synthetic corpus", time.perf_counter() - started))
    audio = Path(options.audio) if options.audio else demo_audio(data_root)
    for name, arguments in demo_stages(str(data_root), str(audio), options.out):
        print(f"\n=== {name}: echomask {' '.join(arguments)}", flush=True)
        started = time.perf_counter()
        status = main(arguments)
        timings.append((name, time.perf_counter() - started))
        if status:
            print(f"demo stopped: stage '{name}' failed (exit status {status})")
            return status
    print("\n=== demo finished; wall time per stage:")
    for name, seconds in timings:
        print(f"  {name:<22} {seconds:7.1f} s")
    print(f"  {'total':<22} {sum(s for _, s in timings):7.1f} s")
    print(
        "\noutputs:\n"
        f"  generated motion and video: {options.out}/{audio.stem}.npz, {options.out}/{audio.stem}.mp4\n"
        f"  test-split motion and metrics: {TEST_OUTPUTS}/<id>.npz, {TEST_OUTPUTS}/metrics.json\n"
        "  checkpoints: logs/{evaluator,vqvae/<part>,generator}/checkpoints/last.ckpt\n"
        "  TensorBoard: tensorboard --logdir logs\n"
        "  notebook: notebooks/inspect_results.ipynb"
    )
    return 0


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", default="data/synthetic", help="synthetic corpus folder (written if missing)")
    parser.add_argument("--audio", default=None, help=f"speech for the last stage (default {SHARED_SPEECH} if present)")
    parser.add_argument("--out", default="outputs/demo", help="folder for the generated npz and video")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic corpus")
