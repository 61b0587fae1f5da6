"""The released generator network itself (`MaskedGenerator` + `GeneratorObjective`, issue 17), without a Trainer:
the training step at fp32 and bf16, the release-equivalent computation against the shared step, and the
inference window with a profile of where its time goes.

A training step is what `GeneratorModule` runs per batch: the objective's passes A, B and C with the EMA copy's
SQA mask scoring (``speech_queried`` masking at the paper's schedule, halfway), backward, gradient clipping at
0.99, an Adam step and the EMA update. bf16-mixed runs the forward pass under bf16 autocast, as Lightning's
``bf16-mixed`` does (weights, gradients and the optimizer stay fp32). The batch is random (its values do not
change the cost). ``share_work=False`` is the release's computation (three separate passes, MAM in each:
``mam_once=False, batch_passes_bc=False``); ``True`` the objective's default (lit/generator_objective.py).
"""
from __future__ import annotations

import time

import torch
from torch.profiler import ProfilerActivity, profile

from bench.harness import count_flops, rates, summarize, time_call
from echomask.lit.ema import EMA
from echomask.lit.generator_objective import GeneratorBatch, GeneratorObjective
from echomask.models.masked_generator import PARTS, MaskedGenerator
from echomask.models.masking import MaskPolicy, seed_mask
from echomask.precision import autocast, machine_precision

WINDOW = 64  # frames (SPEC §4.5)
SEED_FRAMES = 4  # SPEC §6.6
CLIP = 0.99  # SPEC §6.5
LEARNING_RATE, BETAS = 5.0e-5, (0.5, 0.999)  # SPEC §6.5
PROGRESS = 0.5  # where in the mask schedule the timed steps are
# paper: MaskedGenerator's defaults (the release's sizes, 223 M live parameters); tiny: a few hundred thousand
SIZES = {
    "paper": {},
    "tiny": dict(
        latent_dim=32, codebook_size=32, num_rvq_layers=2, hidden_dim=64, hidden_heads=2, hidden_feedforward=128,
        encoder_width=32, encoder_blocks=1, face_decoder_layers=1, fusion_heads=2, fusion_feedforward=64,
        base_classifier_hidden=64, classifier_hidden=32, cascade_layers=1, cascade_heads=2, cascade_feedforward=64,
        mam_heads=2, mam_feedforward=64, mam_layers_per_block=1, sqa_layers=1, sqa_heads=2, sqa_feedforward=128,
    ),
}  # fmt: skip
RELEASE_OPTIONS = dict(mam_once=False, batch_passes_bc=False, share_work=False)


def build_generator(size: str, device: torch.device) -> MaskedGenerator:
    if size not in SIZES:
        raise ValueError(f"unknown generator size {size!r}; choose one of {sorted(SIZES)}")
    torch.manual_seed(0)
    return MaskedGenerator(**SIZES[size]).to(device)


def random_batch(generator: MaskedGenerator, batch_size: int, device: torch.device) -> GeneratorBatch:
    """Random windows, speech features and stage-1 targets of the generator's sizes."""
    draw = torch.Generator().manual_seed(0)
    tokens, layers, dim = WINDOW // generator.frames_per_token, generator.num_rvq_layers, generator.latent_dim

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(batch_size, *shape, generator=draw).to(device)

    def integers(high: int, *shape: int) -> torch.Tensor:
        return torch.randint(0, high, (batch_size, *shape), generator=draw).to(device)

    return GeneratorBatch(
        motion=normal(WINDOW, generator.motion_dim),
        speaker=integers(generator.num_speakers),
        speech_low=normal(WINDOW, dim),
        speech_high=normal(WINDOW, dim),
        codes={part: normal(layers, tokens, dim) for part in PARTS},
        indices={part: integers(generator.codebook_size, tokens, layers) for part in PARTS},
    )


