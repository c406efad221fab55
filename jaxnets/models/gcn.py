"""GCN models in Flax NNX, built on the hand-derived `jaxnets.layers` (jax.grad runs them).

- `GCNNodeClassifier`, the course's node model: (GCNConv -> BatchNorm -> ReLU -> Dropout) x
  (num_layers - 1), then GCNConv to the classes and log-softmax (or the last conv's output as
  node embeddings with `return_embeds=True`). Course defaults: 3 layers, hidden 256, dropout 0.5.
- `GCNGraphClassifier`, the course's graph model: atom encoder (one embedding per categorical
  atom feature, summed) or the raw node features -> the node model as an embedder -> global mean
  pool -> linear head. Course defaults: 5 layers, hidden 256, dropout 0.5.

Train/eval mode follows NNX: `model.train()` / `model.eval()` set `deterministic` (dropout) and
`use_running_average` (batch norm) on every submodule.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import jraph
from flax import nnx

from jaxnets.data.graph_batching import global_mean_pool
from jaxnets.layers import core, dropout, graph, losses, norm

Array = jax.Array


def _glorot(key: Array, shape: tuple[int, int]) -> Array:
    limit = jnp.sqrt(6.0 / (shape[0] + shape[1]))
    return jax.random.uniform(key, shape, jnp.float32, -limit, limit)


class GCNConv(nnx.Module):
    """D^-1/2 (A + I) D^-1/2 X W + b; W Glorot-uniform and b zero, as PyG's GCNConv."""

    def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs):
        self.w = nnx.Param(_glorot(rngs.params(), (in_features, out_features)))
        self.b = nnx.Param(jnp.zeros(out_features))

    def __call__(self, x: Array | graph.SparseMatrix, senders: Array, receivers: Array) -> Array:
        params = {"w": self.w[...], "b": self.b[...]}
        if isinstance(x, graph.SparseMatrix):  # constant sparse input features (Cora)
            return graph.sparse_gcn(params, x, senders, receivers)
        return graph.gcn(x, params, senders, receivers)


class BatchNorm(nnx.Module):
    """Batch norm over nodes; with a node mask, padding nodes are left out of the statistics."""

    def __init__(self, num_features: int, *, momentum: float = 0.9, eps: float = 1e-5):
        params, state = norm.batchnorm_init(num_features)
        self.gamma, self.beta = nnx.Param(params["gamma"]), nnx.Param(params["beta"])
        self.mean, self.var = nnx.BatchStat(state["mean"]), nnx.BatchStat(state["var"])
        self.momentum, self.eps = momentum, eps
        self.use_running_average = False

    def __call__(self, x: Array, mask: Array | None = None) -> Array:
        params = {"gamma": self.gamma[...], "beta": self.beta[...]}
        state = {"mean": self.mean[...], "var": self.var[...]}
        config = dict(train=not self.use_running_average, eps=self.eps, momentum=self.momentum)
        if mask is None:
            out, new_state = norm.batchnorm(x, params, state, **config)
        else:
            out, new_state = graph.masked_batchnorm(x, params, state, mask, **config)
        if not self.use_running_average:
            self.mean[...], self.var[...] = new_state["mean"], new_state["var"]
        return out


class Dropout(nnx.Module):
    """Inverted dropout that drops with probability `rate` (keep_prob = 1 - rate)."""

    def __init__(self, rate: float, *, rngs: nnx.Rngs):
        self.rate = rate
        self.deterministic = False
        self.rngs = rngs["dropout"].fork()

    def __call__(self, x: Array | graph.SparseMatrix) -> Array | graph.SparseMatrix:
        if self.deterministic or self.rate == 0:
            return x
        if isinstance(x, graph.SparseMatrix):  # Kipf & Welling's sparse dropout: the nonzeros
            values = dropout.dropout(x.values, self.rngs(), keep_prob=1.0 - self.rate)
            return dataclasses.replace(x, values=values)
        return dropout.dropout(x, self.rngs(), keep_prob=1.0 - self.rate)


