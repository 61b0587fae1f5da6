"""Every benchmark, by name, with its settings for the full run and for `--quick` (None: not in `--quick`).

Budget on the 2-core development CPU: the full run about 25 minutes (10 of them the released network's paper-size
step and window, bench.generator_step), `--quick` under 3 minutes. Paper sizes run fewer repeats (a paper-size
generator step of batch 8 takes about half a minute there).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.entry import resolve
from echomask.stages import STAGES

# The registry names its functions instead of importing them: the runner reads it without importing
# torch, Lightning or the models (only the benchmark processes do; the stage table imports nothing heavy).
STAGE1_STAGES = tuple(stage.name for stage in STAGES.values() if stage.stage1_model)
PAPER_GENERATOR_BATCH = 8  # SPEC §6.5 trains with 64; 8 is what a CPU step of the paper-size model allows
LOADER_STAGES = ("vqvae-upper", "evaluator", "generator")  # one per distinct item list: stage 1, FGD evaluator, stage 2
INFERENCE_SECONDS = 60.0  # SPEC §10: a 60 s file
QUICK_INFERENCE_SECONDS = 20.0
# the released network's own step and window (bench.generator_step): precision name -> Lightning precision
PRECISIONS = {"fp32": "32-true", "bf16": "bf16-mixed"}
OBJECTIVE_PATHS = {"release": False, "shared": True}  # name -> GeneratorObjective(share_work=...)


@dataclass(frozen=True)
class Case:
    """A benchmark: the function named `function` ("module:name") is called as `function(device=...,
    [workspace=...,] **settings)` and returns a JSON-able dict."""

    name: str
    group: str
    function: str
    full: dict
    quick: dict | None

    @property
    def module(self) -> str:
        return self.function.partition(":")[0]

    def load(self) -> Callable[..., dict]:
        """The benchmark function (imports its module)."""
        return resolve(self.function)

    def settings(self, quick: bool, repeats: int | None) -> dict | None:
        """The settings of this run (None: skipped in this mode); `repeats` overrides the case's own."""
        chosen = self.quick if quick else self.full
        if chosen is None:
            return None
        return {**chosen, "repeats": repeats} if repeats is not None else dict(chosen)


def _training_cases() -> list[Case]:
    cases = []
    for stage in STAGE1_STAGES:
        cases.append(
            Case(
                f"train-{stage}-tiny",
                "train",
                "bench.training:training_throughput",
                full=dict(stage=stage, size="tiny", batch_size=None, warmup=2, repeats=5),
                quick=dict(stage=stage, size="tiny", batch_size=None, warmup=1, repeats=2)
                if stage == "vqvae-upper"
                else None,
            )
        )
    for stage in STAGE1_STAGES:
        cases.append(
            Case(
                f"train-{stage}-paper",
                "train",
                "bench.training:training_throughput",
                full=dict(stage=stage, size="paper", batch_size=None, warmup=2, repeats=3),
                quick=None,
            )
        )
    cases += [
        Case(
            "train-evaluator-paper",
            "train",
            "bench.training:training_throughput",
            full=dict(stage="evaluator", size="paper", batch_size=None, warmup=2, repeats=5),
            quick=dict(stage="evaluator", size="paper", batch_size=None, warmup=1, repeats=2),
        ),
        Case(
            "train-generator-tiny",
            "train",
            "bench.training:training_throughput",
            full=dict(stage="generator", size="tiny", batch_size=None, warmup=2, repeats=3),
            quick=dict(stage="generator", size="tiny", batch_size=PAPER_GENERATOR_BATCH, warmup=1, repeats=2),
        ),
        Case(
            "train-generator-paper",
            "train",
            "bench.training:training_throughput",
            full=dict(stage="generator", size="paper", batch_size=PAPER_GENERATOR_BATCH, warmup=1, repeats=2),
            quick=None,
        ),
    ]
    return cases


