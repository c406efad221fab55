"""Dropout over `jaxnets.layers.dropout`, with its own RNG stream (NNX's "dropout")."""

from __future__ import annotations

import dataclasses

import jax
from flax import nnx

from jaxnets.layers import dropout, graph
from jaxnets.nn.layer import Layer

Array = jax.Array


class Dropout(Layer):
    """Inverted dropout that drops with probability `rate` (the functional layer's keep_prob is
    1 - rate). Off when `deterministic` (the trainer's eval view) or rate == 0. On a sparse
    input (`jaxnets.layers.graph.SparseMatrix`) it drops the stored nonzeros, as Kipf &
    Welling's sparse dropout."""

    def __init__(self, rate: float, *, rngs: nnx.Rngs):
        if not 0 <= rate < 1:
            raise ValueError(f"Dropout: rate must be in [0, 1), got {rate!r}")
        self.rate = rate
        self.deterministic = False
        self.rngs = rngs["dropout"].fork()

    def __call__(self, x: Array | graph.SparseMatrix) -> Array | graph.SparseMatrix:
        if self.deterministic or self.rate == 0:
            return x
        keep_prob = 1.0 - self.rate
        if isinstance(x, graph.SparseMatrix):
            values = self.apply(dropout.dropout, x.values, self.rngs(), keep_prob=keep_prob)
            return dataclasses.replace(x, values=values)
        return self.apply(dropout.dropout, x, self.rngs(), keep_prob=keep_prob)
