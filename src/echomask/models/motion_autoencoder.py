"""Skeleton-conv motion autoencoder: the FGD feature extractor of EMAGE (SPEC §8.2).

A re-implementation, from ``shared/spec/fgd_aeskconv.md``, of the network behind BEAT2's
``AESKConv_240_100.bin``. Its encoder maps rot6d motion ``(B, T, 330)`` to FGD latents
``(B, T/16, 240)``; the decoder maps them back. Parameter and buffer names equal the checkpoint's
names after its ``module.`` prefix, so the released file loads 1:1 (:func:`load_aeskconv_checkpoint`).

Layout of the encoder (spec §7): ``encoder.layers.{i}.0`` is a :class:`SkeletonResidualBlock` with
``residual`` (masked kernel-4 stride-2 conv, GroupNorm), ``shortcut`` (masked 1-tap stride-2 conv)
and ``common`` (mean pooling where the level pools, then tanh).
"""

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import einsum, rearrange
from torch import nn

from echomask.checkpoints import load_checkpoint
from echomask.models.skeleton_graph import (
    SkeletonLevel,
    edge_neighbourhoods,
    mean_pooling_matrix,
    skeleton_conv_mask,
    skeleton_levels,
)
from echomask.motion.skeleton import SMPLX_PARENTS

AESKCONV_PREFIX = "module."
"""Every tensor name in an AESKConv checkpoint starts with this (saved from a DataParallel wrapper)."""

LIGHTNING_PREFIX = "model."
"""Prefix of the autoencoder's tensors in a Lightning checkpoint: the LightningModule holds it as ``self.model``."""


