"""Metrics that add up exactly over batches: weighted means kept as (total, count).

A loss function returns, besides its scalar loss, a dict of `Mean`s. Each holds the weighted sum
of a per-example quantity and the sum of the weights (the mask of real examples), so the padded
rows of a final partial batch count for nothing and an epoch's mean is exact:
sum of totals / sum of counts, not a mean of batch means.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

Array = jax.Array


class Mean(NamedTuple):
    """A weighted mean in the making: `total` = sum(w * value), `count` = sum(w)."""

    total: Array
    count: Array

    @classmethod
    def of(cls, values: Array, weights: Array | None = None) -> Mean:
        """Mean of `values` over every axis, each element weighted by `weights` (e.g. a mask)."""
        values = jnp.asarray(values, jnp.float32)
        if weights is None:
            weights = jnp.ones_like(values)
        weights = jnp.broadcast_to(jnp.asarray(weights, jnp.float32), values.shape)
        return cls(jnp.sum(values * weights), jnp.sum(weights))


# A training loss past this has blown up: chance-level cross-entropy is ln(classes) (< 10 for
# every dataset here) and the regression targets give mean squared errors in the hundreds at
# most. Runs with exploded weights often stay finite for a long time (gradient clipping keeps
# the steps bounded), so a NaN check alone would let them train on for nothing.
DIVERGED_LOSS = 1e6


def loss_diverged(loss: float) -> bool:
    """True for a NaN, infinite or exploded (> DIVERGED_LOSS) training loss."""
    return not math.isfinite(loss) or abs(loss) > DIVERGED_LOSS


def reduce_means(batches: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Combine per-batch metric dicts into plain floats.

    `Mean` values add up exactly; any other scalar counts as a batch mean with weight 1. The sums
    run in float64 on the host after one transfer, so a long epoch loses no precision.
    """
    batches = jax.device_get(list(batches))
    totals: dict[str, list[float]] = {}
    for metrics in batches:
        for name, value in metrics.items():
            total, count = value if isinstance(value, Mean) else (value, 1.0)
            acc = totals.setdefault(name, [0.0, 0.0])
            acc[0] += float(np.asarray(total, np.float64))
            acc[1] += float(np.asarray(count, np.float64))
    return {
        name: total / count if count else float("nan") for name, (total, count) in totals.items()
    }


def classification_metrics(
    logits: Array, labels: Array, mask: Array | None = None, *, label_smoothing: float = 0.0
) -> tuple[Array, dict[str, Mean]]:
    """(loss to minimise, {"loss": Mean cross-entropy, "accuracy": Mean}) over the masked rows.

    The loss to minimise is the masked mean cross-entropy against labels smoothed by
    `label_smoothing`; the reported "loss" is the plain cross-entropy, comparable between runs.
    """
    mask = jnp.ones(labels.shape, jnp.float32) if mask is None else mask.astype(jnp.float32)
    logits = logits.astype(jnp.float32)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    if label_smoothing:
        targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
        objective = optax.softmax_cross_entropy(logits, targets)
    else:
        objective = ce
    loss = jnp.sum(objective * mask) / jnp.maximum(jnp.sum(mask), 1.0)
    correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    return loss, {"loss": Mean.of(ce, mask), "accuracy": Mean.of(correct, mask)}
