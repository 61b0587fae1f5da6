"""The release's stage-1 networks as echomask modules: tensor names, sizes read from the files, our checkpoints.

- The four part RVQ-VAEs (`models/rvq.py` `RVQVAE`) become `VQVAEModule`s, the global-motion model
  (`models/motion_representation.py` `VAEConvZero`) a `TranslationModule`; sizes are read from the file,
  so any size the release's code can build imports (paper: width 256, 6 x 256 codes of 256 dims).
- The release keeps no EMA statistics in its files (its quantizer holds them in plain attributes): an
  imported codebook starts them as a fresh initialisation does (count 1 per code, sum = the code) and is
  marked initialised.
- The imported modules carry the release's training rules (`RELEASE_RVQVAE_RULES`), so that
  they describe the release's model; only the network matters for stage 2 and `generate`.
- `write_imported_checkpoint` writes a Lightning checkpoint that `echomask fit` of stage 2
  (`GeneratorModule`'s `stage1_checkpoints`) and `VQVAEModule.load_from_checkpoint` read unchanged.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path

import lightning.pytorch as pl
import torch

from echomask.checkpoints import CheckpointError
from echomask.lit.translation_module import TranslationModule
from echomask.lit.vqvae_module import VQVAEModule
from echomask.models.residual_vq import FRESH_CODE_COUNT
from echomask.official.release_files import check_release_state, read_release_state

STAGE1_NAMES = ("face", "upper", "hands", "lower", "translation")
RELEASE_FILE_NAMES = {  # weights/pretrained_vq/ of the release (echomask_trainer.py)
    "face": "rvq_face_600.bin",
    "upper": "rvq_upper_500.bin",
    "hands": "rvq_hands_500.bin",
    "lower": "rvq_lower_600.bin",
    "translation": "last_1700_foot.bin",
}
DILATION_GROWTH = 3  # release: dilation_growth_rate; Resnet1D reverses 1, 3, 9 -> 9, 3, 1 in encoder and decoder
RELEASE_RVQVAE_RULES = {  # what the release trains with where echomask's defaults differ (experiments/vqvae/release.yaml)
    "quantizer_dropout": 0.0,
    "straight_through": "per_layer",
    "codebook_rows": "in_order",
    "dead_code_count": "keep",
    "foot_skate_translation": "zero",
}

# echomask tensor name -> the release's: regular-expression substitutions, in order.
RVQVAE_RENAMES = (
    (r"^(encoder|decoder)\.layers\.", r"\1.model."),
    (r"\.(\d+)\.body\.1\.", r".model.\1.conv1."),  # DilatedResidualBlock = ResConv1DBlock (conv1, conv2)
    (r"\.(\d+)\.body\.3\.", r".model.\1.conv2."),
    (r"^quantizer\.codebooks\.(\d+)\.codebook$", r"quantizer.layers.\1.codebook"),
)
TRANSLATION_RENAMES = ((r"^(encoder|decoder)\.", r"\1.main."),)
EMA_STATE = re.compile(r"^quantizer\.codebooks\.(\d+)\.(ema_sum|ema_count|initialised)$")  # not in the release


def release_name(name: str, renames: tuple[tuple[str, str], ...]) -> str:
    """The release's name of an echomask tensor name."""
    for pattern, replacement in renames:
        name = re.sub(pattern, replacement, name)
    return name


