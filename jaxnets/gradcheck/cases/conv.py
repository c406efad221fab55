"""Audit cases for 2-D convolution and max / average pooling, fast and naive loop versions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.gradcheck.cases.base import LayerCase, normal
from jaxnets.layers import conv, pool

# <conv(x, w), dout> is linear in every single coordinate, so central differences have no
# truncation error, only roundoff of about 1e-16 |f| / h = 1e-11 |f| in absolute terms. On the
# few gradient entries where terms nearly cancel (|g| ~ 1e-4) that reads as up to ~1e-6 relative
# (seen: 1.2e-6 worst over 60 random draws); a wrong sign or missing term gives order 1.
CONV_NUMERICAL_THRESHOLD = 1e-5


def _conv_args(x_shape: tuple[int, ...], kernel: tuple[int, int], filters: int = 4):
    def make(key: jax.Array) -> tuple:
        kx, kw, kb = jax.random.split(key, 3)
        w = normal(kw, (*kernel, x_shape[-1], filters))
        return normal(kx, x_shape), {"w": w, "b": normal(kb, (filters,))}

    return make


def _distinct(shape: tuple[int, ...]):
    # Max pooling is not differentiable at ties, and central differences straddling a near-tie
    # are wrong: use a random permutation of values spaced 1/size apart (>> h = 1e-5), drawn on
    # the host (jax.random compiles anew for every float64 shape).
    def make(key: jax.Array) -> tuple:
        rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())
        n = int(np.prod(shape))
        return (jnp.asarray(rng.permutation(n).reshape(shape) / n, jnp.float64),)

    return make


def _case(name: str, pair: tuple, make_args, numerical_threshold: float = 1e-6, **config):
    # Jitted forward and backward: one compile per case instead of one per eager op (the naive
    # loops slice at dozens of static offsets, and float64 convolutions compile slowly on CPU).
    forward, backward = pair
    return LayerCase(
        name,
        jax.jit(forward, static_argnames=tuple(config)),
        jax.jit(backward),
        make_args,
        config,
        numerical_threshold=numerical_threshold,
    )


def _conv_case(name: str, pair: tuple, x_shape, kernel, **config) -> LayerCase:
    return _case(name, pair, _conv_args(x_shape, kernel), CONV_NUMERICAL_THRESHOLD, **config)


_fast = (conv.conv2d_forward, conv.conv2d_backward)
_naive = (conv.conv2d_naive_forward, conv.conv2d_naive_backward)
_sandwich = (conv.conv2d_relu_pool_forward, conv.conv2d_relu_pool_backward)
_max = (pool.max_pool_forward, pool.max_pool_backward)
_max_naive = (pool.max_pool_naive_forward, pool.max_pool_naive_backward)
_avg = (pool.avg_pool_forward, pool.avg_pool_backward)
_avg_naive = (pool.avg_pool_naive_forward, pool.avg_pool_naive_backward)
_x = _distinct((2, 6, 6, 3))
_overlap = {"window": 3, "stride": 2, "padding": 1}

CASES = [
    _conv_case("conv2d (stride 1, same)", _fast, (2, 5, 5, 3), (3, 3), padding="same"),
    _conv_case("conv2d (stride 2, pad 1)", _fast, (2, 5, 5, 3), (3, 3), stride=2, padding=1),
    # (6 + 2 - 3) % 2 = 1 and (7 - 2) % 3 = 2: the last input row / columns are never read.
    _conv_case(
        "conv2d (3x2 kernel, stride (2,3), unread rows)",
        _fast,
        (2, 6, 7, 3),
        (3, 2),
        stride=(2, 3),
        padding=(1, 0),
    ),
    # The cases above use impl="auto" (the matmul kernel on CPU, lax elsewhere); these name the
    # kernel, so both are audited whatever the backend.
    _conv_case(
        "conv2d lax kernel (stride 2, padding 1)",
        _fast,
        (2, 5, 5, 3),
        (3, 3),
        stride=2,
        padding=1,
        impl="lax",
    ),
    _conv_case(
        "conv2d matmul kernel (plain im2col, stride 2, padding 1)",
        _fast,
        (2, 5, 5, 3),
        (3, 3),
        stride=2,
        padding=1,
        impl="matmul",
        tile_width=1,
    ),
    # Wo = 6 in tiles of 4: the second tile runs 2 columns past the edge (extra zero columns).
    _conv_case(
        "conv2d matmul kernel (5x5 same, 4-column tiles past the edge)",
        _fast,
        (1, 4, 6, 2),
        (5, 5),
        padding="same",
        impl="matmul",
        tile_width=4,
    ),
    _conv_case(
        "conv2d matmul kernel (3x2, stride (2,3), 2-column tiles, last row/columns never read)",
        _fast,
        (2, 6, 7, 3),
        (3, 2),
        stride=(2, 3),
        padding=(1, 0),
        impl="matmul",
        tile_width=2,
    ),
    _conv_case(
        "conv2d mixed kernel (lax forward and dx, matmul dw; stride 2, padding 1)",
        _fast,
        (2, 5, 5, 3),
        (3, 3),
        stride=2,
        padding=1,
        impl="mixed",
    ),
    _conv_case("conv2d_naive (stride 2, pad 1)", _naive, (2, 5, 5, 3), (3, 3), stride=2, padding=1),
    _conv_case(
        "conv2d_naive (3x2 kernel, stride (2,3), unread rows)",
        _naive,
        (2, 6, 7, 3),
        (3, 2),
        stride=(2, 3),
        padding=(1, 0),
    ),
    # Random normal inputs: the conv outputs inside a pool window tie with probability 0, and
    # central differences stay on one side of every relu kink and window maximum except with
    # tiny probability (h = 1e-5 against gaps of order 1 / window count).
    _conv_case(
        "conv2d_relu_pool (3x3 same, 2x2 pool, odd sizes)",
        _sandwich,
        (2, 5, 7, 3),
        (3, 3),
        padding="same",
        pool=2,
    ),
    _case("max_pool (2x2)", _max, _x, window=2),
    _case("max_pool (3x3, stride 2, pad 1)", _max, _x, **_overlap),
    _case("max_pool_naive (2x2)", _max_naive, _x, window=2),
    _case("max_pool_naive (3x3, stride 2, pad 1)", _max_naive, _x, **_overlap),
    _case("avg_pool (2x2)", _avg, _x, window=2),
    _case("avg_pool (3x3, stride 2, pad 1)", _avg, _x, **_overlap),
    _case("avg_pool_naive (3x3, stride 2, pad 1)", _avg_naive, _x, **_overlap),
]
