"""Audit cases for the GCN convolutions (plain, sparse input, with bond features) and the masked
batch norm of padded graph batches."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxnets.gradcheck.cases.base import LayerCase
from jaxnets.layers import graph

f64 = jnp.float64

# A small graph with what real data has: both directions of undirected edges, a one-way edge
# (2 -> 5), a repeated edge (0 -> 1 twice), nodes of different degrees and an isolated node (6),
# so every term of the normalisation is exercised.
SENDERS = jnp.array([0, 1, 0, 1, 2, 1, 3, 2, 4, 3, 2, 0])
RECEIVERS = jnp.array([1, 0, 1, 2, 1, 3, 1, 4, 2, 4, 5, 3])
NUM_NODES = 7


def _gcn_args(key: jax.Array) -> tuple:
    kx, kw, kb = jax.random.split(key, 3)
    x = jax.random.normal(kx, (NUM_NODES, 4), f64)
    params = {"w": jax.random.normal(kw, (4, 3), f64), "b": jax.random.normal(kb, (3,), f64)}
    return x, params, SENDERS, RECEIVERS


def _bond_gcn_args(key: jax.Array) -> tuple:
    x, params, senders, receivers = _gcn_args(key)
    kr, ke = jax.random.split(jax.random.fold_in(key, 2))
    params = {**params, "root": jax.random.normal(kr, (3,), f64)}
    edge_embedding = jax.random.normal(ke, (len(senders), 3), f64)
    return x, params, edge_embedding, senders, receivers


def _sparse_gcn_args(key: jax.Array) -> tuple:
    x, params, senders, receivers = _gcn_args(key)
    # About half the entries zero, like (much sparser) bag-of-words features, but the diagonal
    # kept: an all-zero column has an exactly zero weight gradient, where central differences
    # measure only rounding, and on GPUs the scatter-add's atomics reorder its sums between the
    # two evaluations (seen: 4e-11 against the relative error's 1e-8 floor).
    keep = jax.random.bernoulli(jax.random.fold_in(key, 1), 0.5, x.shape)
    keep |= jnp.eye(*x.shape, dtype=bool)
    x = jnp.where(keep, x, 0.0)
    return params, graph.to_sparse(x), senders, receivers


def _masked_batchnorm_args(*, eval_stats: bool):
    def make(key: jax.Array) -> tuple:
        kx, kg, kb, km, kv = jax.random.split(key, 5)
        x = jax.random.normal(kx, (9, 4), f64) + 0.5
        params = {
            "gamma": jax.random.normal(kg, (4,), f64),
            "beta": jax.random.normal(kb, (4,), f64),
        }
        if eval_stats:
            state = {
                "mean": jax.random.normal(km, (4,), f64),
                "var": jnp.exp(jax.random.normal(kv, (4,), f64)),
            }
        else:
            state = {"mean": jnp.zeros(4, f64), "var": jnp.zeros(4, f64)}
        mask = jnp.arange(9) < 6  # three padding rows, as in a padded graph batch
        return x, params, state, mask

    return jax.jit(make)


CASES = [
    LayerCase("gcn", graph.gcn_forward, graph.gcn_backward, _gcn_args),
    LayerCase("bond_gcn", graph.bond_gcn_forward, graph.bond_gcn_backward, _bond_gcn_args),
    LayerCase("sparse_gcn", graph.sparse_gcn_forward, graph.sparse_gcn_backward, _sparse_gcn_args),
    LayerCase(
        "masked_batchnorm (train)",
        graph.masked_batchnorm_forward,
        graph.masked_batchnorm_backward,
        _masked_batchnorm_args(eval_stats=False),
        {"train": True},
        has_aux=True,
    ),
    LayerCase(
        "masked_batchnorm (eval)",
        graph.masked_batchnorm_forward,
        graph.masked_batchnorm_backward,
        _masked_batchnorm_args(eval_stats=True),
        {"train": False},
        has_aux=True,
    ),
]
