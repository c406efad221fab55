"""GCN models in Flax NNX, built from `jaxnets.nn` layers (GCNConv, BatchNorm with a node mask,
Dropout, Embedding, Linear): hand-derived backward by default, autodiff's with
`jaxnets.nn.set_gradients(model, "autodiff")`.

- `GCNNodeClassifier`, the course's node model: (GCNConv -> BatchNorm -> ReLU -> Dropout) x
  (num_layers - 1), then GCNConv to the classes and log-softmax (or the last conv's output as
  node embeddings with `return_embeds=True`). Course defaults: 3 layers, hidden 256, dropout 0.5.
- `GCNGraphClassifier`, the course's graph model: atom encoder (one embedding per categorical
  atom feature, summed) or the raw node features -> the node model as an embedder -> global mean
  pool -> linear head. Course defaults: 5 layers, hidden 256, dropout 0.5.
- `BondGCNGraphClassifier`, OGB's GCN baseline for molecules (ogb/examples/graphproppred/mol):
  atom encoder -> (BondGCNConv with its own bond encoder -> BatchNorm -> ReLU -> Dropout) x
  num_layers, no ReLU after the last -> global mean pool -> linear head. OGB's defaults: 5
  layers, hidden 300, dropout 0.5.

Train/eval mode follows NNX: `nnx.view(model, deterministic=..., use_running_average=...)` (the
trainer's train and eval views) sets dropout and batch norm on every submodule.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import jraph
import numpy as np
from flax import nnx

from jaxnets import nn
from jaxnets.layers import graph

Array = jax.Array


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
        self.convs = nnx.List([nn.GCNConv(a, b, rngs=rngs) for a, b in itertools.pairwise(dims)])
        self.norms = nnx.List(
            [nn.BatchNorm(hidden) for _ in range(num_layers - 1)] if batchnorm else []
        )
        self.relu = nn.ReLU()
        self.log_softmax = nn.LogSoftmax()
        self.dropout = nn.Dropout(dropout, rngs=rngs)
        # Kipf & Welling also drop input features; the course's model does not (rate 0).
        self.input_dropout = nn.Dropout(input_dropout, rngs=rngs)
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
            x = self.dropout(self.relu(x))
        x = self.convs[-1](x, senders, receivers)
        return x if self.return_embeds else self.log_softmax(x)


class AtomEncoder(nnx.Module):
    """Sum of one learned embedding per categorical node feature (OGB's AtomEncoder)."""

    def __init__(self, feature_dims: Sequence[int], hidden: int, *, rngs: nnx.Rngs):
        glorot = nnx.initializers.glorot_uniform()
        self.tables = nnx.List(
            [nn.Embedding(int(d), hidden, embedding_init=glorot, rngs=rngs) for d in feature_dims]
        )

    def __call__(self, x: Array) -> Array:
        return sum(table(x[:, i]) for i, table in enumerate(self.tables))


class BondEncoder(nnx.Module):
    """Sum of one learned embedding per categorical edge feature (OGB's BondEncoder), computed
    as a multi-hot row times the stacked tables: on CPU a matmul and its transpose are far
    faster than the gather and scatter-add of lookups on molecules' ~2 edges per node."""

    def __init__(self, feature_dims: Sequence[int], hidden: int, *, rngs: nnx.Rngs):
        glorot = nnx.initializers.glorot_uniform()
        tables = [glorot(rngs.params(), (int(d), hidden)) for d in feature_dims]
        self.offsets = tuple(int(o) for o in np.cumsum([0, *feature_dims[:-1]]))
        self.vocabulary = int(sum(feature_dims))
        self.tables = nn.Linear(
            self.vocabulary,
            hidden,
            use_bias=False,
            kernel_init=lambda *_: jnp.concatenate(tables),
            rngs=rngs,
        )

    def __call__(self, edges: Array) -> Array:
        multi_hot = sum(
            jax.nn.one_hot(edges[:, i] + offset, self.vocabulary)
            for i, offset in enumerate(self.offsets)
        )
        return self.tables(multi_hot)


def _torch_linear_head(hidden: int, out_dim: int, rngs: nnx.Rngs) -> nn.Linear:
    """torch.nn.Linear's default init, as the PyG and OGB models' heads."""
    return nn.Linear(
        hidden,
        out_dim,
        kernel_init=nn.TORCH_LINEAR,
        bias_init=nn.torch_linear_bias(hidden),
        rngs=rngs,
    )


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
        self.head = _torch_linear_head(hidden, out_dim, rngs)

    def __call__(self, graphs: jraph.GraphsTuple) -> Array:
        node_mask = jraph.get_node_padding_mask(graphs)
        x = self.encoder(graphs.nodes) if self.encoder is not None else graphs.nodes
        h = self.gnn(x, graphs.senders, graphs.receivers, node_mask)
        return self.head(graph.global_mean_pool(h, graphs.n_node))


class BondGCNGraphClassifier(nnx.Module):
    """OGB's GCN for molecules: graph-level outputs (G, out_dim) from integer atom features
    (`graphs.nodes`) and bond features (`graphs.edges`), padded as `jraph.pad_with_graphs`.

    Unlike the course's model every layer, the last included, is followed by batch norm and
    dropout (OGB's GNN_node, JK "last"); only the last skips the ReLU.
    """

    def __init__(
        self,
        out_dim: int,
        *,
        atom_feature_dims: Sequence[int],
        bond_feature_dims: Sequence[int],
        hidden: int = 300,
        num_layers: int = 5,
        dropout: float = 0.5,
        rngs: nnx.Rngs,
    ):
        if num_layers < 1:
            raise ValueError(f"BondGCNGraphClassifier: num_layers must be >= 1, got {num_layers}")
        self.encoder = AtomEncoder(atom_feature_dims, hidden, rngs=rngs)
        self.bond_encoders = nnx.List(
            [BondEncoder(bond_feature_dims, hidden, rngs=rngs) for _ in range(num_layers)]
        )
        self.convs = nnx.List(
            [nn.BondGCNConv(hidden, hidden, rngs=rngs) for _ in range(num_layers)]
        )
        self.norms = nnx.List([nn.BatchNorm(hidden) for _ in range(num_layers)])
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(dropout, rngs=rngs)
        self.head = _torch_linear_head(hidden, out_dim, rngs)

    def __call__(self, graphs: jraph.GraphsTuple) -> Array:
        node_mask = jraph.get_node_padding_mask(graphs)
        h = self.encoder(graphs.nodes)
        last = len(self.convs) - 1
        for i, (bonds, conv, norm) in enumerate(zip(self.bond_encoders, self.convs, self.norms)):
            h = norm(conv(h, bonds(graphs.edges), graphs.senders, graphs.receivers), node_mask)
            h = self.dropout(h if i == last else self.relu(h))
        return self.head(graph.global_mean_pool(h, graphs.n_node))
