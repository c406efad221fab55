"""Softmax, log-softmax and the losses, each with a hand-derived backward.

Losses return a scalar (mean over the batch); their backward takes the scalar `dloss`.
Labels are either integer class indices of shape (N,) or one-hot / probability rows (N, C).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxnets.layers.checks import check_float, check_ndim
from jaxnets.layers.vjp import manual_vjp

Array = jax.Array


def _as_targets(layer: str, labels: Array, num_classes: int, dtype) -> Array:
    """Integer labels (N,) -> one-hot rows; (N, C) rows are taken as given."""
    if jnp.issubdtype(jnp.result_type(labels), jnp.integer):
        check_ndim(layer, "integer labels", labels, 1, "(N,)")
        return jax.nn.one_hot(labels, num_classes, dtype=dtype)
    check_ndim(layer, "target rows", labels, 2, "(N, C)")
    if labels.shape[1] != num_classes:
        raise ValueError(
            f"{layer}: targets have {labels.shape[1]} classes, scores have {num_classes}"
        )
    return labels.astype(dtype)


def _check_scores(layer: str, name: str, x: Array, labels: Array) -> None:
    check_float(layer, name, x)
    check_ndim(layer, name, x, 2, "(N, C)")
    if labels.shape[0] != x.shape[0]:
        raise ValueError(f"{layer}: {x.shape[0]} rows of {name} but {labels.shape[0]} labels")


# ----------------------------------------------------------------------------- softmax
def softmax_forward(x: Array) -> tuple[Array, Array]:
    """Softmax over the last axis, shifted by the row max for stability."""
    check_float("softmax", "x", x)
    e = jnp.exp(x - x.max(axis=-1, keepdims=True))
    p = e / e.sum(axis=-1, keepdims=True)
    return p, p


def softmax_backward(dout: Array, cache: Array) -> Array:
    # The Jacobian diag(s) - s s^T applied to dout row by row, without building it.
    s = cache
    return s * (dout - (dout * s).sum(axis=-1, keepdims=True))


softmax = manual_vjp(softmax_forward, softmax_backward)


def log_softmax_forward(x: Array) -> tuple[Array, Array]:
    check_float("log_softmax", "x", x)
    shifted = x - x.max(axis=-1, keepdims=True)
    out = shifted - jnp.log(jnp.exp(shifted).sum(axis=-1, keepdims=True))
    return out, out


def log_softmax_backward(dout: Array, cache: Array) -> Array:
    return dout - jnp.exp(cache) * dout.sum(axis=-1, keepdims=True)


log_softmax = manual_vjp(log_softmax_forward, log_softmax_backward)


# ----------------------------------------------------------------------------- losses
def cross_entropy_forward(probs: Array, labels: Array) -> tuple[Array, tuple]:
    """L = -(1/N) sum(Y * ln P) on probabilities P (e.g. a softmax output)."""
    _check_scores("cross_entropy", "probs", probs, labels)
    y = _as_targets("cross_entropy", labels, probs.shape[1], probs.dtype)
    n = probs.shape[0]
    return -(y * jnp.log(probs)).sum() / n, (probs, y)


def cross_entropy_backward(dloss: Array, cache: tuple) -> Array:
    probs, y = cache
    return -dloss * y / (probs * probs.shape[0])


cross_entropy = manual_vjp(cross_entropy_forward, cross_entropy_backward)


def softmax_cross_entropy_forward(logits: Array, labels: Array) -> tuple[Array, tuple]:
    """Fused softmax + cross-entropy on logits: mean of -log p[y]."""
    _check_scores("softmax_cross_entropy", "logits", logits, labels)
    y = _as_targets("softmax_cross_entropy", labels, logits.shape[1], logits.dtype)
    logp, _ = log_softmax_forward(logits)
    n = logits.shape[0]
    return -(y * logp).sum() / n, (logp, y)


def softmax_cross_entropy_backward(dloss: Array, cache: tuple) -> Array:
    logp, y = cache
    # (p - y) / N, with y's rows summing to one (one-hot or a distribution).
    return dloss * (jnp.exp(logp) * y.sum(axis=1, keepdims=True) - y) / logp.shape[0]


softmax_cross_entropy = manual_vjp(softmax_cross_entropy_forward, softmax_cross_entropy_backward)


def svm_loss_forward(scores: Array, labels: Array, *, margin: float = 1.0) -> tuple[Array, tuple]:
    """Multiclass hinge loss: mean over rows of sum_{j != y} max(0, s_j - s_y + margin)."""
    _check_scores("svm_loss", "scores", scores, labels)
    y = _as_targets("svm_loss", labels, scores.shape[1], scores.dtype)
    correct = (scores * y).sum(axis=1, keepdims=True)
    margins = jnp.maximum(0, scores - correct + margin) * (1 - y)
    n = scores.shape[0]
    return margins.sum() / n, (margins > 0, y)


def svm_loss_backward(dloss: Array, cache: tuple) -> Array:
    positive, y = cache
    positive = positive.astype(y.dtype)
    # Each violating class pushes its score up; the true class is pulled down once per violation.
    dscores = positive - y * positive.sum(axis=1, keepdims=True)
    return dloss * dscores / y.shape[0]


svm_loss = manual_vjp(svm_loss_forward, svm_loss_backward)


def mse_forward(pred: Array, target: Array) -> tuple[Array, tuple]:
    """Mean squared error over every element."""
    check_float("mse", "pred", pred)
    if pred.shape != target.shape:
        raise ValueError(f"mse: pred has shape {pred.shape} but target has shape {target.shape}")
    diff = pred - target
    return (diff**2).mean(), diff


def mse_backward(dloss: Array, cache: Array) -> tuple[Array, Array]:
    dpred = dloss * 2 * cache / cache.size
    return dpred, -dpred


mse = manual_vjp(mse_forward, mse_backward)
