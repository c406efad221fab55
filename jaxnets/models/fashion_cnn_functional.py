"""The course's Fashion-MNIST CNN as pure functions on NHWC images (the NNX twin is
`jaxnets.models.cnn.FashionCNN`):

    conv 32 3x3 "same" - relu - 2x2 max pool - conv 64 3x3 "same" - relu - 2x2 max pool -
    affine 128 - relu - dropout (keep 0.5) - affine 10

followed by softmax cross-entropy. Each conv - relu - pool block is the fused sandwich
`conv.conv2d_relu_pool` (one pass over the conv output each way). `fashion_cnn_loss` runs the
hand-derived backward of every layer (manual_vjp); `fashion_cnn_plain_loss` is the same function
from the plain forwards, for `jax.grad` to differentiate by itself. Weights He-uniform, biases 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxnets.init import he_uniform
from jaxnets.layers import conv, core, dropout, losses

Array = jax.Array
Params = dict[str, dict[str, Array]]
KEEP_PROB = 0.5  # dropout's probability of keeping a unit (the course's p)


def init_fashion_cnn(
    key: Array,
    input_shape: tuple[int, int, int] = (28, 28, 1),
    num_classes: int = 10,
    *,
    channels: tuple[int, int] = (32, 64),
    hidden_dim: int = 128,
    dtype=jnp.float32,
) -> Params:
    """input_shape is (H, W, C); each pool halves H and W (rounding down)."""
    h, w, c = input_shape
    c1, c2 = channels
    flat = (h // 2 // 2) * (w // 2 // 2) * c2
    shapes = {
        "conv1": (3, 3, c, c1),
        "conv2": (3, 3, c1, c2),
        "fc1": (flat, hidden_dim),
        "fc2": (hidden_dim, num_classes),
    }
    keys = jax.random.split(key, len(shapes))
    return {
        name: {"w": he_uniform(k, shape, dtype=dtype), "b": jnp.zeros((shape[-1],), dtype)}
        for k, (name, shape) in zip(keys, shapes.items())
    }


def fashion_cnn_scores(
    params: Params,
    x: Array,
    key: Array | None = None,
    *,
    train: bool = False,
    keep_prob: float = KEEP_PROB,
) -> Array:
    """Logits through the manual_vjp layers; `key` drives dropout when `train`."""
    h = conv.conv2d_relu_pool(x, params["conv1"], padding="same", pool=2)
    h = conv.conv2d_relu_pool(h, params["conv2"], padding="same", pool=2)
    h = core.relu(core.affine(h, params["fc1"]))
    h = dropout.dropout(h, key, keep_prob=keep_prob, train=train)
    return core.affine(h, params["fc2"])


def fashion_cnn_loss(
    params: Params, x: Array, y: Array, key: Array | None = None, *, train: bool = True
) -> Array:
    return losses.softmax_cross_entropy(fashion_cnn_scores(params, x, key, train=train), y)


def fashion_cnn_plain_loss(
    params: Params, x: Array, y: Array, key: Array | None = None, *, train: bool = True
) -> Array:
    """The same loss from the plain forwards, for `jax.grad` to differentiate. The convolutions
    use XLA's kernels (`impl="xla"`): the native CPU kernel is opaque to autodiff."""
    h = x
    for name in ("conv1", "conv2"):
        h = conv.conv2d_relu_pool_forward(h, params[name], padding="same", pool=2, impl="xla")[0]
    h = core.relu_forward(core.affine_forward(h, params["fc1"])[0])[0]
    h = dropout.dropout_forward(h, key, keep_prob=KEEP_PROB, train=train)[0]
    scores = core.affine_forward(h, params["fc2"])[0]
    return losses.softmax_cross_entropy_forward(scores, y)[0]
