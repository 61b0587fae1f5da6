"""`precision: auto` (echomask.precision): the resolution rule on fake machines, the flags of /proc/cpuinfo, and
LightningCLI resolving and logging it before the Trainer is built."""
from __future__ import annotations

import pytest
import torch

from echomask import precision
from echomask.lightning_cli import compose
from echomask.precision import BF16_MIXED, FP32, parse_cpu_flags, resolve_precision
from echomask.stages import stage

XEON_AMX = {"avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"}
XEON_AVX512_BF16 = {"avx512f", "avx512_bf16", "avx512_vnni"}
EPYC_ROME = {"avx2", "fma", "sha_ni"}  # no bf16 instructions
SKYLAKE = {"avx512f", "avx512bw", "avx512_vnni"}  # AVX-512 without BF16


@pytest.mark.parametrize(
    ("flags", "expected", "reason"),
    [
        (XEON_AMX, BF16_MIXED, "amx_bf16"),
        ({"amx_bf16"}, BF16_MIXED, "amx_bf16"),
        (XEON_AVX512_BF16, FP32, "avx512_bf16 but no AMX"),  # measured: bf16 matmuls slower than fp32 there
        (EPYC_ROME, FP32, "emulated"),
        (SKYLAKE, FP32, "emulated"),
        (set(), FP32, "emulated"),
    ],
)
def test_auto_on_a_cpu_follows_its_bf16_matmul_speed(flags, expected, reason):
    resolution = resolve_precision("auto", cpu_flags=flags)
    assert resolution.precision == expected
    assert reason in resolution.reason
    assert resolution.bf16 == (expected == BF16_MIXED)


def test_auto_on_a_gpu_follows_the_gpu_not_the_cpu():
    assert resolve_precision("auto", cpu_flags=EPYC_ROME, gpu=True, gpu_bf16=True).precision == BF16_MIXED
    no_bf16 = resolve_precision("auto", cpu_flags=XEON_AMX, gpu=True, gpu_bf16=False, gpu_name="Tesla V100")
    assert no_bf16.precision == FP32 and "Tesla V100" in no_bf16.reason


@pytest.mark.parametrize("given", ["32-true", "bf16-mixed", "16-mixed", 32])
def test_every_other_value_is_kept(given):
    resolution = resolve_precision(given, cpu_flags=XEON_AMX, gpu=True, gpu_bf16=True)
    assert resolution.precision == str(given) and resolution.reason == "given"


def test_cpu_flags_come_from_the_first_processor_of_cpuinfo():
    cpuinfo = (
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu avx512f avx512_bf16 amx_bf16\n\n"
        "processor\t: 1\nflags\t\t: fpu\n"
    )
    assert parse_cpu_flags(cpuinfo) == {"fpu", "avx512f", "avx512_bf16", "amx_bf16"}
    assert parse_cpu_flags("processor\t: 0\n") == frozenset()


def test_this_machine_resolves_to_one_of_the_two():
    resolution = precision.machine_precision("auto", accelerator="cpu")
    has_bf16 = bool(set(precision.cpu_flags()) & set(precision.BF16_CPU_FLAGS))
    assert resolution.precision == (BF16_MIXED if has_bf16 else FP32)


def test_autocast_only_for_bf16():
    with precision.autocast("cpu", BF16_MIXED):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with precision.autocast("cpu", FP32):
        assert not torch.is_autocast_enabled("cpu")


@pytest.mark.parametrize("name", ["evaluator", "vqvae-upper", "translation", "generator"])
def test_paper_configs_ask_for_auto_and_the_demo_overlays_for_fp32(name):
    for size, expected in (("paper", "auto"), ("tiny", FP32)):
        config = compose(stage(name).config_arguments(size), instantiate=False).config
        assert config.trainer.precision == expected, (name, size)


@pytest.mark.parametrize(("flags", "expected"), [(XEON_AMX, BF16_MIXED), (XEON_AVX512_BF16, FP32)])
def test_lightning_cli_resolves_auto_before_the_trainer_is_built_and_logs_it(monkeypatch, caplog, flags, expected):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level("INFO", logger="echomask"):
        cli = compose(stage("vqvae-upper").config_arguments("tiny"), "--trainer.precision", "auto")
    assert cli.trainer.precision == expected
    (line,) = [record.getMessage() for record in caplog.records if record.name == "echomask.lit.trainer"]
    assert line.startswith(f"precision auto -> {expected} (")
    forced = compose(stage("vqvae-upper").config_arguments("tiny"), "--trainer.precision", "32-true")
    assert forced.trainer.precision == FP32
