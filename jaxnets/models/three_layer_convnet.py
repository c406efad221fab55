"""The course's three-layer conv net, on NHWC images:

    conv (F k x k, stride 1, "same") - relu - 2x2 max pool - affine - relu - affine

followed by softmax cross-entropy and 0.5 * reg * sum(W^2) on the weights. Default sizes are the
course's: 32 filters 7x7, hidden 100, 10 classes, weights N(0, 1e-3^2), biases 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxnets import nn
from jaxnets.layers import conv, core, losses, pool

Array = jax.Array
Params = dict[str, dict[str, Array]]


def init_three_layer_convnet(
    key: Array,
    input_shape: tuple[int, int, int] = (32, 32, 3),
    num_filters: int = 32,
    filter_size: int = 7,
    hidden_dim: int = 100,
    num_classes: int = 10,
    *,
    weight_scale: float = 1e-3,
    dtype=jnp.float32,
) -> Params:
    """input_shape is (H, W, C); the pool halves H and W."""
    h, w, c = input_shape
    k1, k2, k3 = jax.random.split(key, 3)
    pooled = (h // 2) * (w // 2) * num_filters
    normal = jax.random.normal
    return {
        "conv": {
            "w": weight_scale * normal(k1, (filter_size, filter_size, c, num_filters), dtype),
            "b": jnp.zeros((num_filters,), dtype),
        },
        "fc1": {
            "w": weight_scale * normal(k2, (pooled, hidden_dim), dtype),
            "b": jnp.zeros((hidden_dim,), dtype),
        },
        "fc2": {
            "w": weight_scale * normal(k3, (hidden_dim, num_classes), dtype),
            "b": jnp.zeros((num_classes,), dtype),
        },
    }


def _l2(params: Params) -> Array:
    return sum(jnp.sum(layer["w"] ** 2) for layer in params.values())


def three_layer_convnet_scores(params: Params, x: Array) -> Array:
    """Logits through the manual_vjp layers (jax.grad of this runs the hand-derived backward)."""
    h = core.relu(conv.conv2d(x, params["conv"], stride=1, padding="same"))
    h = pool.max_pool(h, window=2, stride=2)
    h = core.relu(core.affine(h, params["fc1"]))
    return core.affine(h, params["fc2"])


def three_layer_convnet_loss(params: Params, x: Array, y: Array, reg: float = 0.0) -> Array:
    scores = three_layer_convnet_scores(params, x)
    return losses.softmax_cross_entropy(scores, y) + 0.5 * reg * _l2(params)


def three_layer_convnet_plain_loss(params: Params, x: Array, y: Array, reg: float = 0.0) -> Array:
    """The same loss from the plain forwards, for `jax.grad` to differentiate by itself (the
    convolution with XLA's kernels, `impl="xla"`: the native CPU kernel is opaque to autodiff)."""
    h, _ = conv.conv2d_forward(x, params["conv"], stride=1, padding="same", impl="xla")
    h, _ = core.relu_forward(h)
    h, _ = pool.max_pool_forward(h, window=2, stride=2)
    h, _ = core.relu_forward(core.affine_forward(h, params["fc1"])[0])
    scores, _ = core.affine_forward(h, params["fc2"])
    loss, _ = losses.softmax_cross_entropy_forward(scores, y)
    return loss + 0.5 * reg * _l2(params)


def three_layer_convnet_loss_and_grads(
    params: Params, x: Array, y: Array, reg: float = 0.0
) -> tuple[Array, Params]:
    """Forward keeping every cache, then the whole-network backward chained by hand."""
    a, conv_cache = conv.conv2d_forward(x, params["conv"], stride=1, padding="same")
    r, relu1_cache = core.relu_forward(a)
    p, pool_cache = pool.max_pool_forward(r, window=2, stride=2)
    f, fc1_cache = core.affine_forward(p, params["fc1"])
    h, relu2_cache = core.relu_forward(f)
    scores, fc2_cache = core.affine_forward(h, params["fc2"])
    loss, loss_cache = losses.softmax_cross_entropy_forward(scores, y)

    dscores = losses.softmax_cross_entropy_backward(jnp.ones_like(loss), loss_cache)
    dh, dfc2 = core.affine_backward(dscores, fc2_cache)
    df = core.relu_backward(dh, relu2_cache)
    dp, dfc1 = core.affine_backward(df, fc1_cache)
    dr = pool.max_pool_backward(dp, pool_cache)
    da = core.relu_backward(dr, relu1_cache)
    _, dconv = conv.conv2d_backward(da, conv_cache)

    grads = {"conv": dconv, "fc1": dfc1, "fc2": dfc2}
    for name, layer in params.items():
        grads[name]["w"] = grads[name]["w"] + reg * layer["w"]
    return loss + 0.5 * reg * _l2(params), grads


class ThreeLayerConvNet(nnx.Module):
    """The same architecture as a Flax NNX module of `jaxnets.nn` layers, returning logits."""

    def __init__(
        self,
        input_shape: tuple[int, int, int] = (32, 32, 3),
        num_filters: int = 32,
        filter_size: int = 7,
        hidden_dim: int = 100,
        num_classes: int = 10,
        *,
        rngs: nnx.Rngs,
    ):
        h, w, c = input_shape
        self.conv = nn.Conv2dReluPool(c, num_filters, filter_size, padding="same", rngs=rngs)
        self.fc1 = nn.Linear((h // 2) * (w // 2) * num_filters, hidden_dim, rngs=rngs)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden_dim, num_classes, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        x = self.conv(x)  # conv - relu - 2x2 max pool, fused
        x = self.relu(self.fc1(x.reshape(x.shape[0], -1)))
        return self.fc2(x)
