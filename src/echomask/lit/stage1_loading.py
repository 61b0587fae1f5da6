"""Stage 1 as the generator module reads it: the frozen RVQ-VAEs and translation model from their Lightning
checkpoints (where `make train-vqvae` or `echomask import-official` leave them), and the generator's sizes that
follow from them (the token layout, the speech feature size)."""
from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from echomask.lit.translation_module import translation_arguments
from echomask.lit.vqvae_module import rvqvae_arguments
from echomask.models.conv_vqvae import RVQVAE
from echomask.models.masked_generator import MaskedGenerator
from echomask.models.translation import TranslationModel
from echomask.motion.parts import PART_NAMES, WHOLE_BODY_DIM
from echomask.stages import STAGE1_MODELS, stage1_checkpoint

log = logging.getLogger(__name__)

# MaskedGenerator arguments that stage 1 and the data decide (not settable through `generator`).
DERIVED_GENERATOR_ARGUMENTS = (
    "motion_dim",
    "num_speakers",
    "frames_per_token",
    "latent_dim",
    "num_rvq_layers",
    "codebook_size",
)


def read_stage1_checkpoint(name: str, path: str | Path) -> tuple[dict, dict[str, Tensor]]:
    """(architecture keyword arguments, weights) of one stage-1 model ("face" … "lower" or "translation")."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"stage-1 checkpoint of {name!r} not found: {path}; run `make train-vqvae` first "
            f"(or set model.init_args.stage1_checkpoints.{name})"
        )
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    hparams, state = checkpoint.get("hyper_parameters"), checkpoint.get("state_dict")
    if hparams is None or state is None:
        raise ValueError(f"{path}: not a Lightning checkpoint of a stage-1 module (no hyper_parameters/state_dict)")
    found = hparams.get("part", "translation")
    if found != name:
        raise ValueError(f"{path}: expected the stage-1 model of {name!r}, found the one of {found!r}")
    try:
        arguments = translation_arguments(hparams) if name == "translation" else rvqvae_arguments(hparams, name)
    except KeyError as missing:
        raise ValueError(f"{path}: hyper-parameter {missing} is missing (not a checkpoint of this version?)") from None
    weights = {key.removeprefix("model."): value for key, value in state.items() if key.startswith("model.")}
    return arguments, weights


def read_stage1(checkpoints: Mapping[str, str] | None) -> tuple[dict[str, dict], dict[str, dict[str, Tensor]]]:
    """Architectures and weights of the five stage-1 models; `checkpoints` overrides the default paths by name."""
    unknown = sorted(set(checkpoints or {}) - set(STAGE1_MODELS))
    if unknown:
        raise ValueError(f"stage1_checkpoints: unknown name(s) {unknown}; known: {list(STAGE1_MODELS)}")
    paths = {name: stage1_checkpoint(name) for name in STAGE1_MODELS} | dict(checkpoints or {})
    arguments, weights = {}, {}
    for name in STAGE1_MODELS:
        arguments[name], weights[name] = read_stage1_checkpoint(name, paths[name])
        log.info("stage 1 %s: %s", name, paths[name])
    return arguments, weights


def build_stage1(stage1_hparams: Mapping[str, Mapping]) -> tuple[nn.ModuleDict, TranslationModel]:
    """Empty (untrained) stage-1 models from their recorded architectures."""
    missing = [name for name in STAGE1_MODELS if name not in stage1_hparams]
    if missing:
        raise ValueError(f"stage1_hparams has no architecture for {missing}")
    vqvaes = nn.ModuleDict({part: RVQVAE(**stage1_hparams[part]) for part in PART_NAMES})
    return vqvaes, TranslationModel(**stage1_hparams["translation"])


def generator_arguments(
    sizes: Mapping | None,
    stage1_hparams: Mapping[str, Mapping],
    num_speakers: int,
    feature_dim: int,
) -> dict:
    """`MaskedGenerator` keyword arguments: the configured sizes plus what stage 1 and the data fix (the speech
    feature size must equal the code size: the generator's ``latent_dim`` is both)."""
    sizes = dict(sizes or {})
    derived = sorted(set(sizes) & set(DERIVED_GENERATOR_ARGUMENTS))
    if derived:
        raise ValueError(f"generator: {derived} follow from stage 1 and the data settings; remove them from the config")
    known = inspect.signature(MaskedGenerator).parameters
    unknown = sorted(set(sizes) - set(known))
    if unknown:
        raise ValueError(f"generator: unknown MaskedGenerator argument(s) {unknown}")
    layouts = {
        part: tuple(stage1_hparams[part][key] for key in ("depth", "num_quantizers", "codebook_size", "code_dim"))
        for part in PART_NAMES
    }
    if len(set(layouts.values())) != 1:
        raise ValueError(
            f"the stage-1 RVQ-VAEs disagree on (depth, num_quantizers, codebook_size, code_dim): {layouts}; "
            "the generator needs one token layout for all parts"
        )
    depth, num_quantizers, codebook_size, code_dim = layouts["face"]
    if feature_dim != code_dim:
        raise ValueError(
            f"the speech feature size (feature_dim={feature_dim}) must equal the stage-1 code size "
            f"(code_dim={code_dim}): the generator's MAM aligns speech features with code vectors and its RVQ "
            "cascade attends to them"
        )
    return {
        **sizes,
        "motion_dim": WHOLE_BODY_DIM,
        "num_speakers": num_speakers,
        "frames_per_token": 2**depth,
        "latent_dim": code_dim,
        "num_rvq_layers": num_quantizers,
        "codebook_size": codebook_size,
    }
