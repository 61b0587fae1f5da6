"""Frozen HuBERT speech features at the motion frame rate (SPEC §4.4).

`HubertFeatures(model)` accepts
- a local directory holding a `transformers` HuBERT checkpoint (`HubertModel.from_pretrained(dir)`),
- a Hugging Face hub name, used only if it is already in the local hub cache (never downloaded),
- `"tiny-random"`: a small randomly initialised HuBERT built from a config with a fixed seed, for tests and the
  demo. It keeps the real conv front end (50 Hz frames) and HuBERT-large's 12+ layer indexing, so the paper's
  layer choice (low = hidden_states[11]) works unchanged; it is NOT pretrained and says so in the log.

Per file: normalise the waveform (if the model's preprocessor config says so), run HuBERT, take the low- and
high-level hidden states, interpolate them linearly in time to the motion frames, then project them to `out_dim`
with a fixed random orthonormal matrix.

Time alignment: HuBERT frame i summarises samples [i·hop, i·hop + receptive_field) (hop 320, receptive field
400 at 16 kHz), so its centre is at (i·hop + (receptive_field − 1)/2) / sample_rate seconds. Motion frame k is at
k / fps. Each motion frame takes the linear interpolation of its two neighbouring HuBERT frames on this explicit
time grid (frames before the first / after the last centre take the edge value). Unlike resizing the whole
sequence to `num_frames` (`F.interpolate(size=num_frames)`), this never stretches time when the audio and motion
lengths differ by a fraction of a frame.

Long audio is processed in chunks of `chunk_seconds` of output frames, each with `context_seconds` of extra audio
on both sides that is run through the model but whose frames are discarded. Chunks start on HuBERT's frame grid,
so the assembled frames line up exactly with a single full-length pass; only the attention context differs.
Files up to `chunk_seconds` (default 60 s) run in one pass; chunking bounds the attention memory, which grows
with the square of the length (60 s of hubert-large: ~0.6 GB per layer on the CPU).

The reference release feeds 22.05 kHz audio to HuBERT as if it were 16 kHz; this module expects (and the
pipeline provides) real 16 kHz audio.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from huggingface_hub import snapshot_download
from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
from tqdm.auto import tqdm
from transformers import HubertConfig, HubertModel

from echomask.audio.features import MOTION_FPS, check_wave, motion_frame_times
from echomask.audio.io import SAMPLE_RATE
from echomask.precision import AUTO, FP32, autocast, machine_precision

logger = logging.getLogger(__name__)

TINY_RANDOM = "tiny-random"
# Bump when the computation changes in a way the other cache-key fields do not capture.
FEATURE_VERSION = 1
# Added to the variance before normalising the input, as transformers' Wav2Vec2FeatureExtractor does.
NORMALIZE_EPSILON = 1e-7

_warned_not_pretrained = False


def tiny_random_config() -> HubertConfig:
    """The architecture of the `tiny-random` model: HuBERT-large's layout (stable layer norm, 50 Hz conv front end,
    12 transformer layers so the paper's layer indices are valid) at a tiny width."""
    return HubertConfig(
        hidden_size=64,
        num_hidden_layers=12,  # ≥ 12 so that the paper's low_layer=11 exists
        num_attention_heads=4,
        intermediate_size=128,
        conv_dim=(32,) * 7,  # HuBERT's 7 conv layers (kernels/strides keep their defaults: 320-sample hop)
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        do_stable_layer_norm=True,  # as hubert-large
        feat_extract_norm="layer",
    )


def build_tiny_random_hubert(seed: int = 0) -> HubertModel:
    """A randomly initialised `tiny-random` HuBERT, identical for the same seed (the global RNG is left untouched)."""
    global _warned_not_pretrained
    if not _warned_not_pretrained:
        logger.warning("HuBERT 'tiny-random' is randomly initialised, not pretrained: its features carry no "
                       "speech knowledge (fine for tests and the synthetic demo, not for paper results)")
        _warned_not_pretrained = True
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return HubertModel(tiny_random_config())


