"""Residual vector quantisation with EMA codebooks (SPEC §5.1, §7).

A `ResidualVQ` is a stack of `EMACodebook` layers. Layer 0 quantises the encoder output,
every later layer quantises what the layers below left over (the residual); the quantised
latent is the sum of the chosen code vectors of all active layers.

Codebooks are not trained by gradients. Each training forward pass moves them towards the
mean of the vectors assigned to them with an exponential moving average (EMA):

    count_k  <- decay * count_k  + (1 - decay) * (number of vectors assigned to code k)
    sum_k    <- decay * sum_k    + (1 - decay) * (sum of the vectors assigned to code k)
    code_k    = sum_k / count_k

A code whose EMA count falls below `dead_code_threshold` is "dead" and is replaced by a
vector of the current batch. All of this state (codes, EMA sums, EMA counts, the
`initialised` flag) lives in buffers, so a checkpoint restores it exactly (the release keeps EMA
sums and counts in plain attributes: they are lost on saving, and a reloaded quantizer in training
mode re-initialises its codebook from the next batch).

Which batch vectors initialise and replace codes (`codebook_rows`): "random" rows (echomask), or
"in_order", the release's rule: code k takes the k-th vector of the batch (tokens in batch-major
order; when the batch has fewer vectors than codes they are repeated with Gaussian noise of std
0.01 / sqrt(D)). What a replaced code's EMA statistics become (`dead_code_count`): "reset" to one
sighting of its new vector (echomask: the code starts afresh), or "keep" (the release: they stay as
they were, so the code stays dead, and is replaced again, until its count climbs back over the
threshold).

Gradient (`straight_through`): every layer passes the gradient of its output to its input
unchanged. The release adds the layers' straight-through outputs, so the encoder receives the
reconstruction gradient once per active layer ("per_layer": x6 for 6 layers); "once" passes it
once, as a single straight-through estimator around the whole stack. The commitment gradient is
the same in both.

Under torch.distributed (default process group) the per-batch counts and sums are summed over
ranks before the EMA update, and every random choice (initial codes, replacement codes,
quantizer-dropout cut-off) is taken from rank 0, so all ranks hold identical codebooks.
These are collective calls: in training mode every rank must run the forward pass together
(as DDP training does); evaluation mode communicates nothing.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange
from torch import nn

DROPPED_INDEX = -1
"""Index stored for a layer that quantizer dropout switched off; it decodes to a zero vector."""

FRESH_CODE_COUNT = 1.0
"""EMA count given to a code when it is (re)initialised from a batch vector: "seen once"."""

CODEBOOK_ROWS = ("random", "in_order")
DEAD_CODE_COUNTS = ("reset", "keep")
STRAIGHT_THROUGH = ("per_layer", "once")
TILE_NOISE = 0.01
"""Std (times 1/sqrt(D)) of the noise the release adds to repeated batch vectors when a batch has fewer vectors
than codes."""


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` in place over all ranks of the default process group (no-op without one)."""
    if _distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def _take_from_rank0(tensor: torch.Tensor) -> torch.Tensor:
    """Overwrite `tensor` in place with rank 0's copy (no-op without a process group)."""
    if _distributed():
        dist.broadcast(tensor, src=0)
    return tensor


def _random_rows(vectors: torch.Tensor, count: int) -> torch.Tensor:
    """`count` random rows of `vectors` (M, D) -> (count, D), rank 0's choice on every rank.

    Rows are drawn without replacement when the batch has enough of them.
    """
    num_vectors = vectors.shape[0]
    if num_vectors >= count:
        rows = torch.randperm(num_vectors, device=vectors.device)[:count]
    else:
        rows = torch.randint(num_vectors, (count,), device=vectors.device)
    return _take_from_rank0(vectors[rows].clone())


