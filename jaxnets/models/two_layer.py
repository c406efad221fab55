"""The two-layer fully connected net: affine - relu - affine - softmax cross-entropy.

Three forms of the same network:
- `two_layer_loss_and_grads`: the whole-network backward written out by hand, layer by layer;
- `two_layer_loss`: built from the `manual_vjp` layers, so `jax.grad` of it runs the same
  hand-derived math under `jit`;
- `TwoLayerNet`: a Flax NNX module of `jaxnets.nn` layers, for the shared trainer.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxnets import nn
from jaxnets.layers import core, losses

Array = jax.Array
Params = dict[str, dict[str, Array]]


def init_two_layer(
    key: Array,
    input_dim: int,
    hidden_dim: int,
    num_classes: int,
    *,
    weight_scale: float | None = None,
    dtype=jnp.float32,
) -> Params:
    """Weights N(0, weight_scale^2) (He-style sqrt(2/fan_in) when not given), biases zero."""
    k1, k2 = jax.random.split(key)
    s1 = weight_scale if weight_scale is not None else (2.0 / input_dim) ** 0.5
    s2 = weight_scale if weight_scale is not None else (2.0 / hidden_dim) ** 0.5
    return {
        "fc1": {
            "w": s1 * jax.random.normal(k1, (input_dim, hidden_dim), dtype),
            "b": jnp.zeros((hidden_dim,), dtype),
        },
        "fc2": {
            "w": s2 * jax.random.normal(k2, (hidden_dim, num_classes), dtype),
            "b": jnp.zeros((num_classes,), dtype),
        },
    }


def _l2(params: Params) -> Array:
    return sum(jnp.sum(layer["w"] ** 2) for layer in params.values())


def two_layer_scores(params: Params, x: Array) -> Array:
    """Class scores (logits) through the manual_vjp layers."""
    h = core.relu(core.affine(x, params["fc1"]))
    return core.affine(h, params["fc2"])


def two_layer_loss(params: Params, x: Array, y: Array, reg: float = 0.0) -> Array:
    """Softmax cross-entropy + 0.5 * reg * sum(W^2); its `jax.grad` is the hand-derived gradient."""
    return losses.softmax_cross_entropy(two_layer_scores(params, x), y) + 0.5 * reg * _l2(params)


def two_layer_plain_loss(params: Params, x: Array, y: Array, reg: float = 0.0) -> Array:
    """The same loss from the plain forwards only, for `jax.grad` to differentiate by itself."""
    h, _ = core.relu_forward(core.affine_forward(x, params["fc1"])[0])
    scores, _ = core.affine_forward(h, params["fc2"])
    loss, _ = losses.softmax_cross_entropy_forward(scores, y)
    return loss + 0.5 * reg * _l2(params)


def two_layer_loss_and_grads(
    params: Params, x: Array, y: Array, reg: float = 0.0
) -> tuple[Array, Params]:
    """Forward through every layer keeping caches, then the backward chained by hand."""
    a1, fc1_cache = core.affine_forward(x, params["fc1"])
    h1, relu_cache = core.relu_forward(a1)
    scores, fc2_cache = core.affine_forward(h1, params["fc2"])
    loss, loss_cache = losses.softmax_cross_entropy_forward(scores, y)

    dscores = losses.softmax_cross_entropy_backward(jnp.ones_like(loss), loss_cache)
    dh1, dfc2 = core.affine_backward(dscores, fc2_cache)
    da1 = core.relu_backward(dh1, relu_cache)
    _, dfc1 = core.affine_backward(da1, fc1_cache)

    grads = {"fc1": dfc1, "fc2": dfc2}
    for name, layer in params.items():
        grads[name]["w"] = grads[name]["w"] + reg * layer["w"]
    return loss + 0.5 * reg * _l2(params), grads


class TwoLayerNet(nnx.Module):
    """affine - relu - affine, returning logits (softmax lives in the loss)."""

    def __init__(self, input_dim: int, hidden_dim: int, num_classes: int, *, rngs: nnx.Rngs):
        self.fc1 = nn.Linear(input_dim, hidden_dim, rngs=rngs)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden_dim, num_classes, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        x = x.reshape(x.shape[0], -1)
        return self.fc2(self.relu(self.fc1(x)))
