"""GCNConv over `jaxnets.layers.graph` (dense or sparse node features, jraph's edge lists)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxnets.layers import graph
from jaxnets.nn.layer import Layer

Array = jax.Array


class GCNConv(Layer):
    """D^-1/2 (A + I) D^-1/2 X kernel + bias, edges given as jraph's senders and receivers;
    kernel Glorot-uniform and bias zero, as PyTorch Geometric's GCNConv."""

    def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs):
        self.in_features, self.out_features = in_features, out_features
        init = nnx.initializers.glorot_uniform()
        self.kernel = nnx.Param(init(rngs.params(), (in_features, out_features), self.param_dtype))
        self.bias = nnx.Param(jnp.zeros(out_features, self.param_dtype))

    def __call__(self, x: Array | graph.SparseMatrix, senders: Array, receivers: Array) -> Array:
        params = self.cast({"w": self.kernel[...], "b": self.bias[...]})
        if isinstance(x, graph.SparseMatrix):  # constant sparse input features (Cora)
            return self.apply(graph.sparse_gcn, params, x, senders, receivers)
        return self.apply(graph.gcn, self.cast(x), params, senders, receivers)
