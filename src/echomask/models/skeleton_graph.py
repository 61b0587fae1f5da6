"""Skeleton graph helpers for the skeleton-conv motion autoencoder (FGD feature extractor).

Pure functions on a kinematic parent list: the edge list of each encoder level, the distance-limited
edge neighbourhoods that mask the skeleton convolutions, the chain walk that groups edges for mean
pooling, and the tensors (masks, pooling matrices) built from them.
Everything follows ``shared/spec/fgd_aeskconv.md`` §3–§6.

Vocabulary
- An *edge* is an ordered pair ``(first joint, second joint)`` of joint ids. Joint ids keep their
  original numbering at every level; only the list of pairs changes.
- Edge ``i`` of a level owns the channel block ``[i·c, (i+1)·c)`` of a ``(B, E·c, T)`` feature map.
"""

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from einops import repeat

Edge = tuple[int, int]


def root_edge_list(parents: Sequence[int]) -> list[Edge]:
    """Layer-0 edge list of a kinematic tree (spec §3).

    Entry 0 is a virtual edge ``(0, J)`` from the root to a fictitious joint ``J = len(parents)`` that
    carries the root's own features; entry ``i ≥ 1`` is ``(parents[i], i)``, so edge ``i`` carries
    joint ``i``'s features. ``parents[0]`` (the root's parent) is never read.
    """
    n_joints = len(parents)
    for joint in range(1, n_joints):
        if not 0 <= parents[joint] < joint:
            raise ValueError(
                f"parents[{joint}] = {parents[joint]}: every non-root joint needs a parent with a "
                "smaller index (a topologically ordered kinematic tree rooted at joint 0)"
            )
    return [(0, n_joints)] + [(int(parents[joint]), joint) for joint in range(1, n_joints)]


def edge_adjacency(edges: Sequence[Edge]) -> list[list[int]]:
    """For each edge, the other edges sharing at least one joint id with it (spec §4)."""
    return [
        [other for other, pair in enumerate(edges) if other != index and set(pair) & set(edge)]
        for index, edge in enumerate(edges)
    ]


def edge_distances(edges: Sequence[Edge]) -> torch.Tensor:
    """Shortest-path lengths between edges in the edge adjacency graph, ``(E, E)`` int64.

    Distance 0 is an edge to itself; unreachable pairs raise, since a kinematic tree is connected.
    """
    adjacency = edge_adjacency(edges)
    n_edges = len(edges)
    distances = torch.full((n_edges, n_edges), -1, dtype=torch.int64)
    for source in range(n_edges):
        distances[source, source] = 0
        queue = deque([source])
        while queue:
            edge = queue.popleft()
            for neighbour in adjacency[edge]:
                if distances[source, neighbour] < 0:
                    distances[source, neighbour] = distances[source, edge] + 1
                    queue.append(neighbour)
    if (distances < 0).any():
        raise ValueError("the edge list is not connected; a kinematic tree always is")
    return distances


def edge_neighbourhoods(edges: Sequence[Edge], radius: int) -> list[list[int]]:
    """``N(e) = {f : dist(e, f) ≤ radius}`` for every edge, in edge order, each sorted (spec §4)."""
    within_radius = edge_distances(edges) <= radius
    return [torch.nonzero(row).flatten().tolist() for row in within_radius]


def skeleton_conv_mask(
    neighbourhoods: Sequence[Sequence[int]],
    in_channels_per_edge: int,
    out_channels_per_edge: int,
    kernel_size: int,
) -> torch.Tensor:
    """0/1 kernel mask ``(E·c_out, E·c_in, kernel_size)`` float32 (spec §5).

    ``mask[o, k, t] = 1`` when output channel ``o`` belongs to edge ``e`` and input channel ``k``
    belongs to an edge in ``N(e)``, for every tap ``t``.
    """
    n_edges = len(neighbourhoods)
    edge_mask = torch.zeros(n_edges, n_edges)
    for edge, neighbours in enumerate(neighbourhoods):
        edge_mask[edge, list(neighbours)] = 1.0
    return repeat(
        edge_mask,
        "e_out e_in -> (e_out c_out) (e_in c_in) tap",
        c_out=out_channels_per_edge,
        c_in=in_channels_per_edge,
        tap=kernel_size,
    ).contiguous()


