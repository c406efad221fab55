"""Audit cases for 2-D convolution and max / average pooling, fast and naive loop versions."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxnets.gradcheck.cases.base import LayerCase
from jaxnets.layers import conv, pool

f64 = jnp.float64

# <conv(x, w), dout> is linear in every single coordinate, so central differences have no
# truncation error, only roundoff of about 1e-16 |f| / h = 1e-11 |f| in absolute terms. On the
# few gradient entries where terms nearly cancel (|g| ~ 1e-4) that reads as up to ~1e-6 relative
# (seen: 1.2e-6 worst over 60 random draws); a wrong sign or missing term gives order 1.
CONV_NUMERICAL_THRESHOLD = 1e-5


def _conv_args(x_shape: tuple[int, ...], kernel: tuple[int, int], filters: int = 4):
    def make(key: jax.Array) -> tuple:
        kx, kw, kb = jax.random.split(key, 3)
        w_shape = (*kernel, x_shape[-1], filters)
        w = jax.random.normal(kw, w_shape, f64)
        return jax.random.normal(kx, x_shape, f64), {"w": w, "b": jax.random.normal(kb, (filters,), f64)}

    return make


def _distinct(shape: tuple[int, ...]):
    # Max pooling is not differentiable at ties, and central differences straddling a near-tie
    # are wrong: use a random permutation of values spaced 1/size apart (>> h = 1e-5).
    def make(key: jax.Array) -> tuple:
        n = math.prod(shape)
        return (jax.random.permutation(key, n).astype(f64).reshape(shape) / n,)

    return make


def _conv_case(name: str, forward, backward, x_shape, kernel, **config) -> LayerCase:
    return LayerCase(
        name,
        forward,
        backward,
        _conv_args(x_shape, kernel),
        config,
        numerical_threshold=CONV_NUMERICAL_THRESHOLD,
    )


_fast = (conv.conv2d_forward, conv.conv2d_backward)
_naive = (conv.conv2d_naive_forward, conv.conv2d_naive_backward)
_max = (pool.max_pool_forward, pool.max_pool_backward)
_max_naive = (pool.max_pool_naive_forward, pool.max_pool_naive_backward)
_avg = (pool.avg_pool_forward, pool.avg_pool_backward)
_avg_naive = (pool.avg_pool_naive_forward, pool.avg_pool_naive_backward)

CASES = [
    _conv_case("conv2d (stride 1, same)", *_fast, (2, 5, 5, 3), (3, 3), padding="same"),
    _conv_case("conv2d (stride 2, pad 1)", *_fast, (2, 5, 5, 3), (3, 3), stride=2, padding=1),
    # (6 + 2 - 3) % 2 = 1 and (7 - 2) % 3 = 2: the last input row / columns are never read.
    _conv_case(
        "conv2d (3x2 kernel, stride (2,3), unread rows)",
        *_fast,
        (2, 6, 7, 3),
        (3, 2),
        stride=(2, 3),
        padding=(1, 0),
    ),
    _conv_case("conv2d_naive (stride 2, pad 1)", *_naive, (2, 5, 5, 3), (3, 3), stride=2, padding=1),
    _conv_case(
        "conv2d_naive (3x2 kernel, stride (2,3), unread rows)",
        *_naive,
        (2, 6, 7, 3),
        (3, 2),
        stride=(2, 3),
        padding=(1, 0),
    ),
    LayerCase("max_pool (2x2)", *_max, _distinct((2, 6, 6, 3)), {"window": 2}),
    LayerCase(
        "max_pool (3x3, stride 2, pad 1)",
        *_max,
        _distinct((2, 6, 6, 3)),
        {"window": 3, "stride": 2, "padding": 1},
    ),
    LayerCase("max_pool_naive (2x2)", *_max_naive, _distinct((2, 6, 6, 3)), {"window": 2}),
    LayerCase(
        "max_pool_naive (3x3, stride 2, pad 1)",
        *_max_naive,
        _distinct((2, 6, 6, 3)),
        {"window": 3, "stride": 2, "padding": 1},
    ),
    LayerCase("avg_pool (2x2)", *_avg, _distinct((2, 6, 6, 3)), {"window": 2}),
    LayerCase(
        "avg_pool (3x3, stride 2, pad 1)",
        *_avg,
        _distinct((2, 6, 6, 3)),
        {"window": 3, "stride": 2, "padding": 1},
    ),
    LayerCase(
        "avg_pool_naive (3x3, stride 2, pad 1)",
        *_avg_naive,
        _distinct((2, 6, 6, 3)),
        {"window": 3, "stride": 2, "padding": 1},
    ),
]
