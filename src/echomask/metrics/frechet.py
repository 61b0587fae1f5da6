"""Fréchet Gesture Distance (FGD) between ground-truth and generated motion features (SPEC §8.1).

``FGD = |μ_r - μ_g|² + tr Σ_r + tr Σ_g - 2 tr sqrtm(Σ_r Σ_g)`` with ``N - 1`` covariances. Every latent vector is
one sample (no pooling): with an encoder, a ``(B, T, 330)`` motion batch cropped to a multiple of 32 frames
becomes ``B · T / 16`` samples of 240 dimensions.

The matrix square root follows one of two reference rules (``protocol``):

* ``"paper"`` (the code behind the EMAGE paper numbers): ``sqrtm(Σ_r Σ_g)``; only when it returns a non-finite
  entry are ``1e-6 · I`` added to both covariances and the root recomputed; a complex result whose diagonal has an
  imaginary part above ``1e-3`` is an error (the reference caught it and reported the sentinel 1e10; here it
  raises), otherwise its real part is used;
* ``"clean"`` (the later release): always ``sqrtm((Σ_r + 1e-6 I)(Σ_g + 1e-6 I))``, real part.

In both rules the traces are those of the unregularised covariances.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg
import torch
from einops import rearrange
from torch import Tensor, nn
from torchmetrics import Metric

PROTOCOLS = ("paper", "clean")
SQRTM_EPS = 1e-6  # both reference releases regularise the covariances with 1e-6 · I
MAX_DIAGONAL_IMAG = 1e-3  # paper rule: a larger imaginary diagonal part of sqrtm is an error


def frechet_distance(
    mean_a: np.ndarray,
    cov_a: np.ndarray,
    mean_b: np.ndarray,
    cov_b: np.ndarray,
    protocol: str = "paper",
) -> float:
    """Fréchet distance between the Gaussians ``N(mean_a, cov_a)`` and ``N(mean_b, cov_b)``.

    Args:
        mean_a, mean_b: ``(D,)`` means.
        cov_a, cov_b: ``(D, D)`` covariances.
        protocol: the square-root rule, ``"paper"`` or ``"clean"`` (module docstring).

    Returns:
        The raw distance (the paper prints it ×10).
    """
    regulariser = SQRTM_EPS * np.eye(cov_a.shape[0])
    if protocol == "paper":
        root = scipy.linalg.sqrtm(cov_a @ cov_b)
        if not np.all(np.isfinite(root)):
            root = scipy.linalg.sqrtm((cov_a + regulariser) @ (cov_b + regulariser))
        if np.iscomplexobj(root):
            largest_imag = np.abs(np.diagonal(root).imag).max()
            if largest_imag > MAX_DIAGONAL_IMAG:
                raise ValueError(
                    f"FGD: sqrtm(cov_real @ cov_generated) has imaginary diagonal parts up to {largest_imag:.3g} "
                    f"(> {MAX_DIAGONAL_IMAG}); the covariances are too ill-conditioned (the paper-era code "
                    "reported 1e10 here)"
                )
    elif protocol == "clean":
        root = scipy.linalg.sqrtm((cov_a + regulariser) @ (cov_b + regulariser))
    else:
        raise ValueError(f"FGD: protocol must be one of {PROTOCOLS}, got {protocol!r}")
    mean_term = float(np.sum((mean_a - mean_b) ** 2))
    return mean_term + float(np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root.real))


class FrechetGestureDistance(Metric):
    """FGD (SPEC §8.1) from float64 running sums, so memory is O(D²) and DDP is one all-reduce.

    Args:
        feature_dim: ``D``, the size of one feature vector (§8.1: 240).
        encoder: optional frozen feature extractor mapping motion ``(B, T, motion_dim)`` to ``(B, T / 16, D)``
            (the AESKConv encoder of §8.2). Without it :meth:`update` takes features ``(N, D)``.
        protocol: ``"paper"`` or ``"clean"`` square-root rule (module docstring).
        encoder_name: which checkpoint produced the features; reported next to every FGD number
            (:meth:`describe`).
        motion_dim: channels of the motion given to the encoder (§8.1: 55 joints × 6D = 330).
        crop_multiple: the motion is cropped to a multiple of this many frames before encoding (§8.1: 32).

    Example:
        >>> fgd = FrechetGestureDistance(encoder=encoder, encoder_name="AESKConv_240_100")  # doctest: +SKIP
        >>> fgd.update(gt_motion, real=True)  # (B, T, 330)                     # doctest: +SKIP
        >>> fgd.update(generated, real=False)                                   # doctest: +SKIP
        >>> fgd.compute()  # raw; the paper prints ×10                          # doctest: +SKIP
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False
    plot_lower_bound = 0.0

    real_sum: Tensor
    real_outer_sum: Tensor
    real_count: Tensor
    fake_sum: Tensor
    fake_outer_sum: Tensor
    fake_count: Tensor

    def __init__(
        self,
        feature_dim: int = 240,  # §8.1
        encoder: nn.Module | None = None,
        protocol: str = "paper",
        encoder_name: str = "unknown",
        motion_dim: int = 330,  # §8.1: 55 joints × 6D rotation
        crop_multiple: int = 32,  # §8.1
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(feature_dim, int) or feature_dim < 1:
            raise ValueError(f"FrechetGestureDistance: feature_dim must be a positive integer, got {feature_dim!r}")
        if encoder is not None and not isinstance(encoder, nn.Module):
            raise ValueError(
                f"FrechetGestureDistance: encoder must be a torch.nn.Module or None, got {type(encoder).__name__}"
            )
        if protocol not in PROTOCOLS:
            raise ValueError(f"FrechetGestureDistance: protocol must be one of {PROTOCOLS}, got {protocol!r}")
        if not isinstance(encoder_name, str) or not encoder_name:
            raise ValueError("FrechetGestureDistance: encoder_name must be a non-empty string")
        for name, value in (("motion_dim", motion_dim), ("crop_multiple", crop_multiple)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"FrechetGestureDistance: {name} must be a positive integer, got {value!r}")

        self.feature_dim = feature_dim
        self.protocol = protocol
        self.encoder_name = encoder_name
        self.motion_dim = motion_dim
        self.crop_multiple = crop_multiple
        self.encoder = encoder
        if encoder is not None:
            encoder.eval().requires_grad_(False)

        for side in ("real", "fake"):
            self.add_state(f"{side}_sum", torch.zeros(feature_dim, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(
                f"{side}_outer_sum", torch.zeros(feature_dim, feature_dim, dtype=torch.float64), dist_reduce_fx="sum"
            )
            self.add_state(f"{side}_count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def train(self, mode: bool = True) -> FrechetGestureDistance:
        """Switch the metric's mode but keep the frozen encoder in eval mode."""
        super().train(mode)
        if self.encoder is not None:
            self.encoder.eval()
        return self

    def describe(self) -> dict[str, object]:
        """What produced the number: feature extractor, protocol and feature size (report it next to FGD)."""
        return {"encoder_name": self.encoder_name, "protocol": self.protocol, "feature_dim": self.feature_dim}

    def update(self, x: Tensor, real: bool) -> None:
        """Add features or motion of the real (ground-truth) or the generated set.

        Args:
            x: features ``(N, feature_dim)`` without an encoder; motion ``(B, T, motion_dim)`` with one (cropped to
                a multiple of ``crop_multiple`` frames, every latent vector is one sample).
            real: ``True`` for ground truth, ``False`` for generated motion.
        """
        if not isinstance(real, bool):
            raise ValueError(f"FrechetGestureDistance.update: real must be a bool, got {type(real).__name__}")
        features = self._features(x).to(torch.float64)
        if real:
            self.real_sum += features.sum(dim=0)
            self.real_outer_sum += features.T @ features
            self.real_count += features.shape[0]
        else:
            self.fake_sum += features.sum(dim=0)
            self.fake_outer_sum += features.T @ features
            self.fake_count += features.shape[0]

    def _features(self, x: Tensor) -> Tensor:
        """``(N, feature_dim)`` samples from the input of :meth:`update`."""
        if self.encoder is None:
            if x.ndim != 2 or x.shape[1] != self.feature_dim:
                raise ValueError(
                    f"FrechetGestureDistance.update: expected features of shape (N, {self.feature_dim}), "
                    f"got {tuple(x.shape)}"
                )
            if not torch.isfinite(x).all():
                raise ValueError("FrechetGestureDistance.update: the features contain NaN or Inf")
            return x
        if x.ndim != 3 or x.shape[2] != self.motion_dim:
            raise ValueError(
                f"FrechetGestureDistance.update: expected motion of shape (B, T, {self.motion_dim}), "
                f"got {tuple(x.shape)}"
            )
        if not torch.isfinite(x).all():
            raise ValueError("FrechetGestureDistance.update: the motion contains NaN or Inf")
        usable_frames = x.shape[1] - x.shape[1] % self.crop_multiple
        if usable_frames == 0:
            raise ValueError(
                f"FrechetGestureDistance.update: {x.shape[1]} frames are fewer than the {self.crop_multiple} "
                "the encoder needs"
            )
        with torch.no_grad():
            latents = self.encoder(x[:, :usable_frames])
        if latents.ndim != 3 or latents.shape[2] != self.feature_dim:
            raise ValueError(
                f"FrechetGestureDistance: the encoder returned shape {tuple(latents.shape)}, expected "
                f"(B, T / 16, {self.feature_dim})"
            )
        return rearrange(latents, "batch windows dim -> (batch windows) dim")

    def compute(self) -> Tensor:
        """The raw FGD between the real and the generated feature sets (float64 scalar)."""
        real_count, fake_count = int(self.real_count), int(self.fake_count)
        if real_count < 2 or fake_count < 2:
            raise ValueError(
                "FrechetGestureDistance.compute: at least 2 feature vectors per set are needed for a covariance, "
                f"got {real_count} real and {fake_count} generated"
            )
        mean_real, cov_real = _mean_and_covariance(self.real_sum, self.real_outer_sum, real_count)
        mean_fake, cov_fake = _mean_and_covariance(self.fake_sum, self.fake_outer_sum, fake_count)
        distance = frechet_distance(mean_real, cov_real, mean_fake, cov_fake, protocol=self.protocol)
        return torch.tensor(distance, dtype=torch.float64, device=self.real_sum.device)


def _mean_and_covariance(total: Tensor, outer_total: Tensor, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and ``N - 1`` covariance ``(D, D)`` (float64 NumPy) from running sums."""
    total = total.detach().cpu().numpy()
    mean = total / count
    covariance = (outer_total.detach().cpu().numpy() - np.outer(total, mean)) / (count - 1)
    return mean, covariance
