"""Audit cases for affine, flatten, the activations, softmax and the losses."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxnets.gradcheck.cases.base import LayerCase, normal, randint
from jaxnets.layers import core, losses


def _away_from_zero(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    # Kinked functions (relu, leaky relu) have no derivative at 0: keep inputs off the kink so
    # central differences with h=1e-5 never straddle it.
    x = normal(key, shape)
    return jnp.where(jnp.abs(x) < 0.05, x + 0.1, x)


def _affine_args(key: jax.Array) -> tuple:
    kx, kw, kb = jax.random.split(key, 3)
    return normal(kx, (4, 3, 2, 2)), {"w": normal(kw, (12, 5)), "b": normal(kb, (5,))}


def _scores_and_labels(key: jax.Array) -> tuple:
    kx, ky = jax.random.split(key)
    return normal(kx, (6, 5)), randint(ky, (6,), 0, 5)


def _scores_and_soft_targets(key: jax.Array) -> tuple:
    kx, ky = jax.random.split(key)
    return normal(kx, (6, 5)), jax.nn.softmax(normal(ky, (6, 5)))


def _probs_and_labels(key: jax.Array) -> tuple:
    x, y = _scores_and_labels(key)
    return jax.nn.softmax(x), y


def _pred_and_target(key: jax.Array) -> tuple:
    kx, ky = jax.random.split(key)
    return normal(kx, (5, 3)), normal(ky, (5, 3))


def _one(shape: tuple[int, ...], away_from_kink: bool = False):
    draw = _away_from_zero if away_from_kink else normal
    return lambda key: (draw(key, shape),)


CASES = [
    LayerCase("affine", core.affine_forward, core.affine_backward, _affine_args),
    LayerCase("flatten", core.flatten_forward, core.flatten_backward, _one((2, 3, 4))),
    LayerCase("relu", core.relu_forward, core.relu_backward, _one((4, 10), True)),
    LayerCase(
        "leaky_relu",
        core.leaky_relu_forward,
        core.leaky_relu_backward,
        _one((4, 10), True),
        {"negative_slope": 0.1},
    ),
    LayerCase("sigmoid", core.sigmoid_forward, core.sigmoid_backward, _one((4, 10))),
    LayerCase("tanh", core.tanh_forward, core.tanh_backward, _one((4, 10))),
    LayerCase("gelu", core.gelu_forward, core.gelu_backward, _one((4, 10))),
    LayerCase(
        "gelu (tanh)", core.gelu_forward, core.gelu_backward, _one((4, 10)), {"approximate": True}
    ),
    LayerCase("softmax", losses.softmax_forward, losses.softmax_backward, _one((4, 7))),
    LayerCase("log_softmax", losses.log_softmax_forward, losses.log_softmax_backward, _one((4, 7))),
    LayerCase(
        "cross_entropy",
        losses.cross_entropy_forward,
        losses.cross_entropy_backward,
        _probs_and_labels,
    ),
    LayerCase(
        "softmax_cross_entropy",
        losses.softmax_cross_entropy_forward,
        losses.softmax_cross_entropy_backward,
        _scores_and_labels,
    ),
    LayerCase(
        "softmax_cross_entropy (soft)",
        losses.softmax_cross_entropy_forward,
        losses.softmax_cross_entropy_backward,
        _scores_and_soft_targets,
    ),
    LayerCase("svm_loss", losses.svm_loss_forward, losses.svm_loss_backward, _scores_and_labels),
    LayerCase("mse", losses.mse_forward, losses.mse_backward, _pred_and_target),
]
