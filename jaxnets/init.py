"""Weight initialisers: Xavier/He uniform (course B), small normal (course A), and their fans;
`create_module` builds a whole NNX module's parameters in one jitted call.

Shapes follow the repo's layouts: dense weights (in, out), conv weights HWIO (kh, kw, c_in, c_out).
For conv the fans count every input of one output unit: fan_in = kh*kw*c_in,
fan_out = kh*kw*c_out (the same rule as torch and flax, with the receptive field leading).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import jax
import jax.numpy as jnp
from flax import nnx

M = TypeVar("M")

Array = jax.Array


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) for a dense (in, out) or conv (*kernel, c_in, c_out) weight shape."""
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError(
            f"fans: need a weight of shape (in, out) or (*kernel, c_in, c_out), got {shape} "
            "(fan in/out are undefined for biases; initialise those to zero)"
        )
    receptive = math.prod(shape[:-2])  # 1 for dense weights
    return receptive * shape[-2], receptive * shape[-1]


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for a nonlinearity, as torch.nn.init.calculate_gain.

    linear / conv / sigmoid: 1, tanh: 5/3, relu: sqrt(2), leaky_relu: sqrt(2 / (1 + slope**2))
    with slope `param` (default 0.01), selu: 3/4.
    """
    linear_like = ("linear", "identity", "sigmoid", "conv1d", "conv2d", "conv3d")
    linear_like += ("conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
    if nonlinearity in linear_like:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, int | float):
            raise ValueError(f"calculate_gain: negative slope {slope!r} is not a number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 0.75
    known = (*linear_like, "tanh", "relu", "leaky_relu", "selu")
    raise ValueError(f"calculate_gain: unknown nonlinearity {nonlinearity!r}; known: {known}")


def xavier_uniform(
    key: Array, shape: tuple[int, ...], gain: float = 1.0, dtype: jnp.dtype = jnp.float32
) -> Array:
    """U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)); variance a**2 / 3."""
    fan_in, fan_out = fans(shape)
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(key, shape, dtype, minval=-a, maxval=a)


def he_uniform(
    key: Array, shape: tuple[int, ...], gain: float = math.sqrt(2.0), dtype: jnp.dtype = jnp.float32
) -> Array:
    """U(-a, a) with a = gain * sqrt(3 / fan_in); with gain sqrt(2) the variance is 2 / fan_in."""
    fan_in, _ = fans(shape)
    a = gain * math.sqrt(3.0 / fan_in)
    return jax.random.uniform(key, shape, dtype, minval=-a, maxval=a)


def normal(
    key: Array, shape: tuple[int, ...], scale: float = 1e-3, dtype: jnp.dtype = jnp.float32
) -> Array:
    """scale * N(0, 1): course A's weight_scale initialisation (biases are zeros)."""
    return scale * jax.random.normal(key, shape, dtype)


def create_module(factory: Callable[[], M]) -> M:
    """`factory()` (an NNX module's construction) as one jitted call, with the classic threefry.

    Eager initialisation compiles one XLA program per op; jitted, the whole init is one
    program. The classic (non-partitionable) threefry compiles several times faster on CPU
    than JAX's default partitionable one: parameters are as random and as reproducible, only
    not the same numbers as under the default.
    """
    with jax.threefry_partitionable(False):
        return nnx.jit(factory)()
