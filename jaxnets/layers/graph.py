"""Graph layers with hand-derived backward passes: the GCN convolution (on dense or sparse
constant input features), OGB's GCN convolution with bond features, and a batch norm that skips
the padding nodes of a graph batch; mean pooling of each graph's nodes.

The graph is given as an edge list: edge e carries a message from node `senders[e]` to node
`receivers[e]` (jraph's convention); an undirected graph lists both directions. The adjacency
matrix is A[r, s] = number of edges s -> r. Graph structure (senders, receivers, masks) comes in
as trailing, non-differentiable arguments, so `manual_vjp` gives it zero cotangents.

GCN (Kipf & Welling 2017), with self loops and symmetric normalisation:

    out = D^-1/2 (A + I) D^-1/2 X W + b,    D = diag of the row sums of A + I (1 + in-degree)

computed sparsely: h = X W, then out[r] = sum_{e: s->r} h[s] / sqrt(d_s d_r) + h[r] / d_r + b.
With Â = D^-1/2 (A + I) D^-1/2 the backward is

    db = sum_n dout,   dh = Â^T dout,   dW = X^T dh,   dX = dh W^T

where Â^T sends dout back along each edge reversed: dh[s] += dout[r] / sqrt(d_s d_r).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.layers.checks import check_float, check_int, check_ndim, check_shape
from jaxnets.layers.vjp import manual_vjp

Array = jax.Array
Params = dict[str, Array]
State = dict[str, Array]


def _check_edges(layer: str, senders: Array, receivers: Array) -> None:
    check_int(layer, "senders", senders)
    check_int(layer, "receivers", receivers)
    check_ndim(layer, "senders", senders, 1, "(E,)")
    if jnp.shape(receivers) != jnp.shape(senders):
        raise ValueError(
            f"{layer}: senders and receivers must have the same shape (E,), got "
            f"{jnp.shape(senders)} and {jnp.shape(receivers)}"
        )


def gcn_degree(receivers: Array, num_nodes: int, dtype=jnp.float32) -> Array:
    """1 + in-degree of every node: the diagonal of D for A + I."""
    ones = jnp.ones(receivers.shape, dtype)
    return 1 + jax.ops.segment_sum(ones, receivers, num_segments=num_nodes)


# ----------------------------------------------------------------------------- GCN conv
def _normalisation(receivers: Array, senders: Array, num_nodes: int, dtype) -> tuple[Array, Array]:
    """Per-edge weights 1 / sqrt(d_s d_r) as (E, 1) and self-loop weights 1 / d_i as (N, 1)."""
    deg = gcn_degree(receivers, num_nodes, dtype)
    inv_sqrt = jax.lax.rsqrt(deg)
    return (inv_sqrt[senders] * inv_sqrt[receivers])[:, None], (1 / deg)[:, None]


def _propagate(
    h: Array, senders: Array, receivers: Array, norm: Array, self_weight: Array
) -> Array:
    """Â h: each edge s -> r adds h[s] / sqrt(d_s d_r) to row r; the self loop adds h[r] / d_r."""
    return (
        jax.ops.segment_sum(norm * h[senders], receivers, num_segments=h.shape[0]) + self_weight * h
    )


def _propagate_transpose(
    dout: Array, senders: Array, receivers: Array, norm: Array, self_weight: Array
) -> Array:
    """Â^T dout: each edge s -> r carries dout[r] back to s with the same weight."""
    back = jax.ops.segment_sum(norm * dout[receivers], senders, num_segments=dout.shape[0])
    return back + self_weight * dout


def _check_gcn_params(layer: str, params: Params, in_features: int) -> None:
    w, b = params["w"], params["b"]
    check_ndim(layer, "w", w, 2, "(F, M)")
    if w.shape[0] != in_features:
        raise ValueError(f"{layer}: x has {in_features} features but w has shape {w.shape}")
    check_shape(layer, "b", b, (w.shape[1],))


def gcn_forward(x: Array, params: Params, senders: Array, receivers: Array) -> tuple[Array, tuple]:
    """D^-1/2 (A + I) D^-1/2 x w + b for node features x (N, F), w (F, M), b (M,).

    Edges pointing outside [0, N) are dropped by `segment_sum`; loaders check indices instead.
    """
    check_float("gcn", "x", x)
    check_ndim("gcn", "x", x, 2, "(N, F)")
    _check_gcn_params("gcn", params, x.shape[1])
    _check_edges("gcn", senders, receivers)
    w, b = params["w"], params["b"]
    norm, self_weight = _normalisation(receivers, senders, x.shape[0], x.dtype)
    # Multiply by w first: messages then carry M values instead of F (M << F for Cora).
    out = _propagate(x @ w, senders, receivers, norm, self_weight) + b
    return out, (x, w, senders, receivers, norm, self_weight)


def gcn_backward(dout: Array, cache: tuple) -> tuple[Array, Params]:
    x, w, senders, receivers, norm, self_weight = cache
    dh = _propagate_transpose(dout, senders, receivers, norm, self_weight)
    return dh @ w.T, {"w": x.T @ dh, "b": dout.sum(axis=0)}


gcn = manual_vjp(gcn_forward, gcn_backward)


# ----------------------------------------------------------------------------- OGB's GCN conv
# OGB's baseline GCN for molecules (Hu et al. 2020, ogb/examples/graphproppred/mol/conv.py) adds
# bond features: each message is relu(h[s] + e) for the edge's bond embedding e, and the self
# loop becomes relu(h[r] + root) / d_r with a learned `root` vector:
#
#     h = x w + b
#     out[r] = sum_{e: s->r} relu(h[s] + e_e) / sqrt(d_s d_r) + relu(h[r] + root) / d_r
#
# (OGB counts d from the senders, this from the receivers: the same for undirected graphs.)
# With a = h[s] + e and q = h + root, the backward is
#
#     dm = [a > 0] dout[r] / sqrt(d_s d_r)     (per edge; also the bond embedding's gradient)
#     dh = sum_{e: s->r} dm at s + [q > 0] dout / d,   droot = sum_n [q > 0] dout / d
#     dw = x^T dh,   db = sum_n dh,   dx = dh w^T
def bond_gcn_forward(
    x: Array, params: Params, edge_embedding: Array, senders: Array, receivers: Array
) -> tuple[Array, tuple]:
    """OGB's GCN conv for x (N, F), w (F, M), b (M,), root (M,) and bond embeddings (E, M)."""
    check_float("bond_gcn", "x", x)
    check_ndim("bond_gcn", "x", x, 2, "(N, F)")
    _check_gcn_params("bond_gcn", params, x.shape[1])
    _check_edges("bond_gcn", senders, receivers)
    w, root = params["w"], params["root"]
    check_shape("bond_gcn", "root", root, (w.shape[1],))
    check_shape("bond_gcn", "edge_embedding", edge_embedding, (senders.shape[0], w.shape[1]))
    norm, self_weight = _normalisation(receivers, senders, x.shape[0], x.dtype)
    h = x @ w + params["b"]
    a = h[senders] + edge_embedding
    q = h + root
    messages = jax.ops.segment_sum(norm * jax.nn.relu(a), receivers, num_segments=x.shape[0])
    out = messages + self_weight * jax.nn.relu(q)
    return out, (x, w, senders, receivers, norm, self_weight, a > 0, q > 0)


