"""`echomask generate`: SMPL-X motion (npz) and a skeleton video for any speech recording (SPEC §6.6).

Everything needed travels in the generator checkpoint: the stage-1 decoders, the translation
model, the HuBERT settings and the projection matrix. No training data or cache is read.
"""
from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from echomask.audio.features import MOTION_FPS
from echomask.audio.io import SAMPLE_RATE, AudioError, load_audio
from echomask.models.decoding import Decoding
from echomask.precision import AUTO, BF16_MIXED, FP32, autocast, machine_precision
from echomask.stages import STAGES

DEFAULT_CHECKPOINT = STAGES["generator"].checkpoint  # where `make train-generator` leaves it
DEFAULT_SPEAKER = 2  # BEAT2's benchmark speaker (scott); any id the checkpoint was trained with works
MIN_SECONDS = 1.0  # shorter audio gives too few frames for one seeded window
SILENCE_RMS = 1e-4  # RMS below which a recording counts as silent

log = logging.getLogger(__name__)


@dataclass
class GenerationResult:
    npz: Path
    video: Path | None
    num_frames: int
    audio_seconds: float
    speech_feature_seconds: float
    generation_seconds: float
    render_seconds: float

    @property
    def real_time_factor(self) -> float:
        """Seconds of motion per wall second, speech features (HuBERT or signal) included, rendering excluded."""
        return self.audio_seconds / (self.speech_feature_seconds + self.generation_seconds)


def check_speech(wave: np.ndarray, path: Path, sample_rate: int) -> None:
    """Refuse audio that cannot give motion: too short or silent (AudioError names the file)."""
    seconds = len(wave) / sample_rate
    if seconds < MIN_SECONDS:
        raise AudioError(path, f"too short ({seconds:.2f} s); generation needs at least {MIN_SECONDS:.0f} s of speech")
    rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64))))
    if rms < SILENCE_RMS:
        raise AudioError(path, f"silent (RMS {rms:.1e}); generation needs speech")


def generate_from_audio(
    audio: str | Path,
    out_dir: str | Path,
    checkpoint: str | Path = DEFAULT_CHECKPOINT,
    seed_pose: str | Path | None = None,
    speaker: int = DEFAULT_SPEAKER,
    decoding: Decoding = Decoding(),
    video: bool = True,
    progress: bool = True,
    precision: str = AUTO,
) -> GenerationResult:
    """Generate motion for one audio file; writes `<out_dir>/<audio stem>.npz` (and `.mp4`).

    precision: HuBERT and the generator's windows at "32-true", under bf16 autocast ("bf16-mixed"), or "auto"
    (`echomask.precision`: bf16 where the hardware multiplies it natively; the choice is logged)."""
    audio, out_dir, checkpoint = Path(audio), Path(out_dir), Path(checkpoint)
    if not checkpoint.exists():
        raise FileNotFoundError(f"{checkpoint}: no generator checkpoint (train one with `make train-generator`)")
    sample_rate = SAMPLE_RATE
    wave = load_audio(audio, sample_rate=sample_rate)
    check_speech(wave, audio, sample_rate)

    # imported here: transformers and the models take seconds to import, bad input is refused before
    from echomask.inference import motion_to_smplx, neutral_seed, seed_from_npz, write_smplx_npz
    from echomask.lit.generator_module import GeneratorModule
    from echomask.results import write_sqa

    module = GeneratorModule.load_for_inference(checkpoint)
    num_speakers = module.hparams.num_speakers
    if not 1 <= speaker <= num_speakers:
        raise ValueError(f"speaker must be a BEAT2 speaker id in 1..{num_speakers}, got {speaker}")
    fps = MOTION_FPS
    num_frames = int(len(wave) / sample_rate * fps)

    resolution = machine_precision(precision, module.device.type)
    log.info("generate: %s", resolution.describe(precision))
    started = time.perf_counter()
    speech = module.speech.extractor(fps=fps, progress=progress, precision=resolution.precision)
    if not torch.equal(speech.projection.cpu(), module.speech_projection.cpu()):
        raise ValueError(f"{checkpoint}: the stored speech projection differs from the one rebuilt from its settings")
    low, high = speech(wave, num_frames)
    speech_seconds = time.perf_counter() - started

    seed_motion, seed_expressions = seed_from_npz(seed_pose) if seed_pose else neutral_seed()
    started = time.perf_counter()
    with autocast(module.device, resolution):
        result = module.synthesizer.generate(
            torch.from_numpy(low)[None],
            torch.from_numpy(high)[None],
            torch.tensor([speaker - 1]),
            seed_motion,
            seed_expressions,
            decoding=decoding,
            progress=progress,
            scores=True,  # written as <stem>_sqa.npz
        )
    generation_seconds = time.perf_counter() - started

    out_dir.mkdir(parents=True, exist_ok=True)
    arrays = motion_to_smplx(result["motion"][0].float(), result["expressions"][0].float())
    npz_path = write_smplx_npz(out_dir / f"{audio.stem}.npz", arrays)
    # SQA frame scores over the waveform, for notebooks/inspect_results.ipynb
    write_sqa(out_dir / f"{audio.stem}_sqa.npz", result["scores"][0].float().numpy(), wave, sample_rate)
    video_path, render_seconds = None, 0.0
    if video:
        started = time.perf_counter()
        video_path = render_video(arrays, wave, sample_rate, fps, out_dir / f"{audio.stem}.mp4")
        render_seconds = time.perf_counter() - started
    return GenerationResult(
        npz=npz_path,
        video=video_path,
        num_frames=num_frames,
        audio_seconds=len(wave) / sample_rate,
        speech_feature_seconds=speech_seconds,
        generation_seconds=generation_seconds,
        render_seconds=render_seconds,
    )


