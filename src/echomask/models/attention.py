"""Post-norm transformer layers computed by ``F.scaled_dot_product_attention``, with torch's parameter names.

:class:`Attention`, :class:`EncoderLayer` and :class:`DecoderLayer` compute what ``nn.MultiheadAttention``,
``nn.TransformerEncoderLayer`` and ``nn.TransformerDecoderLayer`` compute (post-norm, ReLU, batch-first) and name
their parameters the same way (``self_attn.in_proj_weight``, ``multihead_attn.out_proj.bias``, ``linear1``,
``norm3``, …), so state dicts, the release's key map and checkpoints read them unchanged. What they add:

- every attention runs through ``scaled_dot_product_attention`` (torch's fused CPU/GPU kernels), with the
  attention weights computed only when a caller reads them (:meth:`Decoder.cross_attention_weights`);
- keys and values of a FIXED memory (one that several passes or query rows read) are projected once:
  :meth:`Decoder.memory_kv` projects a memory for all of a stack's layers, and the result is passed as ``kv=``
  instead of the memory. Memory rows tile over query rows: query row i reads memory row i mod B_m
  (e.g. three parts' queries stacked as ``(p b)`` against one ``(b)`` memory; the same numbers as repeating the
  memory, without projecting it again);
- :meth:`DecoderLayer.self_block` (the first sub-layer, which reads only the target) can run once for a target
  that several decoder calls share: ``Decoder(…, self_attended=True)`` then starts at the first cross-attention.

Every linear map and layer norm also runs with stacked per-part weights (models/part_stack.py): a module whose
parameters carry a leading part axis runs all parts at once on (P, B, T, d) inputs.

Dropout (training only) is drawn where torch draws it: on the attention weights, after each sub-layer and inside
the feed-forward; a shared piece of work draws its dropout once for all its readers.

Shapes are batch-first: (B, T, d).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from echomask.models.part_stack import LayerNorm, Linear, linear

KeyValue = tuple[torch.Tensor, torch.Tensor]  # keys, values (B_m, heads, T_k, d / heads)


class Attention(nn.Module):
    """Multi-head attention with ``nn.MultiheadAttention``'s parameters: ``in_proj_weight`` (3d, d) holding the
    query, key and value projections, ``in_proj_bias`` (3d,), ``out_proj`` (d -> d). Dropout on the weights."""

    def __init__(self, d_model: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"Attention: d_model={d_model} is not a multiple of num_heads={num_heads}")
        self.d_model = d_model
        self.num_heads = num_heads
        self.dropout = dropout
        # the creation and initialisation order of nn.MultiheadAttention (same draws for the same seed)
        self.out_proj = Linear(d_model, d_model)
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d_model, d_model))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * d_model))
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.bias)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, num_heads={self.num_heads}, dropout={self.dropout}"

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d) -> (B, heads, T, d / heads) (a view; einops' parsing costs more than these small matmuls)."""
        return x.unflatten(-1, (self.num_heads, -1)).transpose(-2, -3)

    def kv_projection(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(2d, d) weight and (2d,) bias of the key and value projections (stacked: (P, 2d, d), (P, 2d))."""
        return self.in_proj_weight[..., self.d_model :, :], self.in_proj_bias[..., self.d_model :]

    def split_kv(self, projected: torch.Tensor) -> KeyValue:
        """(B, T, 2d) projected memory -> keys, values (B, heads, T, d / heads)."""
        keys, values = projected.chunk(2, dim=-1)
        return self._heads(keys), self._heads(values)

    def memory_kv(self, memory: torch.Tensor) -> KeyValue:
        """Project a memory (B, T, d) to this attention's keys and values once."""
        return self.split_kv(linear(memory, *self.kv_projection()))

    def _project(
        self, query: torch.Tensor, memory: torch.Tensor | None, kv: KeyValue | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values (..., B, heads, T, d / heads); memory rows tiled over the query rows."""
        if memory is None and kv is None:
            projected = linear(query, self.in_proj_weight, self.in_proj_bias)
            return tuple(map(self._heads, projected.chunk(3, dim=-1)))
        d = self.d_model
        queries = linear(query, self.in_proj_weight[..., :d, :], self.in_proj_bias[..., :d])
        keys, values = kv if kv is not None else self.memory_kv(memory)
        copies, remainder = divmod(query.shape[-3], keys.shape[-4])
        if remainder:
            raise ValueError(f"Attention: {query.shape[-3]} query rows do not tile {keys.shape[-4]} memory rows")
        if copies > 1:
            tiling = (1,) * (keys.ndim - 4) + (copies, 1, 1, 1)
            keys, values = keys.repeat(tiling), values.repeat(tiling)
        return self._heads(queries), keys, values

    @staticmethod
    def _softmax_weights(queries: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        logits = queries @ keys.transpose(-1, -2) / math.sqrt(queries.shape[-1])
        if mask is not None:
            logits = logits.masked_fill(mask, float("-inf"))
        return logits.softmax(dim=-1)

    def weights(
        self,
        query: torch.Tensor,
        memory: torch.Tensor | None = None,
        kv: KeyValue | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The attention weights alone (B, heads, T_q, T_k), before dropout; no values, no output projection."""
        queries, keys, _ = self._project(query, memory, kv)
        return self._softmax_weights(queries, keys, mask)

    def forward(
        self,
        query: torch.Tensor,
        memory: torch.Tensor | None = None,
        kv: KeyValue | None = None,
        mask: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """query (B, T_q, d); memory (B_m, T_k, d) or its ``kv`` (:meth:`memory_kv`); neither: self-attention.
        B must be a multiple of B_m (rows tile, module docstring). mask (T_q, T_k) bool, True = NOT attended
        (torch's convention). Returns (output (B, T_q, d), weights (B, heads, T_q, T_k) before dropout, or None)."""
        queries, keys, values = self._project(query, memory, kv)
        dropout = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            weights = self._softmax_weights(queries, keys, mask)
            attended = F.dropout(weights, dropout, self.training) @ values
        else:
            # leading axes (stacked parts) folded into the batch: the fused kernels take (B, heads, T, e)
            lead = queries.shape[:-3]
            queries, keys, values = (x.reshape(-1, *x.shape[-3:]) for x in (queries, keys, values))
            allowed = None if mask is None else ~mask
            attended = F.scaled_dot_product_attention(queries, keys, values, attn_mask=allowed, dropout_p=dropout)
            attended = attended.view(*lead, *attended.shape[-3:])
        return self.out_proj(attended.transpose(-2, -3).flatten(-2)), weights


class PostNormLayer(nn.Module):
    """The feed-forward sub-layer's parameters (torch's names) and maths, shared by the encoder and decoder layers."""

    def __init__(self, d_model: int, dim_feedforward: int, dropout: float) -> None:
        super().__init__()
        self.linear1 = Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model)

    def feedforward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(F.relu(self.linear1(x))))


class EncoderLayer(PostNormLayer):
    """``nn.TransformerEncoderLayer`` (post-norm, ReLU, batch-first): (B, T, d) -> (B, T, d)."""

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int, dropout: float) -> None:
        self_attn = Attention(d_model, num_heads, dropout)  # created first, as torch does (same draws)
        super().__init__(d_model, dim_feedforward, dropout)
        self.self_attn = self_attn
        self.norm1 = LayerNorm(d_model)
        self.norm2 = LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout1(self.self_attn(x)[0]))
        return self.norm2(x + self.dropout2(self.feedforward(x)))