class GCNNodeClassifier(nnx.Module):
    """The course's GCN node model; log-probabilities (N, classes), or embeddings."""

    def __init__(
        self,
        in_features: int,
        hidden: int,
        num_classes: int,
        *,
        num_layers: int = 3,
        dropout: float = 0.5,
        batchnorm: bool = True,
        input_dropout: float = 0.0,
        return_embeds: bool = False,
        rngs: nnx.Rngs,
    ):
        if num_layers < 1:
            raise ValueError(f"GCNNodeClassifier: num_layers must be >= 1, got {num_layers}")
        dims = [in_features] + [hidden] * (num_layers - 1) + [num_classes]
        self.convs = nnx.List([GCNConv(a, b, rngs=rngs) for a, b in itertools.pairwise(dims)])
        self.norms = nnx.List(
            [BatchNorm(hidden) for _ in range(num_layers - 1)] if batchnorm else []
        )
        self.dropout = Dropout(dropout, rngs=rngs)
        # Kipf & Welling also drop input features; the course's model does not (rate 0).
        self.input_dropout = Dropout(input_dropout, rngs=rngs)
        self.return_embeds = return_embeds

    def __call__(
        self,
        x: Array | graph.SparseMatrix,
        senders: Array,
        receivers: Array,
        node_mask: Array | None = None,
    ) -> Array:
        x = self.input_dropout(x)
        for i, conv in enumerate(self.convs[:-1]):
            x = conv(x, senders, receivers)
            if len(self.norms):
                x = self.norms[i](x, node_mask)
            x = self.dropout(core.relu(x))
        x = self.convs[-1](x, senders, receivers)
        return x if self.return_embeds else losses.log_softmax(x)


class AtomEncoder(nnx.Module):
    """Sum of one learned embedding per categorical node feature (OGB's AtomEncoder)."""

    def __init__(self, feature_dims: Sequence[int], hidden: int, *, rngs: nnx.Rngs):
        self.tables = nnx.List(
            [nnx.Param(_glorot(rngs.params(), (int(d), hidden))) for d in feature_dims]
        )

    def __call__(self, x: Array) -> Array:
        return sum(table[...][x[:, i]] for i, table in enumerate(self.tables))


class GCNGraphClassifier(nnx.Module):
    """Graph-level outputs (G, out_dim): logits for classification, values for regression.

    Give `atom_feature_dims` for OGB molecules (integer node features), else `in_features` and
    the float node features go straight into the first GCN layer (TU datasets). The input must
    be padded as `jraph.pad_with_graphs` does (its last graph is the padding one, left out of
    the batch-norm statistics; its output row is meaningless).
    """

    def __init__(
        self,
        out_dim: int,
        *,
        hidden: int = 256,
        num_layers: int = 5,
        dropout: float = 0.5,
        atom_feature_dims: Sequence[int] | None = None,
        in_features: int | None = None,
        batchnorm: bool = True,
        rngs: nnx.Rngs,
    ):
        if (atom_feature_dims is None) == (in_features is None):
            raise ValueError(
                "GCNGraphClassifier: give exactly one of atom_feature_dims, in_features"
            )
        self.encoder = (
            AtomEncoder(atom_feature_dims, hidden, rngs=rngs) if atom_feature_dims else None
        )
        self.gnn = GCNNodeClassifier(
            hidden if atom_feature_dims else in_features,
            hidden,
            hidden,
            num_layers=num_layers,
            dropout=dropout,
            batchnorm=batchnorm,
            return_embeds=True,
            rngs=rngs,
        )
        bound = 1 / hidden**0.5  # torch.nn.Linear's default init
        self.head_w = nnx.Param(
            jax.random.uniform(rngs.params(), (hidden, out_dim), minval=-bound, maxval=bound)
        )
        self.head_b = nnx.Param(
            jax.random.uniform(rngs.params(), (out_dim,), minval=-bound, maxval=bound)
        )

    def __call__(self, graphs: jraph.GraphsTuple) -> Array:
        node_mask = jraph.get_node_padding_mask(graphs)
        x = self.encoder(graphs.nodes) if self.encoder is not None else graphs.nodes
        h = self.gnn(x, graphs.senders, graphs.receivers, node_mask)
        pooled = global_mean_pool(h, graphs.n_node)
        return core.affine(pooled, {"w": self.head_w[...], "b": self.head_b[...]})
