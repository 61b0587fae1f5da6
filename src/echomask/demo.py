"""`echomask demo`: the whole pipeline on the synthetic corpus with the tiny configs (SPEC §2).

synthetic corpus → FGD evaluator → stage 1 (four RVQ-VAEs + translation) → the tokenizers' round trip →
stage 2 → test-split metrics → `generate` on a speech file. Each step is the `echomask` command a user would type, built from
the stage table (`echomask.stages`) and printed before it runs; the wall time of each is reported at the
end with where the outputs are. Run it from the repository root (the configs live in `experiments/`).
The caller passes the runner of one command line (the console command's `main`): this module never imports
the CLI.
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from echomask import results
from echomask.stages import STAGES

SHARED_SPEECH = Path("../shared/audio/speech_44k_stereo_mp3.wav")
TEST_OUTPUTS = "outputs/generator/test"  # the generator config's model.init_args.output_dir
DEMO_SIZE = "tiny"


def demo_steps(data_root: str, audio: str, generate_out: str) -> list[tuple[str, list[str]]]:
    """(step name, echomask arguments) in order: every stage trained at the tiny size (the stage-1 tokenizers'
    round trip of the test split before the generator: do they carry the motion?), then test and generate."""
    data = ["--data.root", data_root]
    steps = [(entry.name, ["fit", *entry.config_arguments(DEMO_SIZE), *data]) for entry in STAGES.values()]
    generator = STAGES["generator"]
    round_trip = ["round-trip", "--data-root", data_root, "--json", f"{generate_out}/round_trip.json"]
    steps.insert(list(STAGES).index(generator.name), ("stage-1 round trip", round_trip))
    steps.append(("test metrics", ["test", *generator.config_arguments(DEMO_SIZE), *data,
                                   "--ckpt_path", generator.checkpoint]))
    steps.append(("generate", ["generate", "--audio", audio, "--out", generate_out, "--ckpt", generator.checkpoint]))
    return steps


def demo_audio(data_root: Path) -> Path:
    """The shared real speech file when present, else the first test recording of the synthetic corpus."""
    if SHARED_SPEECH.exists():
        return SHARED_SPEECH
    from echomask.data.beat2 import BEAT2Corpus

    return BEAT2Corpus(data_root, splits=["test"])[0].audio_path


def demo_command(options: argparse.Namespace, run: Callable[[list[str]], int]) -> int:
    """Run the demo; ``run`` runs one ``echomask`` command line and returns its exit status."""
    from echomask.data.synthetic import write_synthetic_corpus

    timings: list[tuple[str, float]] = []
    started = time.perf_counter()
    data_root = Path(options.data_root)
    if not (data_root / "beat_english_v2.0.0" / "train_test_split.csv").exists():
        write_synthetic_corpus(data_root, seed=options.seed)
    timings.append(("synthetic corpus", time.perf_counter() - started))
    audio = Path(options.audio) if options.audio else demo_audio(data_root)
    for name, arguments in demo_steps(str(data_root), str(audio), options.out):
        print(f"\n=== {name}: echomask {' '.join(arguments)}", flush=True)
        started = time.perf_counter()
        status = run(arguments)
        timings.append((name, time.perf_counter() - started))
        if status:
            print(f"demo stopped: step '{name}' failed (exit status {status})")
            return status
    print("\n=== demo finished; wall time per step:")
    for name, seconds in timings:
        print(f"  {name:<22} {seconds:7.1f} s")
    print(f"  {'total':<22} {sum(s for _, s in timings):7.1f} s")
    print(f"\n=== does the generated test motion move like the ground truth? ({TEST_OUTPUTS}/metrics.json)")
    with results.report_missing():
        print(results.motion_statistics_summary(results.load_metrics(TEST_OUTPUTS)))
    checkpoints = ", ".join(entry.checkpoint for entry in STAGES.values())
    print(
        "\noutputs:\n"
        f"  generated motion and video: {options.out}/{audio.stem}.npz, {options.out}/{audio.stem}.mp4\n"
        f"  test-split motion and metrics: {TEST_OUTPUTS}/<id>.npz, {TEST_OUTPUTS}/metrics.json\n"
        f"  checkpoints: {checkpoints}\n"
        "  TensorBoard: tensorboard --logdir logs\n"
        "  notebook: notebooks/inspect_results.ipynb"
    )
    return 0


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", default="data/synthetic", help="synthetic corpus folder (written if missing)")
    parser.add_argument("--audio", default=None, help=f"speech for the last stage (default {SHARED_SPEECH} if present)")
    parser.add_argument("--out", default="outputs/demo", help="folder for the generated npz and video")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic corpus")
