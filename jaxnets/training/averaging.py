"""Weight averaging: an exponential moving average of a model's parameters and batch statistics,
kept in a second copy of the model that is scored instead of the last weights.

With Adam at a fixed learning rate the weights jitter from step to step, and so do the scores
of consecutive epochs; the average over the last ~1/(1 - decay) steps moves smoothly, so the
epoch that validation picks is picked for the model and not for the noise.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

AVERAGED = (nnx.Param, nnx.BatchStat)


def average_decay(step: jax.Array, decay: float) -> jax.Array:
    """The decay at update `step` (0 for the first): min(decay, (1 + step) / (10 + step)), so
    the initial weights do not linger in the average (at decay 0.999 they would still weigh
    37% after 1,000 steps)."""
    step = jnp.asarray(step, jnp.float32)
    return jnp.minimum(decay, (1 + step) / (10 + step))


def update_average(averaged: nnx.Module, model: nnx.Module, step: jax.Array, decay: float) -> None:
    """averaged <- d * averaged + (1 - d) * model for every parameter and batch statistic, in
    place, with d = average_decay(step, decay)."""
    d = average_decay(step, decay)
    new = jax.tree.map(
        lambda a, m: (d * a + (1 - d) * m).astype(a.dtype),
        nnx.state(averaged, AVERAGED),
        nnx.state(model, AVERAGED),
    )
    nnx.update(averaged, new)
