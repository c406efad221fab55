"""Evaluation metrics as OGB's Evaluator defines them, and the masked training losses."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.metrics import average_precision_score, roc_auc_score

HIGHER_IS_BETTER = {"accuracy": True, "rocauc": True, "ap": True, "rmse": False}


def _columns(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, np.float64)
    return y[:, None] if y.ndim == 1 else y


def _per_task(score, y_true: np.ndarray, y_pred: np.ndarray, need_both: bool) -> float:
    """Mean over tasks of score(labelled y_true, y_pred); NaN labels are unlabelled. With
    `need_both`, tasks whose labelled entries hold one class only are skipped (as OGB does)."""
    y_true, y_pred = _columns(y_true), _columns(y_pred)
    values = []
    for t in range(y_true.shape[1]):
        known = ~np.isnan(y_true[:, t])
        if need_both and len(np.unique(y_true[known, t])) < 2:
            continue
        if known.any():
            values.append(score(y_true[known, t], y_pred[known, t]))
    if not values:
        raise ValueError("no task has both positive and negative labels to compute the metric on")
    return float(np.mean(values))


def rocauc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """ROC-AUC per task, averaged over the tasks with both classes present (OGB's rocauc)."""
    return _per_task(roc_auc_score, y_true, y_score, need_both=True)


def average_precision(y_true: np.ndarray, y_score: np.ndarray) -> float:
    return _per_task(average_precision_score, y_true, y_score, need_both=True)


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error per task over labelled entries, averaged over tasks."""
    return _per_task(lambda t, p: np.sqrt(np.mean((t - p) ** 2)), y_true, y_pred, need_both=False)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of exact matches; y_pred holds classes (or scores (N, C), argmax taken)."""
    y_pred = np.asarray(y_pred)
    if y_pred.ndim == 2 and y_pred.shape[1] > 1:
        y_pred = y_pred.argmax(axis=1)
    return float(np.mean(np.asarray(y_true).reshape(-1) == y_pred.reshape(-1)))


METRICS = {"accuracy": accuracy, "rocauc": rocauc, "ap": average_precision, "rmse": rmse}


def evaluate(metric: str, y_true: np.ndarray, outputs: np.ndarray) -> float:
    """`metric` of the model's outputs: class scores, logits or regression values."""
    return METRICS[metric](y_true, outputs)


def better(metric: str, new: float, old: float | None) -> bool:
    if old is None or np.isnan(old):
        return not np.isnan(new)
    return new > old if HIGHER_IS_BETTER[metric] else new < old


# ----------------------------------------------------------------------------- losses (jit-able)
def masked_loss(task: str, outputs: jax.Array, labels: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean loss over the rows where `mask` holds (real graphs or training nodes).

    multiclass: cross-entropy of logits/log-probs against int labels (N,); binary: sigmoid BCE
    with NaN labels (missing) masked out per task; regression: squared error, NaN masked.
    """
    if task == "multiclass":
        per_row = optax.softmax_cross_entropy_with_integer_labels(outputs, labels)
        weight = mask.astype(outputs.dtype)
    else:
        labels = labels.reshape(outputs.shape)
        weight = (~jnp.isnan(labels) & mask[:, None]).astype(outputs.dtype)
        clean = jnp.where(jnp.isnan(labels), 0.0, labels)
        if task == "binary":
            per_row = optax.sigmoid_binary_cross_entropy(outputs, clean)
        else:
            per_row = (outputs - clean) ** 2
    return jnp.sum(per_row * weight) / jnp.maximum(weight.sum(), 1)


def numpy_loss(task: str, outputs: np.ndarray, labels: np.ndarray) -> float:
    """`masked_loss` over all rows, in numpy (evaluation runs on the host, once per epoch)."""
    outputs = np.asarray(outputs, np.float64)
    if task == "multiclass":
        shifted = outputs - outputs.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return float(-np.mean(log_probs[np.arange(len(labels)), np.asarray(labels)]))
    labels = np.asarray(labels, np.float64).reshape(outputs.shape)
    known = ~np.isnan(labels)
    y, z = labels[known], outputs[known]
    if task == "binary":  # stable BCE with logits: max(z, 0) - z y + log(1 + exp(-|z|))
        per = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
    else:
        per = (z - y) ** 2
    return float(per.mean()) if per.size else float("nan")