def edge_chains(edges: Sequence[Edge]) -> list[list[int]]:
    """Chains of edge indices from a depth-first walk from joint 0 (spec §6 steps 1–2).

    A chain ends at a leaf joint (degree 1) or at a branching joint (degree > 2, root excluded);
    at a branching joint a new, empty chain starts for the edges leaving it. Branches are followed
    in edge-list order, so chains come out in walk order.
    """
    degree: dict[int, int] = {}
    for edge in edges:
        for joint in edge:
            degree[joint] = degree.get(joint, 0) + 1

    chains: list[list[int]] = []

    def arrive(joint: int, chain: list[int]) -> None:
        if joint != 0 and degree[joint] > 2:
            chains.append(chain)
            chain = []
        if degree[joint] == 1:
            chains.append(chain)
            return
        for index, (first, second) in enumerate(edges):
            if first == joint:
                arrive(second, chain + [index])

    arrive(0, [])
    return chains


def chain_groups(chain: Sequence[int], merge_whole_chain: bool) -> list[list[int]]:
    """Split one chain into pooling groups, keeping its order (spec §6 step 3).

    With ``merge_whole_chain`` the chain is a single group (the reference does this at the last
    encoder level). Otherwise an odd-length chain gives its first edge a group of its own and the
    remaining edges form consecutive pairs.
    """
    if merge_whole_chain:
        return [list(chain)] if chain else []
    single = [[chain[0]]] if len(chain) % 2 == 1 else []
    start = len(chain) % 2
    return single + [list(chain[i : i + 2]) for i in range(start, len(chain), 2)]


def pooled_edge(edges: Sequence[Edge], group: Sequence[int]) -> Edge:
    """The edge that replaces a group: first joint of its first edge, second joint of its last."""
    return (edges[group[0]][0], edges[group[-1]][1])


def mean_pooling_matrix(groups: Sequence[Sequence[int]], n_edges: int, channels_per_edge: int) -> torch.Tensor:
    """Channel-mixing matrix ``(G·c, E·c)`` float32 averaging each group's edges (spec §6 step 4).

    ``P[g·c + ch, e·c + ch] = 1/|group g|`` for every edge ``e`` in group ``g``; applied per frame
    as ``y[:, :, t] = P @ x[:, :, t]``.
    """
    group_weights = torch.zeros(len(groups), n_edges)
    for group_index, group in enumerate(groups):
        group_weights[group_index, list(group)] = 1.0 / len(group)
    return torch.kron(group_weights, torch.eye(channels_per_edge)).contiguous()


@dataclass(frozen=True)
class SkeletonLevel:
    """One encoder level: its edge list and how its edges pool into the next level's edges."""

    edges: list[Edge]
    groups: list[list[int]]

    @property
    def pooled_edges(self) -> list[Edge]:
        """Edge list after pooling, one edge per group, in group order."""
        return [pooled_edge(self.edges, group) for group in self.groups]

    @property
    def pools(self) -> bool:
        """Pooling is applied only when it changes the number of edges (spec §6 step 5)."""
        return len(self.groups) != len(self.edges)


def skeleton_levels(parents: Sequence[int], n_levels: int) -> list[SkeletonLevel]:
    """The edge lists and pooling groups of ``n_levels`` encoder levels (spec §3, §6).

    Level 0 is :func:`root_edge_list`; level ``i + 1`` uses the pooled edges of level ``i`` (or the
    same list where level ``i`` does not pool). The last level groups whole chains.
    """
    levels = []
    edges = root_edge_list(parents)
    for level_index in range(n_levels):
        merge_whole_chain = level_index == n_levels - 1
        groups = [
            group
            for chain in edge_chains(edges)
            for group in chain_groups(chain, merge_whole_chain=merge_whole_chain)
        ]
        level = SkeletonLevel(edges=edges, groups=groups)
        levels.append(level)
        edges = level.pooled_edges if level.pools else edges
    return levels