def _generator_network_cases() -> list[Case]:
    """The released network (MaskedGenerator + GeneratorObjective) without a Trainer: the training step at both
    precisions on both objective paths, and the batch-1 inference window with its profile."""
    cases = []
    for path, share_work in OBJECTIVE_PATHS.items():
        for name, precision in PRECISIONS.items():
            settings = dict(share_work=share_work, precision=precision)
            cases += [
                Case(
                    f"step-generator-tiny-{path}-{name}",
                    "network",
                    "bench.generator_step:training_step",
                    full=dict(size="tiny", batch_size=PAPER_GENERATOR_BATCH, warmup=2, repeats=5, **settings),
                    quick=dict(size="tiny", batch_size=4, warmup=1, repeats=2, **settings),
                ),
                Case(
                    f"step-generator-paper-{path}-{name}",
                    "network",
                    "bench.generator_step:training_step",
                    full=dict(size="paper", batch_size=PAPER_GENERATOR_BATCH, warmup=1, repeats=2, **settings),
                    quick=None,
                ),
            ]
    for name, precision in PRECISIONS.items():
        cases += [
            Case(
                f"infer-window-tiny-{name}",
                "network",
                "bench.generator_step:inference_window",
                full=dict(size="tiny", precision=precision, warmup=3, repeats=10, profile_calls=5),
                quick=dict(size="tiny", precision=precision, warmup=1, repeats=2, profile_calls=1),
            ),
            Case(
                f"infer-window-paper-{name}",
                "network",
                "bench.generator_step:inference_window",
                full=dict(size="paper", precision=precision, warmup=2, repeats=5, profile_calls=3),
                quick=None,
            ),
        ]
    return cases


def _inference_cases() -> list[Case]:
    return [
        Case(
            "infer-hubert-tiny-random",
            "inference",
            "bench.inference:hubert_rtf",
            full=dict(model="tiny-random", audio_seconds=INFERENCE_SECONDS, repeats=3),
            quick=dict(model="tiny-random", audio_seconds=QUICK_INFERENCE_SECONDS, repeats=2),
        ),
        Case(
            "infer-hubert-large-random",
            "inference",
            "bench.inference:hubert_rtf",
            full=dict(model="large-random", audio_seconds=INFERENCE_SECONDS, repeats=2),
            quick=None,
        ),
        Case(
            "infer-hubert-large-random-bf16",
            "inference",
            "bench.inference:hubert_rtf",
            full=dict(model="large-random", audio_seconds=INFERENCE_SECONDS, repeats=2, precision=PRECISIONS["bf16"]),
            quick=None,
        ),
        Case(
            "infer-generator-tiny",
            "inference",
            "bench.inference:generator_rtf",
            full=dict(size="tiny", audio_seconds=INFERENCE_SECONDS, repeats=3),
            quick=dict(size="tiny", audio_seconds=QUICK_INFERENCE_SECONDS, repeats=2),
        ),
        Case(
            "infer-generator-paper",
            "inference",
            "bench.inference:generator_rtf",
            full=dict(size="paper", audio_seconds=INFERENCE_SECONDS, repeats=2),
            quick=None,
        ),
    ]


def _render_cases() -> list[Case]:
    return [
        Case(
            "render-skeleton",
            "inference",
            "bench.render:render_rate",
            full=dict(frames=300, panels=1, warmup=1, repeats=3),
            quick=dict(frames=60, panels=1, warmup=1, repeats=2),
        ),
        Case(
            "render-video",
            "inference",
            "bench.render:video_rate",
            full=dict(frames=300, motions=2, height=512, warmup=1, repeats=3),
            quick=dict(frames=60, motions=1, height=512, warmup=0, repeats=1),
        ),
    ]


def _evaluation_cases() -> list[Case]:
    return [
        Case(
            "eval-metrics",
            "evaluation",
            "bench.metrics:evaluation_rate",
            full=dict(repeats=3),
            quick=dict(repeats=1),
        )
    ]


def _data_cases() -> list[Case]:
    cases = [
        Case(
            "data-cache-build",
            "data",
            "bench.data_pipeline:cache_build_rate",
            full=dict(repeats=3),
            quick=dict(repeats=1),
        )
    ]
    for stage in LOADER_STAGES:
        for workers in (0, 2):
            in_quick = workers == 0 and stage != "evaluator"
            quick = dict(stage=stage, num_workers=0, batches=6, repeats=2) if in_quick else None
            cases.append(
                Case(
                    f"data-loader-{stage}-w{workers}",
                    "data",
                    "bench.data_pipeline:loader_throughput",
                    full=dict(stage=stage, num_workers=workers, batches=20, repeats=3),
                    quick=quick,
                )
            )
    return cases


MATMUL = Case(
    "machine-matmul",
    "machine",
    "bench.machine:matmul_rate",
    full=dict(warmup=3, repeats=20),
    quick=dict(warmup=3, repeats=10),
)

CASES: dict[str, Case] = {
    case.name: case
    for case in [
        MATMUL,
        *_training_cases(),
        *_generator_network_cases(),
        *_inference_cases(),
        *_render_cases(),
        *_evaluation_cases(),
        *_data_cases(),
    ]
}
