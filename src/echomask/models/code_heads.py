"""The RVQ code heads of the released EchoMask: one per body part (issue 15 U1, U11).

For a part's fused base latent z (B, N, d) and its speech features c_p (B, T, d):

- layer 0: the regressed code vector is z itself; its logits are ``MLP_0(z)`` (hidden 768, U11);
- layer k >= 1: the decoder input is x_1 = z for k = 1, else ``Linear_k([z ; v_1 ; … ; v_{k-1}])`` (k·d -> d);
  the code vector is v_k = decoder_k(x_k, memory = c_p) + x_k (3 layers, d 256, 8 heads, ff 1024) and its
  logits are ``MLP_k(v_k)`` (hidden 256).

Every layer reads only what the layers below REGRESSED, never ground-truth or looked-up codes (no teacher
forcing): training and inference compute the same thing, and a forward pass needs no stage-1 codebook.

The memory c_p is the same for every pass of a training step: :meth:`memory_kv` projects it for all (L − 1) × 3
cross-attentions once, and ``forward(…, kv=…)`` reads those.
"""

from __future__ import annotations

import torch
from torch import nn

from echomask.models.attention import Decoder, KeyValue
from echomask.models.part_stack import Linear
from echomask.models.transformer_blocks import mlp


class ResidualCodeHead(nn.Module):
    """forward(base latent (B, N, d), speech (B_m, T, d) or its ``kv``) -> (logits (B, N, L, K), code vectors
    (B, L, N, d)). B may be a multiple of B_m (rows tile: row i reads speech row i mod B_m)."""

    def __init__(
        self,
        latent_dim: int = 256,  # release: vae_codebook_size (the code size)
        codebook_size: int = 256,  # release
        num_layers: int = 6,  # RVQ layers (release: 6)
        base_classifier_hidden: int = 768,  # layer-0 classifier hidden size (release: hidden_size)
        classifier_hidden: int = 256,  # layers >= 1 (release: 256)
        decoder_layers: int = 3,  # release
        num_heads: int = 8,  # release
        dim_feedforward: int = 1024,  # release
        dropout: float = 0.1,  # release
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"ResidualCodeHead needs at least one RVQ layer, got num_layers={num_layers}")
        self.num_layers = num_layers
        self.classifiers = nn.ModuleList(
            [mlp(latent_dim, codebook_size, base_classifier_hidden)]
            + [mlp(latent_dim, codebook_size, classifier_hidden) for _ in range(num_layers - 1)]
        )
        self.decoders = nn.ModuleList(
            Decoder(latent_dim, num_heads, dim_feedforward, decoder_layers, dropout)
            for _ in range(num_layers - 1)
        )
        # merges[j] reads [z ; v_1 ; … ; v_{j+1}] for RVQ layer j + 2
        self.merges = nn.ModuleList(Linear((count + 2) * latent_dim, latent_dim) for count in range(num_layers - 2))

    def memory_kv(self, speech: torch.Tensor) -> list[list[KeyValue]]:
        """Keys and values of the speech (B, T, d) for every cascade decoder and layer."""
        return [decoder.memory_kv(speech) for decoder in self.decoders]

    def forward(
        self, base: torch.Tensor, speech: torch.Tensor | None = None, kv: list[list[KeyValue]] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if kv is None:
            if speech is None:
                raise ValueError("ResidualCodeHead needs the speech features or their keys and values")
            kv = self.memory_kv(speech)
        vectors = [base]
        for layer, (decoder, decoder_kv) in enumerate(zip(self.decoders, kv), start=1):
            inputs = base if layer == 1 else self.merges[layer - 2](torch.cat(vectors, dim=-1))
            vectors.append(decoder(inputs, kv=decoder_kv) + inputs)
        logits = [classifier(vector) for classifier, vector in zip(self.classifiers, vectors)]
        return torch.stack(logits, dim=-2), torch.stack(vectors, dim=-3)