def bond_gcn_backward(dout: Array, cache: tuple) -> tuple[Array, Params, Array]:
    x, w, senders, receivers, norm, self_weight, a_pos, q_pos = cache
    dmessage = jnp.where(a_pos, norm * dout[receivers], 0)
    dq = jnp.where(q_pos, self_weight * dout, 0)
    dh = jax.ops.segment_sum(dmessage, senders, num_segments=x.shape[0]) + dq
    grads = {"w": x.T @ dh, "b": dh.sum(axis=0), "root": dq.sum(axis=0)}
    return dh @ w.T, grads, dmessage


bond_gcn = manual_vjp(bond_gcn_forward, bond_gcn_backward)


# ----------------------------------------------------------------------------- sparse input
@functools.partial(
    jax.tree_util.register_dataclass, data_fields=["rows", "cols", "values"], meta_fields=["shape"]
)
@dataclasses.dataclass(frozen=True)
class SparseMatrix:
    """A constant (N, F) matrix in COO form: x[rows[k], cols[k]] = values[k]. `shape` is static."""

    rows: Array
    cols: Array
    values: Array
    shape: tuple[int, int]


def to_sparse(x) -> SparseMatrix:
    """Dense (N, F) -> SparseMatrix of its nonzeros (host-side, numpy in, jax arrays out)."""
    x = np.asarray(x)
    rows, cols = np.nonzero(x)
    return SparseMatrix(
        jnp.asarray(rows, jnp.int32),
        jnp.asarray(cols, jnp.int32),
        jnp.asarray(x[rows, cols]),
        (int(x.shape[0]), int(x.shape[1])),
    )


def sparse_gcn_forward(
    params: Params, x: SparseMatrix, senders: Array, receivers: Array
) -> tuple[Array, tuple]:
    """`gcn_forward` for a sparse, constant input x (bag-of-words features such as Cora's, 1.3%
    nonzero): x w is a gather and a segment sum over the nonzeros, and only params get
    gradients: dw[c] = sum over nonzeros (r, c) of x[r, c] dh[r], i.e. dw = x^T dh."""
    if not isinstance(x, SparseMatrix):
        raise TypeError(f"sparse_gcn: x must be a SparseMatrix, got {type(x).__name__}")
    check_float("sparse_gcn", "x.values", x.values)
    _check_gcn_params("sparse_gcn", params, x.shape[1])
    _check_edges("sparse_gcn", senders, receivers)
    w, b = params["w"], params["b"]
    n = x.shape[0]
    xw = jax.ops.segment_sum(x.values[:, None] * w[x.cols], x.rows, num_segments=n)
    norm, self_weight = _normalisation(receivers, senders, n, w.dtype)
    out = _propagate(xw, senders, receivers, norm, self_weight) + b
    return out, (x, w, senders, receivers, norm, self_weight)


