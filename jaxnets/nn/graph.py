"""GCNConv and OGB's BondGCNConv over `jaxnets.layers.graph` (jraph's edge lists)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxnets.layers import graph
from jaxnets.nn.layer import Layer
from jaxnets.nn.linear import TORCH_LINEAR, torch_linear_bias

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


class BondGCNConv(Layer):
    """OGB's GCN conv for molecules: messages relu(h[s] + bond embedding) / sqrt(d_s d_r) and a
    self loop relu(h[r] + root) / d_r, with h = x kernel + bias. The bond embeddings (E, M) come
    in from the caller (a `BondEncoder` per layer, as OGB). Kernel and bias as torch's Linear,
    root as torch's Embedding (standard normal)."""

    def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs):
        self.in_features, self.out_features = in_features, out_features
        self.init_kernel_and_bias(
            (in_features, out_features),
            True,
            TORCH_LINEAR,
            torch_linear_bias(in_features),
            rngs,
        )
        self.root = nnx.Param(jax.random.normal(rngs.params(), (out_features,), self.param_dtype))

    def __call__(self, x: Array, edge_embedding: Array, senders: Array, receivers: Array) -> Array:
        params = self.cast({"w": self.kernel[...], "b": self.bias[...], "root": self.root[...]})
        return self.apply(
            graph.bond_gcn, self.cast(x), params, self.cast(edge_embedding), senders, receivers
        )