def orthonormal_projection(in_dim: int, out_dim: int, seed: int) -> torch.Tensor:
    """A fixed random (in_dim, out_dim) matrix with orthonormal columns (in_dim ≥ out_dim) or rows (in_dim < out_dim).

    QR of a seeded standard Gaussian (float64, CPU generator, so identical on every device), with the signs of R's
    diagonal folded into Q so the result is unique. Features x (T, in_dim) map to x @ P (T, out_dim):
    - in_dim ≥ out_dim (e.g. 1024 → 256): P^T P = I, an orthogonal projection onto a random subspace;
    - in_dim < out_dim (e.g. tiny-random 64 → 256): P P^T = I, an isometric embedding (norms and angles kept).

    Returns:
        (in_dim, out_dim) float32 tensor.
    """
    if in_dim < 1 or out_dim < 1:
        raise ValueError(f"projection sizes must be positive, got {in_dim} → {out_dim}")
    generator = torch.Generator().manual_seed(seed)
    tall, wide = max(in_dim, out_dim), min(in_dim, out_dim)
    gaussian = torch.randn(tall, wide, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    q = q * torch.sign(torch.diagonal(r))
    projection = q if in_dim >= out_dim else rearrange(q, "out_dim in_dim -> in_dim out_dim")
    return projection.to(torch.float32)


def weights_fingerprint(model: torch.nn.Module) -> str:
    """sha256 over the names, dtypes, shapes and bytes of all parameters and buffers, in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


class HubertFeatures:
    """Frozen HuBERT → (low, high) features, one projected vector per motion frame (§4.4).

    Args:
        model: "tiny-random", a local checkpoint directory, or a hub name already in the local HF cache.
        low_layer: index into `hidden_states` for the low-level features (paper: 11); 0 = the transformer input.
        high_layer: index into `hidden_states` for the high-level features; None = `last_hidden_state` (paper).
        out_dim: feature size after the orthonormal projection (paper: 256).
        projection: "orthonormal" (fixed random matrix, paper) or "none" (keep the model's hidden size; out_dim
            must then be None or that size).
        projection_seed: seed of the orthonormal matrix.
        fps: motion frame rate the features are interpolated to (§4.4: 30).
        device: torch device the model runs on.
        normalize: zero-mean/unit-variance input normalisation; None = the model's `preprocessor_config.json`
            (`do_normalize`), or True (hubert-large-ls960-ft's setting) where the model has no such file.
        chunk_seconds: output frames per model pass for long audio; None = always one pass.
        context_seconds: extra audio on each side of a chunk (its frames are discarded).
        progress: show a tqdm bar over the chunks of long files.
        precision: "32-true" (exact fp32), "bf16-mixed" (the model under bf16 autocast; interpolation and
            projection in fp32) or "auto" (`echomask.precision`: bf16-mixed where the hardware has bf16 matmuls;
            the choice is logged). Part of the cache key.

    Attributes:
        projection: the (hidden_size, out_dim) float32 CPU matrix applied to both levels (None for "none"); store
            it with cached features and checkpoints to prove they were made with the same projection.
        model: the frozen `transformers.HubertModel` (eval mode, no gradients).

    Note: `high_layer=num_hidden_layers` is the last layer's output as `hidden_states` reports it; for
    stable-layer-norm models (hubert-large) transformers ≥ 5 returns it before the final layer norm, so it is not
    `last_hidden_state` (the paper's choice, high_layer=None).
    """

    def __init__(
        self,
        model: str = TINY_RANDOM,
        low_layer: int = 11,  # paper: hidden_states[11]
        high_layer: int | None = None,  # paper: last_hidden_state
        out_dim: int | None = 256,  # paper: 1024 → 256
        projection: str = "orthonormal",
        projection_seed: int = 0,
        fps: float = MOTION_FPS,
        device: str | torch.device = "cpu",
        normalize: bool | None = None,
        chunk_seconds: float | None = 60.0,
        context_seconds: float = 5.0,
        progress: bool = False,
        precision: str = FP32,
    ):
        if projection not in ("orthonormal", "none"):
            raise ValueError(f"projection must be 'orthonormal' or 'none', got {projection!r}")
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if chunk_seconds is not None and chunk_seconds <= 0:
            raise ValueError(f"chunk_seconds must be positive or None, got {chunk_seconds}")
        if context_seconds < 0:
            raise ValueError(f"context_seconds must be ≥ 0, got {context_seconds}")
        self.model_name, self.model, model_dir = _load_model(model)
        self.model.to(device).eval().requires_grad_(False)
        self.device = torch.device(device)
        resolution = machine_precision(precision, self.device.type)
        if precision == AUTO:
            logger.info("HuBERT features: %s", resolution.describe(AUTO))
        self.precision = resolution.precision
        self.normalize = _do_normalize(model_dir) if normalize is None else bool(normalize)
        config = self.model.config
        self.hidden_size = config.hidden_size
        self.low_layer = _check_layer("low_layer", low_layer, config.num_hidden_layers, self.model_name)
        self.high_layer = None if high_layer is None else _check_layer(
            "high_layer", high_layer, config.num_hidden_layers, self.model_name)
        self.projection_type = projection
        self.projection_seed = projection_seed
        if projection == "none":
            if out_dim not in (None, self.hidden_size):
                raise ValueError(f"projection='none' keeps the model's hidden size {self.hidden_size}; "
                                 f"pass out_dim=None or {self.hidden_size}, not {out_dim}")
            self.out_dim = self.hidden_size
            self.projection = None
        else:
            if out_dim is None or out_dim < 1:
                raise ValueError(f"projection='orthonormal' needs a positive out_dim, got {out_dim}")
            self.out_dim = out_dim
            self.projection = orthonormal_projection(self.hidden_size, out_dim, projection_seed)
        self.fps = fps
        self.chunk_seconds = chunk_seconds
        self.context_seconds = context_seconds
        self.progress = progress
        self.receptive_field, self.hop = _conv_geometry(config)
        self._fingerprint: str | None = None

    def cache_key(self) -> dict:
        """Everything that changes the output, as a JSON-able dict (the weights are fingerprinted once, lazily)."""
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.model)
        return {
            "extractor": "hubert",
            "version": FEATURE_VERSION,
            "model": self.model_name,
            "weights_sha256": self._fingerprint,
            "normalize": self.normalize,
            "low_layer": self.low_layer,
            "high_layer": "last" if self.high_layer is None else self.high_layer,
            "sample_rate": SAMPLE_RATE,
            "fps": self.fps,
            "projection": self.projection_type,
            "projection_seed": self.projection_seed if self.projection_type == "orthonormal" else None,
            "out_dim": self.out_dim,
            "chunk_seconds": self.chunk_seconds,
            "context_seconds": self.context_seconds,
            "precision": self.precision,
        }

    @torch.no_grad()
    def __call__(self, wave16k: np.ndarray, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
        """Features for one waveform.

        Args:
            wave16k: (N,) mono waveform at 16 kHz.
            num_frames: number of motion frames T; frame T − 1 (at (T − 1)/fps s) must lie inside the audio.

        Returns:
            low, high: (T, out_dim) float32 each.
        """
        wave = check_wave(wave16k).astype(np.float32, copy=False)
        times = motion_frame_times(num_frames, self.fps, len(wave) / SAMPLE_RATE)
        if len(wave) < self.receptive_field:
            raise ValueError(f"HuBERT needs at least {self.receptive_field} samples "
                             f"({self.receptive_field / SAMPLE_RATE * 1000:.0f} ms), got {len(wave)}")
        if self.normalize:
            wave64 = wave.astype(np.float64)
            wave = ((wave64 - wave64.mean()) / np.sqrt(wave64.var() + NORMALIZE_EPSILON)).astype(np.float32)
        low, high = self._hidden_states(torch.from_numpy(wave))
        frame_position = self._hubert_frame_position(times)
        return self._finish(low, frame_position), self._finish(high, frame_position)

    def _hidden_states(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the model (in chunks for long audio). wave (N,) → low, high: (F, hidden) at 50 Hz."""
        total = (len(wave) - self.receptive_field) // self.hop + 1
        core = total if self.chunk_seconds is None else max(1, round(self.chunk_seconds * SAMPLE_RATE / self.hop))
        context = round(self.context_seconds * SAMPLE_RATE / self.hop)
        starts = range(0, total, core)
        low_parts, high_parts = [], []
        for first in tqdm(starts, desc="HuBERT", unit="chunk", disable=not self.progress or len(starts) == 1):
            last = min(first + core, total)
            run_first, run_last = max(0, first - context), min(total, last + context)
            samples = wave[run_first * self.hop:(run_last - 1) * self.hop + self.receptive_field]
            low, high = self._run(samples)
            assert low.shape[0] == run_last - run_first, "HuBERT frame count disagrees with the conv geometry"
            low_parts.append(low[first - run_first:last - run_first])
            high_parts.append(high[first - run_first:last - run_first])
        return torch.cat(low_parts), torch.cat(high_parts)

    def _run(self, samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One model pass: samples (n,) → low, high (F, hidden) on the CPU in float32."""
        batch = rearrange(samples, "n -> 1 n").to(self.device)
        with autocast(self.device, self.precision):
            output = self.model(batch, output_hidden_states=True)
        low = output.hidden_states[self.low_layer]
        high = output.last_hidden_state if self.high_layer is None else output.hidden_states[self.high_layer]
        return low[0].float().cpu(), high[0].float().cpu()

    def _hubert_frame_position(self, times: np.ndarray) -> torch.Tensor:
        """Fractional HuBERT frame index of each motion instant: (t·sr − (receptive_field − 1)/2) / hop."""
        centre_offset = (self.receptive_field - 1) / 2
        return torch.from_numpy((times * SAMPLE_RATE - centre_offset) / self.hop)

    def _finish(self, hidden: torch.Tensor, frame_position: torch.Tensor) -> np.ndarray:
        """Interpolate (F, hidden) to the motion instants, then project: → (T, out_dim) float32."""
        position = frame_position.clamp(0, hidden.shape[0] - 1)
        before = position.floor().long()
        after = (before + 1).clamp(max=hidden.shape[0] - 1)
        weight = rearrange((position - before).float(), "t -> t 1")
        features = (1 - weight) * hidden[before] + weight * hidden[after]
        if self.projection is not None:
            features = features @ self.projection
        return features.numpy().astype(np.float32, copy=False)


def _load_model(model: str) -> tuple[str, HubertModel, Path | None]:
    """Resolve `model` → (name for the cache key, HubertModel, checkpoint directory or None)."""
    if model == TINY_RANDOM:
        return TINY_RANDOM, build_tiny_random_hubert(), None
    directory = Path(model).expanduser()
    if directory.is_dir():
        return str(directory.resolve()), HubertModel.from_pretrained(directory), directory
    try:
        snapshot = Path(snapshot_download(model, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError):
        raise FileNotFoundError(
            f"HuBERT model {model!r} is neither a local directory nor in the local Hugging Face cache, and "
            f"echomask never downloads models: copy the checkpoint to a directory and pass its path, "
            f"or use {TINY_RANDOM!r} for a small random model"
        ) from None
    return model, HubertModel.from_pretrained(snapshot), snapshot


def _do_normalize(model_dir: Path | None) -> bool:
    """`do_normalize` from the checkpoint's preprocessor config; True where there is none."""
    config_path = None if model_dir is None else model_dir / "preprocessor_config.json"
    if config_path is None or not config_path.is_file():
        logger.info("no preprocessor_config.json for the HuBERT model: normalising the input (hubert-large setting)")
        return True
    try:
        preprocessor = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{config_path}: not valid JSON ({error})") from None
    return bool(preprocessor.get("do_normalize", True))  # True: Wav2Vec2FeatureExtractor's default


def _check_layer(name: str, layer: int, num_layers: int, model_name: str) -> int:
    """Check a hidden_states index: 0 (transformer input) … num_layers (output of the last layer)."""
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer <= num_layers:
        raise ValueError(f"{name}={layer!r} is not a hidden state of {model_name!r}, which has {num_layers} layers: "
                         f"use an integer from 0 (transformer input) to {num_layers} (last layer)")
    return layer


def _conv_geometry(config: HubertConfig) -> tuple[int, int]:
    """(receptive field, hop) in samples of the conv front end (400 and 320 for every released HuBERT)."""
    receptive_field, hop = 1, 1
    for kernel, stride in zip(config.conv_kernel, config.conv_stride):
        receptive_field += (kernel - 1) * hop
        hop *= stride
    return receptive_field, hop