def sparse_gcn_backward(dout: Array, cache: tuple) -> Params:
    x, w, senders, receivers, norm, self_weight = cache
    dh = _propagate_transpose(dout, senders, receivers, norm, self_weight)
    dw = jax.ops.segment_sum(x.values[:, None] * dh[x.rows], x.cols, num_segments=w.shape[0])
    return {"w": dw, "b": dout.sum(axis=0)}


sparse_gcn = manual_vjp(sparse_gcn_forward, sparse_gcn_backward)


# ----------------------------------------------------------------------------- masked batch norm
def masked_batchnorm_forward(
    x: Array,
    params: Params,
    state: State,
    mask: Array,
    *,
    train: bool,
    eps: float = 1e-5,
    momentum: float = 0.9,
) -> tuple[tuple[Array, State], dict]:
    """Batch norm of x (N, D) over the rows where `mask` (N,) is true; other rows output 0.

    Padded graph batches hold dummy nodes that must not enter the statistics. Same conventions
    as `norm.batchnorm`: biased variance, running = momentum * running + (1 - momentum) * batch,
    eval mode uses the running statistics. Returns ((out, new_state), cache).
    """
    check_float("masked_batchnorm", "x", x)
    check_ndim("masked_batchnorm", "x", x, 2, "(N, D)")
    check_shape("masked_batchnorm", "mask", mask, (x.shape[0],))
    if not isinstance(train, bool):
        raise TypeError(f"masked_batchnorm: train must be a Python bool, got {train!r}")
    if not eps > 0:
        raise ValueError(f"masked_batchnorm: eps must be positive, got {eps!r}")
    d = x.shape[1]
    for name, tree, keys in (
        ("params", params, ("gamma", "beta")),
        ("state", state, ("mean", "var")),
    ):
        for k in keys:
            if k not in tree:
                raise ValueError(f"masked_batchnorm: {name} is missing {k!r}")
            check_shape("masked_batchnorm", f"{name}['{k}']", tree[k], (d,))
    gamma, beta = params["gamma"], params["beta"]
    m = mask.astype(x.dtype)[:, None]
    count = jnp.maximum(m.sum(), 1)
    if train:
        mean = (m * x).sum(axis=0) / count
        var = (m * (x - mean) ** 2).sum(axis=0) / count
        new_state = {
            k: (momentum * state[k] + (1 - momentum) * batch).astype(state[k].dtype)
            for k, batch in (("mean", mean), ("var", var))
        }
    else:
        mean, var, new_state = state["mean"], state["var"], state
    inv_std = jax.lax.rsqrt(var + eps)
    xhat = (x - mean) * inv_std * m  # zero on padding rows, so they drop out of every sum below
    cache = {"train" if train else "eval": (xhat, gamma, inv_std, m, count)}
    return ((gamma * xhat + beta) * m, new_state), cache


def masked_batchnorm_backward(dout: Array, cache: dict) -> tuple[Array, Params]:
    ((mode, (xhat, gamma, inv_std, m, count)),) = cache.items()
    dout = dout * m  # padding rows are constant zeros: nothing flows back through them
    dparams = {"gamma": (dout * xhat).sum(axis=0), "beta": dout.sum(axis=0)}
    dxhat = dout * gamma
    if mode == "eval":
        return dxhat * inv_std * m, dparams
    # The usual closed form, with means taken over the `count` real rows only.
    m1 = dxhat.sum(axis=0) / count
    m2 = (dxhat * xhat).sum(axis=0) / count
    return m * inv_std * (dxhat - m1 - xhat * m2), dparams


masked_batchnorm = manual_vjp(masked_batchnorm_forward, masked_batchnorm_backward, has_aux=True)


# ----------------------------------------------------------------------------- pooling
def node_graph_ids(n_node: jax.Array, num_nodes: int) -> jax.Array:
    """The graph index of every node of a batch: [0]*n_node[0] + [1]*n_node[1] + ..."""
    return jnp.repeat(jnp.arange(n_node.shape[0]), n_node, total_repeat_length=num_nodes)


def global_mean_pool(h: jax.Array, n_node: jax.Array) -> jax.Array:
    """Mean of the node rows of each graph: (N, D) -> (G, D); empty graphs give 0."""
    ids = node_graph_ids(n_node, h.shape[0])
    sums = jax.ops.segment_sum(h, ids, num_segments=n_node.shape[0])
    return sums / jnp.maximum(n_node, 1)[:, None].astype(h.dtype)