def _require_rebuilt_buffer(buffer_name: str):
    """A load-state-dict pre-hook refusing a stored buffer that differs from the rebuilt one.

    Masks and pooling matrices are functions of the skeleton; a checkpoint that stores different
    ones was built for another skeleton or another layer layout.
    """

    def hook(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        key = prefix + buffer_name
        rebuilt = getattr(module, buffer_name)
        stored = state_dict.get(key)
        if stored is None or stored.shape != rebuilt.shape:
            return  # missing keys and shape mismatches are reported by load_state_dict itself
        if not torch.equal(stored.to(rebuilt), rebuilt):
            n_different = int((stored.to(rebuilt) != rebuilt).sum())
            error_msgs.append(
                f"{key}: the stored tensor differs from the one rebuilt from the skeleton in "
                f"{n_different} of {rebuilt.numel()} entries (fgd_aeskconv.md §5-§6); "
                "the checkpoint was made for another skeleton or layer layout"
            )

    return hook


class SkeletonConv(nn.Module):
    """1-D convolution over time whose kernel is masked by edge neighbourhoods (spec §5).

    Input ``(B, E·c_in, T)``, output ``(B, E·c_out, T_out)``. Output edge ``e`` reads only the input
    edges of ``N(e)``; the bias is not masked. ``mask`` is a buffer rebuilt from the skeleton.
    """

    def __init__(
        self,
        neighbourhoods: Sequence[Sequence[int]],
        in_channels_per_edge: int,
        out_channels_per_edge: int,
        kernel_size: int,
        stride: int,
        padding: int,
    ):
        super().__init__()
        n_edges = len(neighbourhoods)
        self.stride = stride
        self.padding = padding
        mask = skeleton_conv_mask(
            neighbourhoods,
            in_channels_per_edge=in_channels_per_edge,
            out_channels_per_edge=out_channels_per_edge,
            kernel_size=kernel_size,
        )
        self.register_buffer("mask", mask)
        self.register_load_state_dict_pre_hook(_require_rebuilt_buffer("mask"))
        # Uniform init scaled by each output channel's unmasked fan-in, as nn.Conv1d does for its full fan-in.
        bound = rearrange(mask.sum(dim=(1, 2)).rsqrt(), "c_out -> c_out 1 1")
        self.weight = nn.Parameter((torch.rand_like(mask) * 2 - 1) * bound * mask)
        self.bias = nn.Parameter((torch.rand(n_edges * out_channels_per_edge) * 2 - 1) * bound.flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, T) -> (B, C_out, (T + 2·padding - kernel_size) // stride + 1)``."""
        return F.conv1d(x, self.weight * self.mask, self.bias, stride=self.stride, padding=self.padding)


class SkeletonMeanPool(nn.Module):
    """Averages groups of edges: ``(B, E·c, T) -> (B, G·c, T)`` (spec §6).

    ``weight`` is the fixed ``(G·c, E·c)`` pooling matrix, a buffer rebuilt from the skeleton.
    """

    def __init__(self, groups: Sequence[Sequence[int]], n_edges: int, channels_per_edge: int):
        super().__init__()
        pooling = mean_pooling_matrix(groups, n_edges=n_edges, channels_per_edge=channels_per_edge)
        self.register_buffer("weight", pooling)
        self.register_load_state_dict_pre_hook(_require_rebuilt_buffer("weight"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return einsum(self.weight, x, "pooled channel, batch channel time -> batch pooled time")


class SkeletonResidualBlock(nn.Module):
    """One encoder level (spec §7): ``tanh(pool(GroupNorm(conv_k4_s2(x)) + conv_k1_s2(x)))``.

    Input ``(B, E·c_in, T)``, output ``(B, G·c_out, T/2)`` with ``G`` the pooled edge count
    (``G = E`` where the level does not pool).
    """

    def __init__(
        self,
        level: SkeletonLevel,
        in_channels_per_edge: int,
        out_channels_per_edge: int,
        kernel_size: int,
        neighbour_radius: int,
        norm_groups: int,
    ):
        super().__init__()
        neighbourhoods = edge_neighbourhoods(level.edges, radius=neighbour_radius)
        out_channels = len(level.edges) * out_channels_per_edge
        self.residual = nn.Sequential(
            SkeletonConv(
                neighbourhoods,
                in_channels_per_edge=in_channels_per_edge,
                out_channels_per_edge=out_channels_per_edge,
                kernel_size=kernel_size,
                stride=2,  # each level halves the frame rate (spec §7)
                padding=(kernel_size - 2) // 2,  # 1 zero frame each side for kernel 4: T -> T/2
            ),
            nn.GroupNorm(num_groups=norm_groups, num_channels=out_channels, eps=1e-5),
        )
        self.shortcut = SkeletonConv(
            neighbourhoods,
            in_channels_per_edge=in_channels_per_edge,
            out_channels_per_edge=out_channels_per_edge,
            kernel_size=1,
            stride=2,  # reads frames 0, 2, 4, ...
            padding=0,
        )
        pooling = (
            [SkeletonMeanPool(level.groups, n_edges=len(level.edges), channels_per_edge=out_channels_per_edge)]
            if level.pools
            else []
        )
        self.common = nn.Sequential(*pooling, nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.common(self.residual(x) + self.shortcut(x))


class SkeletonEncoder(nn.Module):
    """Motion ``(B, T, E0·channel_base)`` → latents ``(B, T/2^L, latent_dim)`` (spec §7–§8).

    ``layers[i]`` is ``nn.Sequential(SkeletonResidualBlock)`` (hence the ``.0.`` in the checkpoint
    names); it maps ``(B, C_in_i, T_i)`` channels-first to ``(B, C_in_{i+1}, T_i/2)``.
    """

    def __init__(
        self,
        parents: Sequence[int],
        channel_base: int,
        channel_growth: Sequence[int],
        kernel_size: int,
        neighbour_radius: int,
        norm_groups: int,
    ):
        super().__init__()
        levels = skeleton_levels(parents, n_levels=len(channel_growth))
        channels_per_edge = [channel_base]
        for growth in channel_growth:
            channels_per_edge.append(channels_per_edge[-1] * growth)
        self.input_dim = channel_base * len(levels[0].edges)
        last_level = levels[-1]
        self.latent_dim = channels_per_edge[-1] * len(last_level.groups if last_level.pools else last_level.edges)
        self.time_downsampling = 2 ** len(levels)
        self.layers = nn.ModuleList(
            nn.Sequential(
                SkeletonResidualBlock(
                    level,
                    in_channels_per_edge=channels_per_edge[index],
                    out_channels_per_edge=channels_per_edge[index + 1],
                    kernel_size=kernel_size,
                    neighbour_radius=neighbour_radius,
                    norm_groups=norm_groups,
                )
            )
            for index, level in enumerate(levels)
        )

    def forward(self, motion: torch.Tensor) -> torch.Tensor:
        """``(B, T, input_dim) -> (B, T/2^L, latent_dim)``; ``T`` must be a multiple of ``2^L``."""
        hidden = rearrange(motion, "batch time channel -> batch channel time")
        for layer in self.layers:
            hidden = layer(hidden)
        return rearrange(hidden, "batch channel time -> batch time channel")


class ConvResBlock(nn.Module):
    """``x + conv(act(conv(x)))`` with same-length kernel-3 convs, ``(B, C, T) -> (B, C, T)``."""

    def __init__(self, channels: int, kernel_size: int, negative_slope: float):
        super().__init__()
        self.model = nn.Sequential(
            nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2),
            nn.LeakyReLU(negative_slope),
            nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.model(x)


class MotionDecoder(nn.Module):
    """Latents ``(B, T/2^n, latent_dim)`` → motion ``(B, T, output_dim)``.

    ``main`` is, by index (the checkpoint fixes the parameterised entries; the parameter-free ones
    are inferred from the gaps in its indices): ``n_res_blocks`` :class:`ConvResBlock`, then per
    upsampling stage ``[Upsample(×2, nearest), Conv1d(k3), LeakyReLU]`` — latent_dim→latent_dim except
    the last stage's conv latent_dim→output_dim — and a final Conv1d(k3) output_dim→output_dim with no
    activation. With 2 res blocks and 4 stages the convs sit at 3, 6, 9, 12 and 14.
    The activation is not pinned by the checkpoint; LeakyReLU is our choice.
    """

    def __init__(
        self,
        latent_dim: int,
        output_dim: int,
        n_upsamplings: int,
        n_res_blocks: int,
        kernel_size: int,
        negative_slope: float,
    ):
        super().__init__()
        blocks: list[nn.Module] = [
            ConvResBlock(latent_dim, kernel_size=kernel_size, negative_slope=negative_slope)
            for _ in range(n_res_blocks)
        ]
        for stage in range(n_upsamplings):
            out_channels = output_dim if stage == n_upsamplings - 1 else latent_dim
            blocks += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv1d(latent_dim, out_channels, kernel_size, padding=kernel_size // 2),
                nn.LeakyReLU(negative_slope),
            ]
        blocks.append(nn.Conv1d(output_dim, output_dim, kernel_size, padding=kernel_size // 2))
        self.main = nn.Sequential(*blocks)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """``(B, T', latent_dim) -> (B, T'·2^n, output_dim)``."""
        hidden = rearrange(latents, "batch time channel -> batch channel time")
        return rearrange(self.main(hidden), "batch channel time -> batch time channel")


class MotionAutoencoder(nn.Module):
    """The AESKConv motion autoencoder, non-variational (``variational: False`` of EMAGE's eval config).

    ``encode`` gives the FGD latents ``(B, T/16, 240)`` of rot6d motion ``(B, T, 330)`` (55 SMPL-X
    joints × 6, no normalisation; spec §8); ``decode`` maps latents back to ``(B, T, 330)``;
    ``forward`` is the reconstruction ``decode(encode(x))``.

    ``fc_mu`` and ``fc_logvar`` (latent_dim × latent_dim linear layers) exist only so that the
    released checkpoint loads strictly: with ``variational=False`` the reference never runs them,
    and neither does this class.
    """

    def __init__(
        self,
        parents: Sequence[int] = SMPLX_PARENTS,
        channel_base: int = 6,  # rot6d features per joint (spec §1)
        channel_growth: Sequence[int] = (1, 1, 2, 1),  # vae_grow: one entry per encoder level (spec §1)
        kernel_size: int = 4,  # encoder conv kernel (spec §1)
        neighbour_radius: int = 2,  # skeleton_dist, in edges (spec §4)
        norm_groups: int = 10,  # GroupNorm groups (spec §7)
        decoder_res_blocks: int = 2,  # decoder.main.{0,1} in the checkpoint
        decoder_kernel_size: int = 3,  # decoder convs in the checkpoint
        negative_slope: float = 0.2,  # decoder LeakyReLU; not fixed by the checkpoint
    ):
        super().__init__()
        self.encoder = SkeletonEncoder(
            parents,
            channel_base=channel_base,
            channel_growth=channel_growth,
            kernel_size=kernel_size,
            neighbour_radius=neighbour_radius,
            norm_groups=norm_groups,
        )
        self.decoder = MotionDecoder(
            latent_dim=self.latent_dim,
            output_dim=self.input_dim,
            n_upsamplings=len(channel_growth),
            n_res_blocks=decoder_res_blocks,
            kernel_size=decoder_kernel_size,
            negative_slope=negative_slope,
        )
        self.fc_mu = nn.Linear(self.latent_dim, self.latent_dim)
        self.fc_logvar = nn.Linear(self.latent_dim, self.latent_dim)

    @property
    def input_dim(self) -> int:
        """Features per frame (330 for SMPL-X rot6d)."""
        return self.encoder.input_dim

    @property
    def latent_dim(self) -> int:
        """Latent width (240 in the released model)."""
        return self.encoder.latent_dim

    @property
    def frames_per_latent(self) -> int:
        """Input frames covered by one latent vector (16); clip lengths must be a multiple of it."""
        return self.encoder.time_downsampling

    def encode(self, motion: torch.Tensor) -> torch.Tensor:
        """rot6d motion ``(B, T, 330)`` → latents ``(B, T/16, 240)``, the FGD features."""
        if motion.ndim != 3 or motion.shape[-1] != self.input_dim:
            raise ValueError(f"expected motion of shape (B, T, {self.input_dim}), got {tuple(motion.shape)}")
        if motion.shape[1] % self.frames_per_latent != 0:
            raise ValueError(
                f"clip length T={motion.shape[1]} is not a multiple of {self.frames_per_latent}; "
                "truncate the clip first (the reference evaluation truncates to a multiple of 32)"
            )
        return self.encoder(motion)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents ``(B, T/16, 240)`` → motion ``(B, T, 330)``."""
        if latents.ndim != 3 or latents.shape[-1] != self.latent_dim:
            raise ValueError(f"expected latents of shape (B, T', {self.latent_dim}), got {tuple(latents.shape)}")
        return self.decoder(latents)

    def forward(self, motion: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``(B, T, 330) -> (B, T, 330)``."""
        return self.decode(self.encode(motion))

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> "MotionAutoencoder":
        """Load either checkpoint format, with the default (released) architecture.

        - AESKConv file (``AESKConv_240_100.bin``): ``{"model_state": {"module.<name>": tensor}}``.
        - Lightning checkpoint of our evaluator training: ``{"state_dict": {"model.<name>": tensor, ...}}``,
          i.e. the LightningModule holds this autoencoder as ``self.model`` (:data:`LIGHTNING_PREFIX`);
          its other entries are ignored.
        """
        checkpoint = load_checkpoint(path)
        if "model_state" in checkpoint:
            return load_aeskconv_checkpoint(path)
        if "state_dict" in checkpoint:
            return _model_from_state(
                checkpoint["state_dict"],
                prefix=LIGHTNING_PREFIX,
                path=path,
                require_all_prefixed=False,  # a LightningModule may hold other modules too
            )
        raise ValueError(
            f"{path}: neither an AESKConv checkpoint (key 'model_state') nor a Lightning checkpoint "
            f"(key 'state_dict'); top-level keys are {sorted(checkpoint)}"
        )


def load_aeskconv_checkpoint(path: str | Path) -> MotionAutoencoder:
    """Load BEAT2's ``AESKConv_240_100.bin`` (or a file saved the same way) into a :class:`MotionAutoencoder`.

    The file holds ``{"model_state": {"module.<name>": tensor}}``. Every name must carry the prefix;
    after stripping it, every tensor of the model (encoder, decoder, ``fc_*``) must be present with
    its shape, nothing else may be, and the stored masks and pooling matrices must equal those
    rebuilt from the SMPL-X skeleton. Any violation raises ``ValueError`` naming the file.
    """
    checkpoint = load_checkpoint(path)
    if "model_state" not in checkpoint:
        raise ValueError(
            f"{path}: not an AESKConv checkpoint, no 'model_state' key (top-level keys: {sorted(checkpoint)})"
        )
    return _model_from_state(checkpoint["model_state"], prefix=AESKCONV_PREFIX, path=path, require_all_prefixed=True)


def _listing(names: Sequence[str], limit: int = 8) -> str:
    """Up to ``limit`` names, then how many more."""
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _model_from_state(
    state: Mapping[str, torch.Tensor], prefix: str, path: str | Path, require_all_prefixed: bool
) -> MotionAutoencoder:
    """Strip ``prefix``, check names and shapes against a fresh model, then load strictly."""
    unprefixed = [name for name in state if not name.startswith(prefix)]
    if require_all_prefixed and unprefixed:
        raise ValueError(f"{path}: {len(unprefixed)} tensor names lack the prefix '{prefix}': {_listing(unprefixed)}")
    tensors = {name.removeprefix(prefix): tensor for name, tensor in state.items() if name.startswith(prefix)}
    if not tensors:
        raise ValueError(f"{path}: no tensor name starts with '{prefix}' (first names: {_listing(list(state))})")

    model = MotionAutoencoder()
    expected = model.state_dict()
    missing = [name for name in expected if name not in tensors]
    unexpected = [name for name in tensors if name not in expected]
    wrong_shape = [
        f"{name} {tuple(tensors[name].shape)} (expected {tuple(expected[name].shape)})"
        for name in expected
        if name in tensors and tensors[name].shape != expected[name].shape
    ]
    problems = [
        f"{label} ({len(names)}): {_listing(names)}"
        for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape))
        if names
    ]
    if problems:
        raise ValueError(
            f"{path}: does not match the AESKConv motion autoencoder after stripping '{prefix}'; "
            + "; ".join(problems)
        )
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{path}: {error}") from error
    return model
