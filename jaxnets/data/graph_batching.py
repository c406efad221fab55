"""Batches of graphs padded to a few fixed sizes, so a jitted step compiles once per size.

A batch of B graphs is padded with `jraph.pad_with_graphs` to a `Budget`: B + 1 graphs (one
padding graph holds the dummy nodes and edges), and node and edge counts each rounded up on the
ladder 2^k, 1.25 * 2^k, 1.5 * 2^k, 1.75 * 2^k. At most a fifth of a budget is padding, where
plain powers of two can waste half (32 molecules of ~26 atoms are just over 768). The two
counts have their own rungs because tying the edge budget to the node budget by the dataset's
largest edges-per-node ratio doubled the edges of molecule batches (ogbg-molhiv: 3.5 edges per
node in its densest graph, 2.2 in an average batch), and on CPU every edge costs a gather and a
scatter-add per layer and pass. A batch's sums vary little around B times the mean, so an epoch
meets a handful of (nodes, edges) budgets: one compilation each.

Padding nodes and edges live in the padding graph only (its edges join padding nodes), so they
never touch a real node; use `jraph.get_node_padding_mask` / `get_graph_padding_mask` (or
`real_graph_mask` on the host) to drop them from statistics, pooling and losses.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

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
    """The smallest value of the ladder 1, 2, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, ... (2^k and
    1.25, 1.5, 1.75 * 2^k) that is >= n."""
    p = next_power_of_two(n)
    if p < 8:
        return p
    return next(v for v in (5 * p // 8, 3 * p // 4, 7 * p // 8, p) if v >= n)


def round_up_to(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def budget_for(
    num_nodes: int, num_edges: int, batch_size: int, *, min_nodes: int = 64, multiple_of: int = 1
) -> Budget:
    """The budget for a batch of at most `batch_size` graphs with `num_nodes` real nodes and
    `num_edges` real edges.

    One node is always left for the padding graph (jraph needs it). `multiple_of`: every count
    rounded up to a multiple of it (the device count, so the batch splits evenly over a data
    mesh).
    """
    return Budget(
        round_up_to(max(min_nodes, round_up_budget(num_nodes + 1)), multiple_of),
        round_up_to(round_up_budget(num_edges), multiple_of),
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
    for start in range(0, len(indices), batch_size):
        chunk = indices[start : start + batch_size]
        graph = dataset.batch(chunk)
        budget = budget_for(
            int(graph.n_node.sum()),
            int(graph.n_edge.sum()),
            batch_size,
            min_nodes=min_nodes,
            multiple_of=multiple_of,
        )
        yield pad_to_budget(graph, budget), budget
