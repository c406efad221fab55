"""Max and average pooling in NHWC, each with a hand-derived backward; fast and naive versions.

`window` and `stride` are an int or (kh, kw) / (sh, sw); stride defaults to the window. Padding
follows conv2d ("same", "valid", an int or a pair, symmetric) and must be smaller than the window,
so every window holds at least one real input. Average pooling pads with zeros that count in the
average (course B). Max pooling pads with -inf, so padding never wins (the usual convention; it
differs from zero padding only on windows whose inputs are all negative).

Fast path: when stride == window the windows tile the input, and pooling is a crop (rows no window
reaches), a reshape to (N, Ho, kh, Wo, kw, C) and a max/mean: much faster on CPU than
`lax.reduce_window` and its autodiff. Otherwise the forward is `lax.reduce_window` and the backward
adds up one strided "tap" per kernel position. Max pool routes each output's gradient to ONE input
on ties, the first in row-major window order (like argmax), so no gradient is duplicated.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jaxnets.layers.vjp import manual_vjp
from jaxnets.layers.window import (
    Padding,
    Pair,
    Window,
    crop_padding,
    pad_input,
    sliding_window,
    window_positions,
)

Array = jax.Array


def _pool_window(
    layer: str, x: Array, window: Pair, stride: Pair | None, padding: Padding
) -> Window:
    win = sliding_window(layer, x, window, window if stride is None else stride, padding)
    if any(p >= k for p, k in zip(win.padding, win.size)):
        raise ValueError(
            f"{layer}: padding {win.padding} must be smaller than the window {win.size}, "
            "else some windows would hold only padding"
        )
    return win


def _tiles(win: Window) -> bool:
    return win.stride == win.size


def _blocks(xp: Array, win: Window) -> Array:
    """Padded input -> (N, Ho, kh, Wo, kw, C) non-overlapping windows (stride == window)."""
    (kh, kw), (ho, wo) = win.size, win.out_hw
    n, c = xp.shape[0], xp.shape[3]
    return xp[:, : ho * kh, : wo * kw, :].reshape(n, ho, kh, wo, kw, c)


def _unblock(g: Array, win: Window) -> Array:
    """Adjoint of `_blocks` and of the padding: (N, Ho, kh, Wo, kw, C) gradient -> dx."""
    n, ho, kh, wo, kw, c = g.shape
    (ph, pw), (hp, wp) = win.padding, win.padded_hw
    # Rows no window reached get zero gradient (pad the bottom back to Hp), and the padding rows
    # are dropped (a negative low pad crops): one lax.pad does both.
    config = [(0, 0, 0), (-ph, hp - ho * kh - ph, 0), (-pw, wp - wo * kw - pw, 0), (0, 0, 0)]
    return lax.pad(g.reshape(n, ho * kh, wo * kw, c), jnp.zeros((), g.dtype), config)


def _tap(xp: Array, win: Window, a: int, b: int) -> Array:
    """Tap (a, b) of every window: out[n,i,j,c] = xp[n, a + sh*i, b + sw*j, c], (N, Ho, Wo, C)."""
    (sh, sw), (ho, wo) = win.stride, win.out_hw
    end = (xp.shape[0], a + sh * (ho - 1) + 1, b + sw * (wo - 1) + 1, xp.shape[3])
    return lax.slice(xp, (0, a, b, 0), end, (1, sh, sw, 1))


def _untap(g: Array, win: Window, a: int, b: int) -> Array:
    """Adjoint of `_tap` and of the padding: put g[n,i,j,c] at row a + sh*i, column b + sw*j of a
    zero padded-input gradient (lax.pad's interior padding spaces the rows), then crop to x."""
    (sh, sw), (ho, wo), (hp, wp), (ph, pw) = win.stride, win.out_hw, win.padded_hw, win.padding
    config = [
        (0, 0, 0),
        (a - ph, hp - a - sh * (ho - 1) - 1 - ph, sh - 1),
        (b - pw, wp - b - sw * (wo - 1) - 1 - pw, sw - 1),
        (0, 0, 0),
    ]
    return lax.pad(g, jnp.zeros((), g.dtype), config)


def _reduce_window(xp: Array, win: Window, init: float, op) -> Array:
    # A Python scalar init lets lax recognise the monoid (reduce_window_max / _sum, which have
    # autodiff rules); an array init becomes a generic reduce_window that jax.vjp cannot handle.
    return lax.reduce_window(xp, init, op, (1, *win.size, 1), (1, *win.stride, 1), "VALID")


# ----------------------------------------------------------------------------- max pool
def max_pool_forward(
    x: Array, *, window: Pair = 2, stride: Pair | None = None, padding: Padding = 0
) -> tuple[Array, tuple]:
    """out[n,i,j,c] = max over the window at (sh*i, sw*j) of the (-inf) padded x."""
    win = _pool_window("max_pool", x, window, stride, padding)
    xp = pad_input(x, win, -jnp.inf)
    if _tiles(win):
        out = _blocks(xp, win).max(axis=(2, 4))
    else:
        out = _reduce_window(xp, win, -jnp.inf, lax.max)
    return out, (x, out, win)


def max_pool_backward(dout: Array, cache: tuple) -> Array:
    # Each output IS one input (its window's max), so d out / d x is 1 at that input and 0
    # elsewhere: the gradient goes to the argmax. The argmax is found again by comparing the window
    # with the output; on ties only the first match in row-major window order gets it.
    x, out, win = cache
    (kh, kw) = win.size
    xp = pad_input(x, win, -jnp.inf)
    if _tiles(win):
        is_max = _blocks(xp, win) == out[:, :, None, :, None, :]
        tap = (jnp.arange(kh)[:, None] * kw + jnp.arange(kw)).reshape(1, 1, kh, 1, kw, 1)
        first = jnp.where(is_max, tap, kh * kw).min(axis=(2, 4), keepdims=True)
        return _unblock(jnp.where(tap == first, dout[:, :, None, :, None, :], 0), win)
    # Overlapping windows: walk the taps in row-major order; a window's gradient goes to the first
    # tap that equals its max, and windows sharing an input add up there.
    taken = jnp.zeros(out.shape, bool)
    dx = jnp.zeros(x.shape, dout.dtype)
    for a in range(kh):
        for b in range(kw):
            hit = (_tap(xp, win, a, b) == out) & ~taken
            taken = taken | hit
            dx = dx + _untap(jnp.where(hit, dout, 0), win, a, b)
    return dx


max_pool = manual_vjp(max_pool_forward, max_pool_backward)


def max_pool_naive_forward(
    x: Array, *, window: Pair = 2, stride: Pair | None = None, padding: Padding = 0
) -> tuple[Array, tuple]:
    """Same as `max_pool_forward`, one output position at a time."""
    win = _pool_window("max_pool_naive", x, window, stride, padding)
    xp = pad_input(x, win, -jnp.inf)
    outs = [xp[:, rows, cols, :].max(axis=(1, 2)) for _, _, rows, cols in window_positions(win)]
    return jnp.stack(outs, axis=1).reshape(x.shape[0], *win.out_hw, x.shape[3]), (x, win)


def max_pool_naive_backward(dout: Array, cache: tuple) -> Array:
    x, win = cache
    (kh, kw) = win.size
    n, c = x.shape[0], x.shape[3]
    xp = pad_input(x, win, -jnp.inf)
    dxp = jnp.zeros(xp.shape, dout.dtype)
    for i, j, rows, cols in window_positions(win):
        patch = xp[:, rows, cols, :].reshape(n, kh * kw, c)
        first = jnp.argmax(patch, axis=1)  # argmax takes the first position on ties
        onehot = jax.nn.one_hot(first, kh * kw, axis=1, dtype=dout.dtype)  # (N, kh*kw, C)
        dwin = onehot * dout[:, i, j, None, :]
        dxp = dxp.at[:, rows, cols, :].add(dwin.reshape(n, kh, kw, c))
    return crop_padding(dxp, win)


max_pool_naive = manual_vjp(max_pool_naive_forward, max_pool_naive_backward)


# ----------------------------------------------------------------------------- average pool
def avg_pool_forward(
    x: Array, *, window: Pair = 2, stride: Pair | None = None, padding: Padding = 0
) -> tuple[Array, Window]:
    """out[n,i,j,c] = mean over the window at (sh*i, sw*j) of the zero-padded x."""
    win = _pool_window("avg_pool", x, window, stride, padding)
    xp = pad_input(x, win)
    if _tiles(win):
        out = _blocks(xp, win).mean(axis=(2, 4))
    else:
        out = _reduce_window(xp, win, 0.0, lax.add) / (win.size[0] * win.size[1])
    return out, win


def avg_pool_backward(dout: Array, cache: Window) -> Array:
    # Every input in a window (padding included) gets 1/(kh*kw) of the window's gradient.
    win = cache
    (kh, kw) = win.size
    g = dout / (kh * kw)
    if _tiles(win):
        n, ho, wo, c = dout.shape
        return _unblock(jnp.broadcast_to(g[:, :, None, :, None, :], (n, ho, kh, wo, kw, c)), win)
    return sum(_untap(g, win, a, b) for a in range(kh) for b in range(kw))


avg_pool = manual_vjp(avg_pool_forward, avg_pool_backward)


def avg_pool_naive_forward(
    x: Array, *, window: Pair = 2, stride: Pair | None = None, padding: Padding = 0
) -> tuple[Array, Window]:
    """Same as `avg_pool_forward`, one output position at a time."""
    win = _pool_window("avg_pool_naive", x, window, stride, padding)
    xp = pad_input(x, win)
    outs = [xp[:, rows, cols, :].mean(axis=(1, 2)) for _, _, rows, cols in window_positions(win)]
    return jnp.stack(outs, axis=1).reshape(x.shape[0], *win.out_hw, x.shape[3]), win


def avg_pool_naive_backward(dout: Array, cache: Window) -> Array:
    win = cache
    (kh, kw), (hp, wp) = win.size, win.padded_hw
    dxp = jnp.zeros((dout.shape[0], hp, wp, dout.shape[3]), dout.dtype)
    for i, j, rows, cols in window_positions(win):
        dxp = dxp.at[:, rows, cols, :].add(dout[:, i, j, None, None, :] / (kh * kw))
    return crop_padding(dxp, win)


avg_pool_naive = manual_vjp(avg_pool_naive_forward, avg_pool_naive_backward)