def render_video(arrays: dict, wave: np.ndarray, sample_rate: int, fps: int, path: Path) -> Path:
    """Skeleton video of SMPL-X arrays (approximate skeleton) with the audio muxed in."""
    from echomask.render import render_motion_video

    motions = {"generated (approximate skeleton)": arrays}
    return render_motion_video(path, motions, fps=fps, audio=wave, sample_rate=sample_rate)


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--audio", required=True, help="any audio file libsndfile reads (wav, flac, ogg, mp3-in-wav)")
    parser.add_argument("--ckpt", default=DEFAULT_CHECKPOINT, help=f"generator checkpoint (default {DEFAULT_CHECKPOINT})")
    parser.add_argument("--out", default="outputs/generate", help="output folder (default outputs/generate)")
    parser.add_argument("--seed-pose", default=None, help="BEAT2/SMPL-X npz whose first frames seed the motion")
    parser.add_argument("--speaker", type=int, default=DEFAULT_SPEAKER, help="BEAT2 speaker id (default 2)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0: argmax per RVQ layer (paper)")
    parser.add_argument("--top-k", type=int, default=None, help="sample among the k most likely codes only")
    parser.add_argument(
        "--decoding-steps",
        type=int,
        default=1,
        help="generator passes per window (1: the paper); more: iterative re-masking of the least confident tokens",
    )
    parser.add_argument("--no-video", action="store_true", help="write the npz only")
    parser.add_argument(
        "--precision",
        choices=(AUTO, FP32, BF16_MIXED),
        default=AUTO,
        help="HuBERT and generator precision; auto (default): bf16-mixed on a CPU with AMX (amx_bf16) or a "
        "bf16 GPU, else 32-true",
    )


def generate_command(options: argparse.Namespace) -> int:
    result = generate_from_audio(
        options.audio,
        options.out,
        checkpoint=options.ckpt,
        seed_pose=options.seed_pose,
        speaker=options.speaker,
        decoding=Decoding(options.temperature, options.top_k, options.decoding_steps),
        video=not options.no_video,
        precision=options.precision,
    )
    print(f"motion: {result.npz} ({result.num_frames} frames at 30 fps, {result.audio_seconds:.2f} s of audio)")
    if result.video:
        print(f"video:  {result.video}")
    print(
        f"time: speech features {result.speech_feature_seconds:.2f} s, generation {result.generation_seconds:.2f} s, "
        f"render {result.render_seconds:.2f} s; real-time factor {result.real_time_factor:.1f}x"
    )
    return 0
