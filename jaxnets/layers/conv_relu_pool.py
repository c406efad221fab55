"""Course B's conv - relu - max pool sandwich as one layer, relu and pool fused.

On the native CPU kernel a 2x2 pool is done in registers and the conv output is never stored;
on the other kernels the relu and pool are one pass over the conv output forward and one
backward. Its gradients equal those of the separate layers (see below).
"""

from __future__ import annotations

import functools
import numbers

import jax.numpy as jnp
from jax import lax

from jaxnets import native
from jaxnets.layers.conv_fast import _chosen_impl, conv2d_backward, conv2d_forward
from jaxnets.layers.conv_native import NativePlan, _native_input_grad
from jaxnets.layers.vjp import manual_vjp
from jaxnets.layers.window import Array, Padding, Pair, Params, Window, conv_window, pad_input


# Course B's conv - relu - max pool "sandwich" with the relu and a non-overlapping k x k max pool
# fused: one pass over the convolution's output forward (the k*k window taps are strided slices,
# their max an elementwise chain) and one backward, where separate layers take four or five.
# relu(max(window)) = max(relu(window)), and the gradient reaches the first maximum of a window
# (row-major order, as `max_pool`) only when that maximum is > 0 (relu's gradient is 0 at x <= 0,
# the course's convention), so the sandwich's gradients equal those of the separate layers.
def _pool_taps(a: Array, k: int) -> list[Array]:
    """The k*k taps of the k x k windows tiling a, in row-major window order, (N, H//k, W//k, C)."""
    n, h, w, c = a.shape
    ho, wo = h // k, w // k
    return [
        lax.slice(
            a, (0, di, dj, 0), (n, di + k * (ho - 1) + 1, dj + k * (wo - 1) + 1, c), (1, k, k, 1)
        )
        for di in range(k)
        for dj in range(k)
    ]


def conv2d_relu_pool_forward(
    x: Array,
    params: Params,
    *,
    stride: Pair = 1,
    padding: Padding = 0,
    pool: int = 2,
    impl: str = "auto",
    tile_width: int | None = None,
) -> tuple[Array, tuple]:
    """max_pool(relu(conv2d(x, params, ...)), window=pool, stride=pool), fused.

    The conv arguments are `conv2d_forward`'s; the pool windows tile the conv output (rows and
    columns past a multiple of `pool` are dropped, as `max_pool` does). Returns (out, cache).
    """
    if isinstance(pool, bool) or not isinstance(pool, numbers.Integral) or pool < 1:
        raise ValueError(f"conv2d_relu_pool: pool must be a positive int, got {pool!r}")
    win = conv_window("conv2d_relu_pool", x, params, stride, padding)
    (ho, wo) = win.out_hw
    if ho < pool or wo < pool:
        raise ValueError(
            f"conv2d_relu_pool: the {pool}x{pool} pool is larger than the conv output {ho}x{wo}"
        )
    if pool == 2 and tile_width is None and _chosen_impl(x, params, win, impl) == "native":
        # The native kernel pools in registers: the conv output is never stored.
        out, which = _native_relu_pool(x, params["w"], params["b"], win=win)
        conv_cache = (x, params["w"], params["b"], NativePlan(win))
        return out, (conv_cache, which, _pool_window(win))
    a, conv_cache = conv2d_forward(
        x, params, stride=stride, padding=padding, impl=impl, tile_width=tile_width
    )
    taps = _pool_taps(a, pool)
    top = functools.reduce(jnp.maximum, taps)
    # Which tap gets the gradient: the first that equals the max, or none (k*k) if relu cuts it.
    which = jnp.full(top.shape, pool * pool, jnp.int32)
    for t in reversed(range(pool * pool)):
        which = jnp.where(taps[t] == top, t, which)
    which = jnp.where(top > 0, which, pool * pool).astype(
        jnp.int8 if pool * pool < 127 else jnp.int32
    )
    return jnp.maximum(top, 0), (conv_cache, which, _pool_window(conv_cache[-1].win, pool))


def _pool_window(conv_win: Window, pool: int = 2) -> Window:
    """The pool's geometry over the conv output."""
    return Window((pool, pool), (pool, pool), (0, 0), conv_win.out_hw)


def _native_relu_pool_forward(x: Array, w: Array, b: Array, *, win: Window) -> tuple:
    f32 = jnp.float32
    xp = pad_input(x.astype(f32), win)
    out, which = native.conv2d_relu_pool2_forward(xp, w.astype(f32), b.astype(f32), win.stride)
    cache = ((x, w, b, NativePlan(win)), which, _pool_window(win))
    return (out, which), cache


def _native_relu_pool_backward(dout: Array, cache: tuple) -> tuple[Array, Array, Array]:
    dx, grads = conv2d_relu_pool_backward(dout, cache)
    return dx, grads["w"], grads["b"]


def conv2d_relu_pool_backward(dout: Array, cache: tuple) -> tuple[Array, Params]:
    conv_cache, which, geometry = cache
    if isinstance(conv_cache[-1], NativePlan) and geometry.size == (2, 2):
        return _native_relu_pool_grads(dout, cache)
    return conv2d_backward(_unpool(dout, which, geometry), conv_cache)


def _unpool(dout: Array, which: Array, geometry: Window) -> Array:
    """The conv output's gradient: each window's dout at its recorded tap, 0 elsewhere."""
    # da at tap t = (di, dj) of window (i, j) is dout[i, j] if t is the window's recorded tap,
    # else 0: each tap's (N, Ho, Wo, C) gradient is spread to rows k*i + di, columns k*j + dj by
    # lax.pad (interior padding k - 1), which also zero-fills rows / columns no window reached.
    # (Written with a broadcast to (N, Ho, k, Wo, k, C) instead, XLA fused dout's producer into
    # it and computed every dout entry k*k times.)
    (k, _), (h, w) = geometry.size, geometry.in_hw
    _, ho, wo, _ = dout.shape
    zero = jnp.zeros((), dout.dtype)
    da = 0
    for di in range(k):
        for dj in range(k):
            rows = (di, h - di - k * (ho - 1) - 1, k - 1)
            cols = (dj, w - dj - k * (wo - 1) - 1, k - 1)
            g = jnp.where(which == di * k + dj, dout, zero)
            da = da + lax.pad(g, zero, [(0, 0, 0), rows, cols, (0, 0, 0)])
    return da


def _native_relu_pool_grads(dout: Array, cache: tuple) -> tuple[Array, Params]:
    # The same sums as conv2d_backward(_unpool(...)), but dw and db read the pooled gradient
    # and `which` directly (db: a window's dout goes to one output of channel f, or none when
    # relu cut it); only dx, where it is needed at all, spreads dout to the conv output's size.
    (x, w, b, plan), which, geometry = cache
    win, f32 = plan.win, jnp.float32
    dpool = dout.astype(f32)
    xp = pad_input(x.astype(f32), win)
    dw = native.conv2d_relu_pool2_weight_grad(xp, dpool, which, win.size, win.stride)
    db = jnp.where(which < 4, dpool, 0.0).sum(axis=(0, 1, 2))
    dx = _native_input_grad(_unpool(dpool, which, geometry), w, win)
    return dx.astype(x.dtype), {"w": dw.astype(w.dtype), "b": db.astype(b.dtype)}


conv2d_relu_pool = manual_vjp(conv2d_relu_pool_forward, conv2d_relu_pool_backward)

# As conv_native's `_native_conv`: the FFI call carries its VJP for callers of the plain
# forward. `which` is the aux output (integer, not differentiated).
_native_relu_pool = manual_vjp(_native_relu_pool_forward, _native_relu_pool_backward, has_aux=True)