def release_layout(model: torch.nn.Module, renames: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """release tensor name -> echomask tensor name, for every tensor of `model` the release stores."""
    return {release_name(name, renames): name for name in model.state_dict() if not EMA_STATE.match(name)}


def _count(state: Mapping[str, torch.Tensor], pattern: str) -> int:
    return sum(1 for name in state if re.fullmatch(pattern, name))


def _shape(path: Path, state: Mapping[str, torch.Tensor], name: str, model: str) -> tuple[int, ...]:
    if name not in state:
        raise CheckpointError(path, f"not {model}: tensor {name} missing")
    return tuple(state[name].shape)


def rvqvae_sizes(path: Path, state: Mapping[str, torch.Tensor], model: str) -> dict:
    """`VQVAEModule` size arguments of a release RVQ-VAE state dict."""
    depth = _count(state, r"encoder\.model\.\d+\.0\.weight")
    blocks = _count(state, r"encoder\.model\.2\.1\.model\.\d+\.conv1\.weight")
    dilations = [DILATION_GROWTH**block for block in reversed(range(blocks))]
    num_quantizers = _count(state, r"quantizer\.layers\.\d+\.codebook")
    codebook_size, code_dim = _shape(path, state, "quantizer.layers.0.codebook", model)
    return {
        "width": _shape(path, state, "encoder.model.0.weight", model)[0],
        "depth": depth,
        "encoder_dilations": dilations,
        "decoder_dilations": dilations,
        "num_quantizers": num_quantizers,
        "codebook_size": codebook_size,
        "code_dim": code_dim,
    }


def translation_sizes(path: Path, state: Mapping[str, torch.Tensor], model: str) -> dict:
    """`TranslationModule` size arguments of a release `VAEConvZero` state dict."""
    return {
        "width": _shape(path, state, "encoder.main.0.weight", model)[0],
        "layers": _count(state, r"encoder\.main\.\d+\.weight"),
    }


def _renamed_state(
    path: Path, state: Mapping[str, torch.Tensor], network: torch.nn.Module, renames: tuple[tuple[str, str], ...], model: str
) -> dict[str, torch.Tensor]:
    """`state` checked against `network`'s layout and renamed to echomask's names."""
    layout = release_layout(network, renames)
    expected = network.state_dict()
    check_release_state(path, state, {name: tuple(expected[ours].shape) for name, ours in layout.items()}, model)
    return {ours: state[name] for name, ours in layout.items()}


def import_rvqvae(part: str, path: str | Path) -> VQVAEModule:
    """A `VQVAEModule` holding the release's RVQ-VAE of `part` from its checkpoint file."""
    path = Path(path)
    model = f"the release's {part} RVQ-VAE"
    state = read_release_state(path)
    module = VQVAEModule(part=part, **rvqvae_sizes(path, state, model), **RELEASE_RVQVAE_RULES, render_frames=0)
    weights = _renamed_state(path, state, module.model, RVQVAE_RENAMES, model)
    for layer, codebook in enumerate(module.model.quantizer.codebooks):
        codes = weights[f"quantizer.codebooks.{layer}.codebook"]
        weights[f"quantizer.codebooks.{layer}.ema_sum"] = codes * FRESH_CODE_COUNT
        weights[f"quantizer.codebooks.{layer}.ema_count"] = torch.full_like(codebook.ema_count, FRESH_CODE_COUNT)
        weights[f"quantizer.codebooks.{layer}.initialised"] = torch.tensor(True)
    module.model.load_state_dict(weights)
    return module


def import_translation(path: str | Path, **inference: str) -> TranslationModule:
    """A `TranslationModule` holding the release's global-motion model (`VAEConvZero`) from its checkpoint file.

    `inference`: its test-time settings (`test_contact`, `integration`; default echomask's).
    """
    path = Path(path)
    model = "the release's global-motion model (VAEConvZero)"
    state = read_release_state(path)
    module = TranslationModule(**translation_sizes(path, state, model), **inference)
    module.model.load_state_dict(_renamed_state(path, state, module.model, TRANSLATION_RENAMES, model))
    return module


def import_stage1(name: str, path: str | Path, **inference: str) -> pl.LightningModule:
    """The echomask module of one release stage-1 file: `name` is a part or "translation" (`inference`: see
    `import_translation`)."""
    if name not in STAGE1_NAMES:
        raise ValueError(f"unknown stage-1 model {name!r}; known: {STAGE1_NAMES}")
    return import_translation(path, **inference) if name == "translation" else import_rvqvae(name, path)


def _plain(value):
    """Hyper-parameters as built-in containers (what a weights-only load accepts)."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_imported_checkpoint(module: pl.LightningModule, path: str | Path, source: str | Path) -> Path:
    """Save `module` (a stage-1 or generator module) as a Lightning checkpoint at `path` (folders created),
    recording the release file it came from."""
    path, source = Path(path), Path(source)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "pytorch-lightning_version": pl.__version__,
        "epoch": 0,
        "global_step": 0,
        "state_dict": module.state_dict(),
        "hyper_parameters": _plain(module.hparams),
        "imported_from": {"file": str(source.resolve()), "sha256": file_sha256(source)},
    }
    torch.save(checkpoint, path)
    return path
