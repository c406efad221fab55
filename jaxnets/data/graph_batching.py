"""Batches of graphs padded to a few fixed sizes, so a jitted step compiles once per size.

A batch of B graphs is padded with `jraph.pad_with_graphs` to a `Budget`: B + 1 graphs (one
padding graph holds the dummy nodes and edges), a node count from the ladder 2^k, 1.5 * 2^k
(so at most a third of the nodes are padding, where plain powers of two can waste half: 32
molecules of ~34 atoms are just over 1024), and an edge budget tied to the node budget by the
dataset's largest edges-per-node ratio. That ratio bounds every batch's ratio
(sum e_i / sum n_i <= max e_i / n_i), so the node budget alone decides the shape: the number of
compilations is the number of distinct node budgets, two or three in practice.

Padding nodes and edges live in the padding graph only (its edges join padding nodes), so they
never touch a real node; use `jraph.get_node_padding_mask` / `get_graph_padding_mask` (or
`real_graph_mask` on the host) to drop them from statistics, pooling and losses.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jraph
import numpy as np

from jaxnets.data.graphs import GraphDataset


class Budget(NamedTuple):
    n_node: int
    n_edge: int
    n_graph: int


def next_power_of_two(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


def round_up_budget(n: int) -> int:
    """The smallest value of the ladder 1, 2, 3, 4, 6, 8, 12, 16, 24, ... (2^k and 1.5 * 2^k)
    that is >= n."""
    p = next_power_of_two(n)
    return 3 * p // 4 if p >= 4 and 3 * p // 4 >= n else p


def edges_per_node(dataset: GraphDataset) -> float:
    """The largest n_edge / n_node over the dataset's graphs (0 for edgeless data)."""
    nonempty = dataset.n_node > 0
    if not nonempty.any():
        return 0.0
    return float(np.max(dataset.n_edge[nonempty] / dataset.n_node[nonempty]))


def round_up_to(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def budget_for(
    num_nodes: int, batch_size: int, ratio: float, *, min_nodes: int = 64, multiple_of: int = 1
) -> Budget:
    """The budget for a batch of at most `batch_size` graphs and `num_nodes` real nodes.

    One node is always left for the padding graph (jraph needs it); edges get `ratio` times the
    node budget, which holds every batch whose nodes fit. `multiple_of`: every count rounded up
    to a multiple of it (the device count, so the batch splits evenly over a data mesh).
    """
    n_node = round_up_to(max(min_nodes, round_up_budget(num_nodes + 1)), multiple_of)
    return Budget(
        n_node,
        round_up_to(math.ceil(ratio * n_node), multiple_of),
        round_up_to(batch_size + 1, multiple_of),
    )


def pad_to_budget(graph: jraph.GraphsTuple, budget: Budget) -> jraph.GraphsTuple:
    return jraph.pad_with_graphs(graph, budget.n_node, budget.n_edge, budget.n_graph)


def real_graph_mask(graphs: jraph.GraphsTuple) -> np.ndarray:
    """`jraph.get_graph_padding_mask` on the host, in numpy (no device op to dispatch): the
    padding graphs are the trailing empty ones and the one before them, which holds the
    padding nodes."""
    n_node = np.asarray(graphs.n_node)
    trailing_empty = int(np.argmin(n_node[::-1] == 0))
    return np.arange(len(n_node)) < len(n_node) - trailing_empty - 1


def iterate_batches(
    dataset: GraphDataset,
    indices: np.ndarray,
    batch_size: int,
    *,
    rng: np.random.Generator | None = None,
    ratio: float | None = None,
    min_nodes: int = 64,
    multiple_of: int = 1,
) -> Iterator[tuple[jraph.GraphsTuple, Budget]]:
    """Padded batches of the graphs `indices` (shuffled when `rng` is given), in order.

    Each yields (padded GraphsTuple with the labels in `globals`, its Budget); `multiple_of` is
    `budget_for`'s.
    """
    indices = np.asarray(indices)
    if rng is not None:
        indices = rng.permutation(indices)
    ratio = edges_per_node(dataset) if ratio is None else ratio
    for start in range(0, len(indices), batch_size):
        chunk = indices[start : start + batch_size]
        graph = dataset.batch(chunk)
        budget = budget_for(
            int(graph.n_node.sum()), batch_size, ratio, min_nodes=min_nodes, multiple_of=multiple_of
        )
        yield pad_to_budget(graph, budget), budget


def node_graph_ids(n_node: jax.Array, num_nodes: int) -> jax.Array:
    """The graph index of every node of a batch: [0]*n_node[0] + [1]*n_node[1] + ..."""
    return jnp.repeat(jnp.arange(n_node.shape[0]), n_node, total_repeat_length=num_nodes)


def global_mean_pool(h: jax.Array, n_node: jax.Array) -> jax.Array:
    """Mean of the node rows of each graph: (N, D) -> (G, D); empty graphs give 0."""
    ids = node_graph_ids(n_node, h.shape[0])
    sums = jax.ops.segment_sum(h, ids, num_segments=n_node.shape[0])
    return sums / jnp.maximum(n_node, 1)[:, None].astype(h.dtype)
