"""Audit cases for whole networks: the hand-chained backward against jax.grad and numerics."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxnets.gradcheck.cases.base import ModelCase, normal, randint
from jaxnets.gradcheck.core import GradCheck, check_model
from jaxnets.models import three_layer_convnet as convnet
from jaxnets.models import two_layer


def _two_layer(seed: int) -> GradCheck:
    kp, kx, ky = jax.random.split(jax.random.key(seed), 3)
    params = two_layer.init_two_layer(kp, 5, 7, 3, weight_scale=0.5, dtype=jnp.float64)
    x = normal(kx, (6, 5))
    y = randint(ky, (6,), 0, 3)
    return check_model(
        "two-layer net (reg 0.1)",
        lambda p: two_layer.two_layer_loss_and_grads(p, x, y, 0.1),
        lambda p: two_layer.two_layer_plain_loss(p, x, y, 0.1),
        lambda p: two_layer.two_layer_loss(p, x, y, 0.1),
        params,
    )


def _three_layer_convnet(seed: int) -> GradCheck:
    kp, kx, ky = jax.random.split(jax.random.key(seed), 3)
    params = convnet.init_three_layer_convnet(
        kp,
        (6, 6, 3),
        num_filters=4,
        filter_size=3,
        hidden_dim=8,
        num_classes=5,
        weight_scale=0.3,
        dtype=jnp.float64,
    )
    x = normal(kx, (2, 6, 6, 3))
    y = randint(ky, (2,), 0, 5)
    return check_model(
        "three-layer conv net (reg 0.05)",
        lambda p: convnet.three_layer_convnet_loss_and_grads(p, x, y, 0.05),
        lambda p: convnet.three_layer_convnet_plain_loss(p, x, y, 0.05),
        lambda p: convnet.three_layer_convnet_loss(p, x, y, 0.05),
        params,
    )


CASES = [
    ModelCase("two-layer net", _two_layer),
    ModelCase("three-layer conv net", _three_layer_convnet),
]
