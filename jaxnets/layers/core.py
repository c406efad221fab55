"""Affine, flatten and the pointwise activations, each with a hand-derived backward."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxnets.layers.checks import check_float, check_ndim
from jaxnets.layers.vjp import manual_vjp

Array = jax.Array
Params = dict[str, Array]


# ----------------------------------------------------------------------------- affine
def affine_forward(x: Array, params: Params) -> tuple[Array, tuple]:
    """out = flatten(x) @ w + b for x of shape (N, d1, ..., dk), w (D, M), b (M,)."""
    w, b = params["w"], params["b"]
    check_float("affine", "x", x)
    check_ndim("affine", "w", w, 2, "(D, M)")
    if x.ndim < 1:
        raise ValueError(f"affine: x needs a leading batch axis, got shape {x.shape}")
    x2 = x.reshape(x.shape[0], -1)
    if x2.shape[1] != w.shape[0]:
        raise ValueError(
            f"affine: x of shape {x.shape} flattens to {x2.shape[1]} features "
            f"but w has shape {w.shape} (expects {w.shape[0]})"
        )
    if b.shape != (w.shape[1],):
        raise ValueError(f"affine: b must have shape ({w.shape[1]},), got {b.shape}")
    return x2 @ w + b, (x, w)


def affine_backward(dout: Array, cache: tuple) -> tuple[Array, Params]:
    x, w = cache
    x2 = x.reshape(x.shape[0], -1)
    dx = (dout @ w.T).reshape(x.shape)
    return dx, {"w": x2.T @ dout, "b": dout.sum(axis=0)}


affine = manual_vjp(affine_forward, affine_backward)


# ----------------------------------------------------------------------------- flatten
def flatten_forward(x: Array) -> tuple[Array, tuple]:
    """(N, d1, ..., dk) -> (N, d1 * ... * dk)."""
    return x.reshape(x.shape[0], -1), x.shape


def flatten_backward(dout: Array, cache: tuple) -> Array:
    return dout.reshape(cache)


flatten = manual_vjp(flatten_forward, flatten_backward)


# ----------------------------------------------------------------------------- activations
def relu_forward(x: Array) -> tuple[Array, Array]:
    check_float("relu", "x", x)
    # where, not maximum: autodiff of maximum splits the gradient 0.5/0.5 at x == 0, and the
    # plain forward must differentiate exactly like relu_backward (gradient 0 there).
    return jnp.where(x > 0, x, 0), x


def relu_backward(dout: Array, cache: Array) -> Array:
    # The course's convention: the gradient is zero where x <= 0 (subgradient 0 at the kink).
    return jnp.where(cache > 0, dout, 0)


relu = manual_vjp(relu_forward, relu_backward)


def leaky_relu_forward(x: Array, *, negative_slope: float = 0.01) -> tuple[Array, tuple]:
    check_float("leaky_relu", "x", x)
    return jnp.where(x > 0, x, negative_slope * x), (x, negative_slope)


def leaky_relu_backward(dout: Array, cache: tuple) -> Array:
    x, negative_slope = cache
    return jnp.where(x > 0, dout, negative_slope * dout)


leaky_relu = manual_vjp(leaky_relu_forward, leaky_relu_backward)


def sigmoid_forward(x: Array) -> tuple[Array, Array]:
    check_float("sigmoid", "x", x)
    out = jax.nn.sigmoid(x)  # numerically stable for large |x|
    return out, out


def sigmoid_backward(dout: Array, cache: Array) -> Array:
    return dout * cache * (1 - cache)


sigmoid = manual_vjp(sigmoid_forward, sigmoid_backward)


def tanh_forward(x: Array) -> tuple[Array, Array]:
    check_float("tanh", "x", x)
    out = jnp.tanh(x)
    return out, out


def tanh_backward(dout: Array, cache: Array) -> Array:
    return dout * (1 - cache**2)


tanh = manual_vjp(tanh_forward, tanh_backward)

_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


def gelu_forward(x: Array, *, approximate: bool = False) -> tuple[Array, tuple]:
    """GELU x * Phi(x); `approximate=True` is the tanh form used by BERT and GPT-2."""
    check_float("gelu", "x", x)
    if approximate:
        t = jnp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x**3))
        return 0.5 * x * (1 + t), (x, t, approximate)
    cdf = 0.5 * (1 + jax.lax.erf(x / math.sqrt(2)))
    return x * cdf, (x, cdf, approximate)


def gelu_backward(dout: Array, cache: tuple) -> Array:
    x, s, approximate = cache
    if approximate:
        du_dx = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x**2)
        return dout * (0.5 * (1 + s) + 0.5 * x * (1 - s**2) * du_dx)
    pdf = jnp.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)
    return dout * (s + x * pdf)


gelu = manual_vjp(gelu_forward, gelu_backward)