def training_step(
    device: torch.device,
    size: str,
    batch_size: int,
    precision: str,
    share_work: bool,
    warmup: int,
    repeats: int,
) -> dict:
    """Seconds and windows/s of one training step of the generator objective (module docstring); ``precision``
    "32-true", "bf16-mixed" or "auto" (resolved on this machine). FLOPs counted on the last warm-up step."""
    if warmup < 1:
        raise ValueError(f"training_step needs at least one warm-up step (the FLOP count runs there), got {warmup}")
    resolution = machine_precision(precision, device.type)
    generator = build_generator(size, device).train()
    ema = EMA(generator)
    objective = GeneratorObjective(MaskPolicy(), seed_frames=SEED_FRAMES, **({} if share_work else RELEASE_OPTIONS))
    optimizer = torch.optim.Adam(generator.parameters(), lr=LEARNING_RATE, betas=BETAS)
    batch = random_batch(generator, batch_size, device)
    rng = torch.Generator(device=device).manual_seed(0)

    def step() -> None:
        with autocast(device, resolution):
            result = objective(generator, batch, PROGRESS, scorer=ema.module, rng=rng)
        result.loss.backward()
        torch.nn.utils.clip_grad_norm_(generator.parameters(), CLIP)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.update(generator)

    for _ in range(warmup - 1):
        step()
    flops = count_flops(step)
    seconds = summarize([time_call(step, device) for _ in range(repeats)])
    return {
        "size": size,
        "batch_size": batch_size,
        "precision": resolution.precision,
        "precision_requested": precision,
        "precision_reason": resolution.reason,
        "share_work": share_work,
        "step_seconds": seconds,
        "windows_per_second": rates(batch_size, seconds),
        "flops_per_step": flops,
        "parameters": sum(p.numel() for p in generator.parameters()),
        "how": f"MaskedGenerator ({size}) + GeneratorObjective({'shared step' if share_work else 'release: 3 passes'})"
        f", EMA scoring, backward, clip, Adam, EMA update; {resolution.precision}",
    }


def _top_operators(window, calls: int, count: int) -> list[dict]:
    """The `count` operators with the most self CPU time over `calls` calls of `window`: name, ms per window,
    share of the profiled time, calls per window."""
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(calls):
            window()
    events = [event for event in profiler.key_averages() if event.self_cpu_time_total > 0]
    total = sum(event.self_cpu_time_total for event in events)
    events.sort(key=lambda event: event.self_cpu_time_total, reverse=True)
    return [
        {
            "operator": event.key,
            "ms_per_window": event.self_cpu_time_total / 1000 / calls,
            "share": event.self_cpu_time_total / total,
            "calls_per_window": event.count / calls,
        }
        for event in events[:count]
    ]


def inference_window(
    device: torch.device, size: str, precision: str, warmup: int, repeats: int, profile_calls: int, top: int = 8
) -> dict:
    """Seconds of `MaskedGenerator.infer` on one 64-frame window (batch 1, the seed frames visible), its FLOPs, and
    the operators its time goes to (torch.profiler, ``profile_calls`` windows)."""
    resolution = machine_precision(precision, device.type)
    generator = build_generator(size, device).eval()
    batch = random_batch(generator, 1, device)
    mask = seed_mask(1, WINDOW, SEED_FRAMES, device=device)

    def window() -> None:
        with autocast(device, resolution):
            generator.infer(batch.motion, mask, batch.speaker, batch.speech_low, batch.speech_high)

    started = time.perf_counter()
    window()  # builds the stacked per-part copies
    first = time.perf_counter() - started
    for _ in range(warmup):
        window()
    flops = count_flops(window)
    seconds = summarize([time_call(window, device) for _ in range(repeats)])
    return {
        "size": size,
        "precision": resolution.precision,
        "precision_requested": precision,
        "precision_reason": resolution.reason,
        "seconds": seconds,
        "windows_per_second": rates(1, seconds),
        "first_call_seconds": first,
        "flops": flops,
        "profile": _top_operators(window, profile_calls, top) if profile_calls else [],
        "parameters": sum(p.numel() for p in generator.parameters()),
        "how": f"MaskedGenerator({size}).infer on a {WINDOW}-frame window, batch 1, {resolution.precision}",
    }