def _rows_in_order(vectors: torch.Tensor, count: int) -> torch.Tensor:
    """The first `count` rows of `vectors` (M, D) -> (count, D), rank 0's on every rank (the release's rule).

    With fewer than `count` rows they are repeated, each copy with Gaussian noise of std TILE_NOISE / sqrt(D).
    """
    num_vectors, dim = vectors.shape
    if num_vectors < count:
        copies = vectors.repeat(-(-count // num_vectors), 1)
        vectors = copies + torch.randn_like(copies) * (TILE_NOISE / dim**0.5)
    return _take_from_rank0(vectors[:count].clone())


def _perplexity(counts: torch.Tensor) -> torch.Tensor:
    """exp(entropy) of the code histogram `counts` (K,): 1 = one code used, K = all used evenly."""
    probabilities = counts / counts.sum().clamp(min=1.0)
    entropy = -(probabilities * torch.log(probabilities.clamp(min=1e-12))).sum()
    return torch.exp(entropy)


class CodebookOutput(NamedTuple):
    """What one quantizer layer returns for M input vectors."""

    indices: torch.Tensor  # (M,) long, the chosen code of each vector
    codes: torch.Tensor  # (M, D), the chosen code vectors (before this step's EMA update)
    counts: torch.Tensor  # (K,) float, how often each code was chosen (summed over ranks in training)
    num_reset: int  # dead codes replaced in this step


class EMACodebook(nn.Module):
    """One vector-quantizer layer with an EMA-updated codebook (SPEC §5.1).

    Args:
        codebook_size: number of codes K.
        code_dim: dimension D of each code.
        decay: EMA decay of counts and sums.
        dead_code_threshold: codes with EMA count below this are replaced by batch vectors
            (0 switches replacement off).
        temperature: Gumbel temperature for the code choice in training; 0 means argmin.
            Evaluation always uses argmin.
        codebook_rows: which batch vectors initialise and replace codes, "random" or "in_order" (the release).
        dead_code_count: a replaced code's EMA statistics, "reset" or "keep" (the release).
        eps: lower bound of the EMA count when dividing the EMA sum by it.
    """

    def __init__(
        self,
        codebook_size: int = 256,  # paper: 256 codes
        code_dim: int = 256,  # paper: 256 dims
        decay: float = 0.99,  # paper
        dead_code_threshold: float = 1.0,  # paper: EMA count < 1 is dead
        temperature: float = 0.5,  # paper: Gumbel temperature in training
        codebook_rows: str = "random",
        dead_code_count: str = "reset",
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        _check_choice("codebook_rows", codebook_rows, CODEBOOK_ROWS)
        _check_choice("dead_code_count", dead_code_count, DEAD_CODE_COUNTS)
        if codebook_size < 1 or code_dim < 1:
            raise ValueError(f"codebook_size and code_dim must be positive, got {codebook_size} and {code_dim}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        if dead_code_threshold < 0.0:
            raise ValueError(f"dead_code_threshold must be >= 0, got {dead_code_threshold}")
        if temperature < 0.0:
            raise ValueError(f"temperature must be >= 0 (0 = argmin), got {temperature}")
        self.codebook_size = codebook_size
        self.code_dim = code_dim
        self.decay = decay
        self.dead_code_threshold = dead_code_threshold
        self.temperature = temperature
        self.codebook_rows = codebook_rows
        self.dead_code_count = dead_code_count
        self.eps = eps
        # Random codes until the first training batch replaces them (so evaluation before
        # training, e.g. Lightning's sanity check, runs on a well-defined codebook).
        self.register_buffer("codebook", torch.randn(codebook_size, code_dim))
        self.register_buffer("ema_sum", self.codebook.clone() * FRESH_CODE_COUNT)
        self.register_buffer("ema_count", torch.full((codebook_size,), FRESH_CODE_COUNT))
        self.register_buffer("initialised", torch.tensor(False))

    def extra_repr(self) -> str:
        return (
            f"codebook_size={self.codebook_size}, code_dim={self.code_dim}, decay={self.decay}, "
            f"dead_code_threshold={self.dead_code_threshold}, temperature={self.temperature}, "
            f"codebook_rows={self.codebook_rows}, dead_code_count={self.dead_code_count}"
        )

    def squared_distances(self, vectors: torch.Tensor) -> torch.Tensor:
        """Squared Euclidean distance of every vector (M, D) to every code -> (M, K)."""
        return (
            vectors.pow(2).sum(-1, keepdim=True)
            - 2.0 * vectors @ self.codebook.t()
            + self.codebook.pow(2).sum(-1)
        )

    def choose_codes(self, vectors: torch.Tensor) -> torch.Tensor:
        """Code index per vector (M, D) -> (M,): Gumbel sampling on -distance in training, argmin otherwise."""
        distances = self.squared_distances(vectors)
        if self.training and self.temperature > 0.0:
            gumbel_noise = -torch.empty_like(distances).exponential_().log()
            return torch.argmax(-distances / self.temperature + gumbel_noise, dim=-1)
        return torch.argmin(distances, dim=-1)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Code vectors for `indices` (...) -> (..., D); `DROPPED_INDEX` gives a zero vector."""
        if indices.numel() and (indices.min() < DROPPED_INDEX or indices.max() >= self.codebook_size):
            raise ValueError(
                f"code indices must lie in [0, {self.codebook_size}) or be {DROPPED_INDEX} (dropped layer), "
                f"got values in [{int(indices.min())}, {int(indices.max())}]"
            )
        kept = (indices != DROPPED_INDEX).unsqueeze(-1)
        return F.embedding(indices.clamp(min=0), self.codebook) * kept

    def forward(self, vectors: torch.Tensor) -> CodebookOutput:
        """Quantise `vectors` (M, D); in training also initialise / EMA-update / reset the codebook."""
        if vectors.ndim != 2 or vectors.shape[-1] != self.code_dim:
            raise ValueError(
                f"EMACodebook expects vectors of shape (M, {self.code_dim}), got {tuple(vectors.shape)}"
            )
        vectors = vectors.detach()
        first_batch = self.training and not bool(self.initialised)
        if first_batch:
            self._initialise_from(vectors)
        indices = self.choose_codes(vectors)
        codes = self.lookup(indices)
        counts, sums = self._batch_statistics(vectors, indices)
        num_reset = 0
        if self.training:
            _sum_over_ranks(counts)
            _sum_over_ranks(sums)
            if not first_batch:
                self._ema_update(counts, sums)
                num_reset = self._reset_dead_codes(vectors)
        return CodebookOutput(indices=indices, codes=codes, counts=counts, num_reset=num_reset)

    def _batch_statistics(self, vectors: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-code count (K,) and sum of assigned vectors (K, D) of this batch (deterministic matmul)."""
        assignment = F.one_hot(indices, self.codebook_size).to(vectors.dtype)  # (M, K)
        return assignment.sum(0), assignment.t() @ vectors

    def _batch_rows(self, vectors: torch.Tensor, count: int) -> torch.Tensor:
        """`count` vectors of the batch chosen by `codebook_rows`."""
        return _rows_in_order(vectors, count) if self.codebook_rows == "in_order" else _random_rows(vectors, count)

    @torch.no_grad()
    def _initialise_from(self, vectors: torch.Tensor) -> None:
        codes = self._batch_rows(vectors, self.codebook_size)
        self.codebook.copy_(codes)
        self.ema_sum.copy_(codes * FRESH_CODE_COUNT)
        self.ema_count.fill_(FRESH_CODE_COUNT)
        self.initialised.fill_(True)

    @torch.no_grad()
    def _ema_update(self, counts: torch.Tensor, sums: torch.Tensor) -> None:
        self.ema_count.mul_(self.decay).add_(counts, alpha=1.0 - self.decay)
        self.ema_sum.mul_(self.decay).add_(sums, alpha=1.0 - self.decay)
        self.codebook.copy_(self.ema_sum / self.ema_count.clamp(min=self.eps).unsqueeze(-1))

    @torch.no_grad()
    def _reset_dead_codes(self, vectors: torch.Tensor) -> int:
        """Replace codes whose EMA count is below the threshold by batch vectors; return how many."""
        dead = self.ema_count < self.dead_code_threshold
        num_dead = int(dead.sum())
        if num_dead:
            replacements = self._batch_rows(vectors, self.codebook_size)[dead]  # in order: dead code k takes vector k
            self.codebook[dead] = replacements
            if self.dead_code_count == "reset":
                self.ema_sum[dead] = replacements * FRESH_CODE_COUNT
                self.ema_count[dead] = FRESH_CODE_COUNT
        return num_dead


class ResidualVQ(nn.Module):
    """A stack of `EMACodebook` layers quantising successive residuals (SPEC §5.1).

    Args:
        num_quantizers: number of layers L.
        codebook_size, code_dim, decay, dead_code_threshold, temperature, codebook_rows, dead_code_count, eps:
            per layer, see `EMACodebook`. Layers do not share codebooks.
        quantizer_dropout: probability that a training batch uses only the layers below a
            random cut-off (1 <= active layers < L, the same for the whole batch).
        straight_through: "per_layer" (the release: the encoder gets the reconstruction gradient once per
            active layer) or "once".
    """

    def __init__(
        self,
        num_quantizers: int = 6,  # paper: 6 layers
        codebook_size: int = 256,  # paper
        code_dim: int = 256,  # paper
        decay: float = 0.99,  # paper
        dead_code_threshold: float = 1.0,  # paper
        temperature: float = 0.5,  # paper
        quantizer_dropout: float = 0.2,  # paper (switched off by accident in its release)
        straight_through: str = "per_layer",  # release
        codebook_rows: str = "random",
        dead_code_count: str = "reset",
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        _check_choice("straight_through", straight_through, STRAIGHT_THROUGH)
        if num_quantizers < 1:
            raise ValueError(f"num_quantizers must be >= 1, got {num_quantizers}")
        if not 0.0 <= quantizer_dropout <= 1.0:
            raise ValueError(f"quantizer_dropout is a probability in [0, 1], got {quantizer_dropout}")
        self.num_quantizers = num_quantizers
        self.codebook_size = codebook_size
        self.code_dim = code_dim
        self.quantizer_dropout = quantizer_dropout
        self.straight_through = straight_through
        self.codebooks = nn.ModuleList(
            EMACodebook(
                codebook_size=codebook_size,
                code_dim=code_dim,
                decay=decay,
                dead_code_threshold=dead_code_threshold,
                temperature=temperature,
                codebook_rows=codebook_rows,
                dead_code_count=dead_code_count,
                eps=eps,
            )
            for _ in range(num_quantizers)
        )

    def forward(
        self, latents: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Quantise encoder output `latents` (B, N, D).

        Returns:
            quantized: (B, N, D), the sum of the active layers' codes, with a straight-through
                gradient to `latents` (times the number of active layers with "per_layer").
            indices: (B, N, L) long; `DROPPED_INDEX` for layers quantizer dropout switched off.
            commitment: scalar, mean over active layers of MSE(residual, its code); unweighted.
            stats: per layer (L,) tensors: `active` (bool), `usage` (fraction of codes used in
                this batch), `perplexity` (exp entropy of the code histogram), `dead_code_resets`.
                Usage and perplexity are NaN for inactive layers. In training they count all ranks.
        """
        if latents.ndim != 3 or latents.shape[-1] != self.code_dim:
            raise ValueError(
                f"ResidualVQ expects latents of shape (B, N, {self.code_dim}), got {tuple(latents.shape)}"
            )
        batch_size, num_tokens, _ = latents.shape
        # Distances and EMA statistics need full precision even under mixed-precision training.
        with torch.autocast(device_type=latents.device.type, enabled=False):
            flat = rearrange(latents, "b n d -> (b n) d").float()
            num_active = self._draw_num_active_layers(flat.device)
            residual = flat
            quantized = torch.zeros_like(flat)
            indices = torch.full(
                (flat.shape[0], self.num_quantizers), DROPPED_INDEX, dtype=torch.long, device=flat.device
            )
            commitment_terms = []
            stats = self._empty_stats(flat.device)
            for layer, codebook in enumerate(self.codebooks[:num_active]):
                step = codebook(residual)
                commitment_terms.append(F.mse_loss(residual, step.codes))
                residual = residual - step.codes
                quantized = quantized + step.codes
                indices[:, layer] = step.indices
                stats["active"][layer] = True
                stats["usage"][layer] = (step.counts > 0).float().mean()
                stats["perplexity"][layer] = _perplexity(step.counts)
                stats["dead_code_resets"][layer] = step.num_reset
            gradient_scale = num_active if self.straight_through == "per_layer" else 1
            passed_through = gradient_scale * flat + (quantized - gradient_scale * flat).detach()
        quantized_out = rearrange(passed_through, "(b n) d -> b n d", b=batch_size).to(latents.dtype)
        indices = rearrange(indices, "(b n) l -> b n l", b=batch_size, n=num_tokens)
        commitment = torch.stack(commitment_terms).mean()
        return quantized_out, indices, commitment, stats

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Per-layer code vectors of `indices` (B, N, L) -> (L, B, N, D); dropped layers give zeros."""
        self._check_indices(indices)
        return torch.stack([codebook.lookup(indices[..., layer]) for layer, codebook in enumerate(self.codebooks)])

    def codes_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Quantised latent of `indices` (B, N, L) -> (B, N, D): the sum over layers of their codes."""
        return self.indices_to_codes(indices).sum(0)

    def _check_indices(self, indices: torch.Tensor) -> None:
        if indices.ndim != 3 or indices.shape[-1] != self.num_quantizers:
            raise ValueError(f"indices must have shape (B, N, {self.num_quantizers}), got {tuple(indices.shape)}")
        if indices.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"indices must be an integer tensor, got {indices.dtype}")

    def _draw_num_active_layers(self, device: torch.device) -> int:
        """L, or with probability `quantizer_dropout` in training a random cut-off in [1, L) (rank 0's draw)."""
        if not self.training or self.quantizer_dropout == 0.0 or self.num_quantizers == 1:
            return self.num_quantizers
        drop = torch.rand((), device=device) < self.quantizer_dropout
        cut_off = torch.randint(1, self.num_quantizers, (), device=device)
        num_active = torch.where(drop, cut_off, torch.full_like(cut_off, self.num_quantizers))
        return int(_take_from_rank0(num_active))

    def _empty_stats(self, device: torch.device) -> dict[str, torch.Tensor]:
        layers = self.num_quantizers
        return {
            "active": torch.zeros(layers, dtype=torch.bool, device=device),
            "usage": torch.full((layers,), float("nan"), device=device),
            "perplexity": torch.full((layers,), float("nan"), device=device),
            "dead_code_resets": torch.zeros(layers, device=device),
        }