class DecoderLayer(PostNormLayer):
    """``nn.TransformerDecoderLayer`` (post-norm, ReLU, batch-first): target (B, T_q, d), memory (B_m, T_k, d)
    or its keys/values -> (B, T_q, d)."""

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int, dropout: float) -> None:
        self_attn = Attention(d_model, num_heads, dropout)  # created first, as torch does (same draws)
        multihead_attn = Attention(d_model, num_heads, dropout)
        super().__init__(d_model, dim_feedforward, dropout)
        self.self_attn = self_attn
        self.multihead_attn = multihead_attn
        self.norm1 = LayerNorm(d_model)
        self.norm2 = LayerNorm(d_model)
        self.norm3 = LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def self_block(self, target: torch.Tensor) -> torch.Tensor:
        """The self-attention sub-layer alone (it reads only the target)."""
        return self.norm1(target + self.dropout1(self.self_attn(target)[0]))

    def cross_block(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None,
        kv: KeyValue | None,
        memory_mask: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The cross-attention and feed-forward sub-layers, after :meth:`self_block`: (output, cross-attention
        weights or None)."""
        attended, weights = self.multihead_attn(x, memory, kv, memory_mask, need_weights)
        x = self.norm2(x + self.dropout2(attended))
        return self.norm3(x + self.dropout3(self.feedforward(x))), weights

    def forward(
        self,
        target: torch.Tensor,
        memory: torch.Tensor | None = None,
        kv: KeyValue | None = None,
        memory_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.cross_block(self.self_block(target), memory, kv, memory_mask)[0]


class Encoder(nn.Module):
    """``num_layers`` deep copies of one :class:`EncoderLayer` (as ``nn.TransformerEncoder``: they start equal)."""

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        layer = EncoderLayer(d_model, num_heads, dim_feedforward, dropout)
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class Decoder(nn.Module):
    """``num_layers`` deep copies of one :class:`DecoderLayer` (as ``nn.TransformerDecoder``: they start equal).

    forward(target (B, T_q, d), memory (B_m, T_k, d) or kv = :meth:`memory_kv` (memory), memory_mask,
    self_attended) -> (B, T_q, d). ``self_attended=True``: the target has been through the first layer's
    :meth:`DecoderLayer.self_block` already.
    """

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        layer = DecoderLayer(d_model, num_heads, dim_feedforward, dropout)
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))

    def memory_kv(self, memory: torch.Tensor) -> list[KeyValue]:
        """Every layer's keys and values of ``memory`` (B, T, d). (One matmul over all layers' concatenated
        projections would copy their weights at every call: more memory traffic than it saves.)"""
        return [layer.multihead_attn.memory_kv(memory) for layer in self.layers]

    def _memories(self, memory: torch.Tensor | None, kv: list[KeyValue] | None) -> list[KeyValue]:
        if kv is None:
            if memory is None:
                raise ValueError("Decoder needs a memory or its keys and values")
            kv = self.memory_kv(memory)
        if len(kv) != len(self.layers):
            raise ValueError(f"Decoder: {len(kv)} key/value pairs for {len(self.layers)} layers")
        return kv

    def forward(
        self,
        target: torch.Tensor,
        memory: torch.Tensor | None = None,
        kv: list[KeyValue] | None = None,
        memory_mask: torch.Tensor | None = None,
        self_attended: bool = False,
    ) -> torch.Tensor:
        x = target
        for index, (layer, layer_kv) in enumerate(zip(self.layers, self._memories(memory, kv))):
            if index or not self_attended:
                x = layer.self_block(x)
            x = layer.cross_block(x, None, layer_kv, memory_mask)[0]
        return x

    def cross_attention_weights(
        self,
        target: torch.Tensor,
        memory: torch.Tensor | None = None,
        kv: list[KeyValue] | None = None,
        self_attended: bool = False,
    ) -> torch.Tensor:
        """(L, B, heads, T_q, T_k): the cross-attention weights of every layer, without the work after the last
        layer's weights (its values, output projection and feed-forward)."""
        all_weights = []
        x = target
        memories = self._memories(memory, kv)
        last = len(self.layers) - 1
        for index, (layer, layer_kv) in enumerate(zip(self.layers, memories)):
            if index or not self_attended:
                x = layer.self_block(x)
            if index == last:
                all_weights.append(layer.multihead_attn.weights(x, kv=layer_kv))
            else:
                x, weights = layer.cross_block(x, None, layer_kv, need_weights=True)
                all_weights.append(weights)
        return torch.stack(all_weights)

