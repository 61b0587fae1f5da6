"""Inference speed: HuBERT feature extraction and the sliding-window generator, as real-time factors.

Real-time factor (RTF) = seconds of audio (= of motion) per second of wall time; above 1 is faster
than real time. The two parts are timed apart because they scale differently (HuBERT with the
model's size and the square of the chunk length, the generator with the number of 64-frame windows).
The first call (not timed) runs under the FLOP counter.
"""
from __future__ import annotations

import logging
import tempfile

import torch
from transformers import HubertConfig, HubertModel

from bench.configs import compose_stage, generator_options
from bench.harness import count_flops, rates, summarize, time_call
from echomask.audio.hubert import TINY_RANDOM, HubertFeatures
from echomask.data.beat2 import MOTION_FPS
from echomask.inference import neutral_seed

HUBERT_MODELS = (TINY_RANDOM, "large-random")

# The architecture of facebook/hubert-large-ls960-ft (the paper's HuBERT, 315 M parameters), built
# offline with random weights: its speed is the pretrained model's speed.
HUBERT_LARGE_CONFIG = dict(
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    intermediate_size=4096,
    do_stable_layer_norm=True,
    feat_extract_norm="layer",
    conv_bias=True,
    num_conv_pos_embeddings=128,
    num_conv_pos_embedding_groups=16,
)


def _hubert_features(model: str, folder: str, device: torch.device, precision: str) -> HubertFeatures:
    """HuBERT features with the paper's layer settings at `precision`; "large-random" is saved to `folder` first
    and loaded from there like a local checkpoint."""
    if model == TINY_RANDOM:
        return HubertFeatures(model=TINY_RANDOM, device=device, precision=precision)
    if model != "large-random":
        raise ValueError(f"unknown HuBERT benchmark model {model!r}; choose one of {HUBERT_MODELS}")
    torch.manual_seed(0)
    HubertModel(HubertConfig(**HUBERT_LARGE_CONFIG)).save_pretrained(folder)
    return HubertFeatures(model=folder, device=device, precision=precision)


def hubert_rtf(
    device: torch.device, workspace, model: str, audio_seconds: float, repeats: int, precision: str = "32-true"
) -> dict:
    """Real-time factor of `HubertFeatures` (model, interpolation to 30 fps, projection) on speech at `precision`
    ("32-true", "bf16-mixed" or "auto")."""
    logging.getLogger("echomask").setLevel(logging.ERROR)
    wave = workspace.speech_clip(audio_seconds)
    num_frames = int(audio_seconds * MOTION_FPS)
    with tempfile.TemporaryDirectory(dir=workspace.root) as folder:
        features = _hubert_features(model, folder, device, precision)
        flops = count_flops(lambda: features(wave, num_frames))
        seconds = summarize([time_call(lambda: features(wave, num_frames), device) for _ in range(repeats)])
    parameters = sum(p.numel() for p in features.model.parameters())
    return {
        "model": model,
        "precision": features.precision,
        "audio_seconds": audio_seconds,
        "seconds": seconds,
        "real_time_factor": rates(audio_seconds, seconds),
        "flops": flops,
        "parameters": parameters,
        "how": f"HubertFeatures({model!r}) on {audio_seconds:g} s of speech (chunk {features.chunk_seconds} s), "
        f"{features.precision}",
    }


def build_synthesizer(size: str, device: torch.device):
    """The `MotionSynthesizer` a `GeneratorModule` of the `size` generator config holds (random weights), in
    eval mode, its generator's parameters left trainable as `GeneratorModule.load_for_inference` leaves them
    (this matters: with frozen weights torch multiplies the batch-first attention inputs through a slower
    broadcast `bmm`)."""
    module = compose_stage("generator", size, *generator_options(size)).model  # seeded by the config
    return module.synthesizer.to(device).eval(), module.speech.feature_dim


def generator_rtf(device: torch.device, workspace, size: str, audio_seconds: float, repeats: int) -> dict:
    """Real-time factor of `MotionSynthesizer.generate` (sliding windows, argmax codes, stage-1 decoding)
    on `audio_seconds` of random speech features (the cost does not depend on their values)."""
    logging.getLogger("echomask").setLevel(logging.ERROR)
    synthesizer, feature_dim = build_synthesizer(size, device)
    num_frames = int(audio_seconds * MOTION_FPS)
    generator = torch.Generator().manual_seed(0)
    low, high = (torch.randn(1, num_frames, feature_dim, generator=generator).to(device) for _ in range(2))
    seed_motion, seed_expressions = (tensor.to(device) for tensor in neutral_seed(synthesizer.seed_frames))
    speaker = torch.zeros(1, dtype=torch.long, device=device)

    def generate():
        synthesizer.generate(low, high, speaker, seed_motion, seed_expressions)

    flops = count_flops(generate)
    seconds = summarize([time_call(generate, device) for _ in range(repeats)])
    windows = synthesizer.num_windows(num_frames)
    return {
        "size": size,
        "audio_seconds": audio_seconds,
        "windows": windows,
        "seconds": seconds,
        "seconds_per_window": seconds["median"] / windows,
        "real_time_factor": rates(audio_seconds, seconds),
        "flops": flops,
        "flops_per_window": flops / windows,
        "parameters": sum(p.numel() for p in synthesizer.parameters()),
        "how": f"MotionSynthesizer.generate of the {size} generator config, {windows} windows of "
        f"{synthesizer.window} frames (stride {synthesizer.stride})",
    }
