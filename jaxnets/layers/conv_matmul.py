"""The matmul conv kernel: im2col (or a Toeplitz-tiled variant of it) and one matrix product.

For CPU layers with few input channels, where XLA's convolution is slow: the patches are
gathered by strided slices, the forward is one matrix product, the backward two more and the
col2im adjoint of the gather. The layout is described above `MatmulPlan`.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxnets.layers.window import Array, Params, Window


# Convolution as ONE matrix product, P @ T, with a tile of t output columns per row of P:
#
#   P[(n,i,j), (a,u,c)] = xp[n, sh*i + a, sw*t*j + u, c]         u < U = sw*(t-1) + kw
#   T[(a,u,c), (q,f)]   = w[a, u - sw*q, c, f] if 0 <= u - sw*q < kw, else 0
#   (P @ T)[(n,i,j), (q,f)] = sum_{a,b,c} xp[n, sh*i + a, sw*(t*j + q) + b, c] w[a,b,c,f]
#                           = out[n, i, t*j + q, f] - bias[f]       (b = u - sw*q)
#
# t = 1 is plain im2col: P is (N*Ho*Wo, kh*kw*C_in), T is w reshaped. With few input channels a
# patch row is short (7x7x3 = 147 floats gathered in runs of 3), building P dominates and P is
# kh*kw = 49 times the input. A tile of t > 1 output columns shares one input span of U columns:
# P shrinks to kh*U/t times the input and is gathered in runs of U*C_in, for U/kw times the
# FLOPs (T is block-banded). `matmul_tile_width` picks t. On CPU this makes the course's
# 7x7x3 -> 32 convolution (forward and weight gradient) faster than `lax.conv_general_dilated`
# (measurements in benchmarks/README.md).
@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class MatmulPlan:
    """Static geometry of the matmul kernel; it rides in the cache like `Window`."""

    win: Window
    channels: tuple[int, int]  # (C_in, C_out)
    tile: int  # t: output columns per row of P
    dtypes: tuple[Any, Any, Any]  # of x, w, b: each gradient is returned in its primal's dtype

    @property
    def tiles(self) -> int:
        """Tiles per output row, ceil(Wo / t); the last one may run past Wo."""
        return -(-self.win.out_hw[1] // self.tile)

    @property
    def span(self) -> int:
        """U: padded-input columns one tile reads."""
        return self.win.stride[1] * (self.tile - 1) + self.win.size[1]

    @property
    def step(self) -> int:
        """Padded-input columns between the starts of consecutive tiles."""
        return self.win.stride[1] * self.tile

    @property
    def extra(self) -> int:
        """Zero columns added at the right so the last tile's span fits (its outputs past Wo are
        dropped)."""
        need = self.step * (self.tiles - 1) + self.span
        return max(0, need - self.win.padded_hw[1])


def matmul_tile_width(c_in: int, kernel_w: int, stride_w: int, out_w: int) -> int:
    """Output columns per patch row for the matmul kernel.

    1 (plain im2col) when a kernel row holds >= 32 input values. Otherwise the largest power of
    two up to 8 (and up to out_w) whose span U costs at most 2x the FLOPs (U <= 2 kw): measured
    best for 7x7x3 (t = 8 or 4) and 3x3x1 (t = 4); 3x3x32 runs as plain im2col.
    """
    if kernel_w * c_in >= 32:
        return 1
    t = 1
    while 2 * t <= min(8, out_w) and stride_w * (2 * t - 1) + kernel_w <= 2 * kernel_w:
        t *= 2
    return t


def _patches(x: Array, plan: MatmulPlan) -> Array:
    """x (N, H, W, C) -> P (N*Ho*tiles, kh*U*C): P[(n,i,j), (a,u,c)] = xp[n, sh*i+a, step*j+u, c].

    XLA's CPU concatenate does not fuse the slices feeding it (each is written out, then copied):
    the layout of the gather below is what was measured fastest, not the only possible one.
    """
    win = plan.win
    (ph, pw), (sh, _), (ho, _), (kh, _) = win.padding, win.stride, win.out_hw, win.size
    n, c, nt, step = x.shape[0], x.shape[3], plan.tiles, plan.step
    xp = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw + plan.extra), (0, 0)))
    if c >= 8:
        # One strided slice per (a, u), concatenated along C: (a, u, c) is T's K order.
        taps = [
            lax.slice(
                xp,
                (0, a, u, 0),
                (n, a + sh * (ho - 1) + 1, u + step * (nt - 1) + 1, c),
                (1, sh, step, 1),
            )
            for a in range(kh)
            for u in range(plan.span)
        ]
        return jnp.concatenate(taps, axis=3).reshape(n * ho * nt, kh * plan.span * c)
    # Few channels: a slice holds runs of only C values, so first gather the U columns of every
    # tile (runs of U*C after the first concat), then the kh rows: measured faster.
    hp = xp.shape[1]
    cols = [
        lax.slice(xp, (0, 0, u, 0), (n, hp, u + step * (nt - 1) + 1, c), (1, 1, step, 1))
        for u in range(plan.span)
    ]
    rows = jnp.concatenate(cols, axis=3)  # (N, Hp, tiles, U*C)
    taps = [
        lax.slice(rows, (0, a, 0, 0), (n, a + sh * (ho - 1) + 1, nt, rows.shape[3]), (1, sh, 1, 1))
        for a in range(kh)
    ]
    return jnp.concatenate(taps, axis=3).reshape(n * ho * nt, kh * plan.span * c)


def _col2im(dpatches: Array, plan: MatmulPlan, n: int) -> Array:
    """Adjoint of `_patches`: dP (N*Ho*tiles, kh*U*C) -> dx (N, H, W, C).

    P[.., i, j, a, u, c] copied xp[n, sh*i + a, step*j + u, c], so each (a, u) slice of dP is
    added back there: lax.pad places it (interior padding spaces the rows by sh and the tiles by
    step) and crops the zero padding and the extra columns (negative edge padding) in one go.
    """
    win = plan.win
    (ph, pw), (sh, _), (ho, _), (kh, _), (h, w) = (
        win.padding,
        win.stride,
        win.out_hw,
        win.size,
        win.in_hw,
    )
    c, nt, step = plan.channels[0], plan.tiles, plan.step
    dp = dpatches.reshape(n, ho, nt, kh, plan.span, c)
    zero = jnp.zeros((), dp.dtype)
    dx = jnp.zeros((n, h, w, c), dp.dtype)
    for a in range(kh):
        for u in range(plan.span):
            rows = (a - ph, h + ph - a - sh * (ho - 1) - 1, sh - 1)
            cols = (u - pw, w + pw - u - step * (nt - 1) - 1, step - 1)
            dx = dx + lax.pad(dp[:, :, :, a, u, :], zero, [(0, 0, 0), rows, cols, (0, 0, 0)])
    return dx


def _toeplitz(w: Array, plan: MatmulPlan) -> Array:
    """w (kh, kw, C_in, C_out) -> T (kh*U*C_in, t*C_out): column block q holds w shifted right by
    sw*q along u (zeros elsewhere)."""
    (kh, kw), sw, (c, f), t, span = (
        plan.win.size,
        plan.win.stride[1],
        plan.channels,
        plan.tile,
        plan.span,
    )
    if t == 1:
        return w.reshape(kh * kw * c, f)
    shifted = [jnp.pad(w, ((0, 0), (sw * q, span - kw - sw * q), (0, 0), (0, 0))) for q in range(t)]
    return jnp.stack(shifted, axis=3).reshape(kh * span * c, t * f)


def _untoeplitz(dt: Array, plan: MatmulPlan) -> Array:
    """Adjoint of `_toeplitz`: w[a,b,c,f] sits in every block q at u = sw*q + b, so its gradient
    sums those entries of dT."""
    (kh, kw), sw, (c, f), t, span = (
        plan.win.size,
        plan.win.stride[1],
        plan.channels,
        plan.tile,
        plan.span,
    )
    if t == 1:
        return dt.reshape(kh, kw, c, f)
    dt = dt.reshape(kh, span, c, t, f)
    return sum(dt[:, sw * q : sw * q + kw, :, q, :] for q in range(t))


def _matmul_forward(
    x: Array, params: Params, win: Window, tile_width: int | None
) -> tuple[Array, tuple]:
    w, b = params["w"], params["b"]
    _, kw, c, f = w.shape
    if tile_width is None:
        tile_width = matmul_tile_width(c, kw, win.stride[1], win.out_hw[1])
    elif isinstance(tile_width, bool) or not isinstance(tile_width, numbers.Integral):
        raise TypeError(f"conv2d: tile_width must be an int, got {tile_width!r}")
    elif tile_width < 1:
        raise ValueError(f"conv2d: tile_width must be >= 1, got {tile_width!r}")
    plan = MatmulPlan(win, (c, f), tile_width, (x.dtype, w.dtype, b.dtype))
    out, p, t = _matmul_apply(x, w, b, plan)
    # P and T are the cache: the backward's two products reuse them (x itself is not needed).
    return out, (p, t, plan)


# Jitted (the plan is static), so that eager calls compile the dozens of slices once instead of
# dispatching them one by one; inside an outer jit this is inlined.
@jax.jit
def _matmul_apply(x: Array, w: Array, b: Array, plan: MatmulPlan) -> tuple[Array, Array, Array]:
    dtype = jnp.result_type(x, w, b)
    (ho, wo), f = plan.win.out_hw, plan.channels[1]
    p = _patches(x.astype(dtype), plan)
    t = _toeplitz(w.astype(dtype), plan)
    out = (p @ t).reshape(x.shape[0], ho, plan.tiles * plan.tile, f)[:, :, :wo]
    return out + b.astype(dtype), p, t


# Backward of out = crop(P @ T) + bias, by the matmul rule (Y = P T: dP = dY T^T, dT = P^T dY)
# and the adjoints of the three linear maps around it:
#   dY    = dout zero-padded from Wo to tiles*t columns (adjoint of the crop), as (rows, t*C_out);
#   dw    = untoeplitz(P^T dY): each w entry appears t times in T, its gradient is their sum;
#   dx    = col2im(dY T^T): each entry of P is a copy of one xp entry, so the copies' gradients
#           add up there, and the padding's (and the extra columns') gradients are dropped;
#   dbias = dout summed over n, i, j, as for the lax kernel.
def _matmul_backward(dout: Array, cache: tuple) -> tuple[Array, Params]:
    return _matmul_grads(dout, *cache)


@jax.jit
def _matmul_grads(dout: Array, p: Array, t: Array, plan: MatmulPlan) -> tuple[Array, Params]:
    x_dtype, w_dtype, b_dtype = plan.dtypes
    n, _, wo, _ = dout.shape
    width = plan.tiles * plan.tile
    dy = jnp.pad(dout, ((0, 0), (0, 0), (0, width - wo), (0, 0))).reshape(p.shape[0], -1)
    dw = _untoeplitz(p.T @ dy, plan)
    dx = _col2im(dy @ t.T, plan, n)
    db = dout.sum(axis=(0, 1, 2))
    return dx.astype(x_dtype), {"w": dw.astype(w_dtype), "b": db.astype(b_dtype)}
