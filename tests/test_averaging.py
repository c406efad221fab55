"""Weight averaging (jaxnets/training/averaging.py): the recurrence it keeps, and that only
parameters and batch statistics are averaged."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxnets.training.averaging import average_decay, update_average


class _Tiny(nnx.Module):
    def __init__(self):
        self.w = nnx.Param(jnp.zeros((2, 3)))
        self.mean = nnx.BatchStat(jnp.ones(3))
        self.calls = nnx.Variable(jnp.zeros(()))  # neither a parameter nor a statistic


def test_update_average_follows_the_recurrence():
    model = _Tiny()
    averaged = nnx.clone(model)
    rng = np.random.default_rng(0)
    expected = {"w": np.zeros((2, 3)), "mean": np.ones(3)}
    decay = 0.9
    for step in range(30):  # past step 80 / 1 the ramp (1 + t) / (10 + t) would exceed 0.9
        new = {"w": rng.normal(size=(2, 3)), "mean": rng.normal(size=3)}
        model.w[...], model.mean[...] = new["w"], new["mean"]
        model.calls[...] = step + 1
        update_average(averaged, model, jnp.asarray(step), decay)
        d = min(decay, (1 + step) / (10 + step))
        for name in expected:
            expected[name] = d * expected[name] + (1 - d) * new[name]
    # float32 arithmetic on values of order 1: a few ulps over 30 steps.
    np.testing.assert_allclose(np.asarray(averaged.w[...]), expected["w"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(averaged.mean[...]), expected["mean"], rtol=1e-5, atol=1e-6
    )
    assert float(averaged.calls[...]) == 0  # untouched
    assert averaged.w[...].dtype == jnp.float32


def test_average_decay_ramps_up_to_the_decay():
    # The first update copies 90% of the model (the initial weights would otherwise linger).
    assert float(average_decay(0, 0.999)) == np.float32(0.1)
    assert float(average_decay(10**6, 0.999)) == np.float32(0.999)
