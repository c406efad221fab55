"""2-D convolution (cross-correlation) in NHWC with HWIO kernels, each with a hand-derived backward.

Two versions of the same layer:
- `conv2d`: the fast one. Forward and backward are each a `lax.conv_general_dilated` call, so XLA
  runs them as real convolutions; the backward is derived below, not left to autodiff.
- `conv2d_naive`: the teaching reference, explicit Python loops over output positions (forward)
  and kernel positions (backward) with small jnp ops inside. Slow; for small inputs and tests.

Geometry (course B): padding "same" = ((kh-1)//2, (kw-1)//2), "valid" = 0, an int, or (ph, pw),
always symmetric zeros; stride an int or (sh, sw); out = (in + 2p - k)//s + 1.
`Window`, `sliding_window` and the padding helpers are shared with the pooling layers.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxnets.layers.checks import check_choice, check_float, check_ndim
from jaxnets.layers.vjp import manual_vjp

Array = jax.Array
Params = dict[str, Array]
Padding = str | int | tuple[int, int]
Pair = int | tuple[int, int]


# ----------------------------------------------------------------------------- geometry
@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class Window:
    """Static geometry of a 2-D window sliding over an NHWC input.

    Registered as a static pytree, so it rides in a layer's cache through `jax.custom_vjp`
    as plain Python ints (a bare int there would be turned into an array).
    """

    size: tuple[int, int]  # (kh, kw)
    stride: tuple[int, int]  # (sh, sw)
    padding: tuple[int, int]  # (ph, pw), applied on both sides
    in_hw: tuple[int, int]  # (H, W) before padding

    @property
    def padded_hw(self) -> tuple[int, int]:
        return tuple(n + 2 * p for n, p in zip(self.in_hw, self.padding))

    @property
    def out_hw(self) -> tuple[int, int]:
        return tuple((n - k) // s + 1 for n, k, s in zip(self.padded_hw, self.size, self.stride))

    @property
    def unread(self) -> tuple[int, int]:
        """Rows / columns at the bottom / right of the padded input that no window reaches."""
        return tuple((n - k) % s for n, k, s in zip(self.padded_hw, self.size, self.stride))

    @property
    def lax_padding(self) -> list[tuple[int, int]]:
        return [(p, p) for p in self.padding]


def _pair(layer: str, name: str, value: Any, minimum: int) -> tuple[int, int]:
    def is_int(v: Any) -> bool:
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    pair = (value, value) if is_int(value) else value
    if not (isinstance(pair, tuple | list) and len(pair) == 2 and all(map(is_int, pair))):
        raise TypeError(f"{layer}: {name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{layer}: {name} must be >= {minimum}, got {value!r}")
    return int(pair[0]), int(pair[1])


def sliding_window(
    layer: str, x: Array, size: Pair, stride: Pair, padding: Padding, *, what: str = "window"
) -> Window:
    """Check an NHWC input and the window geometry; raise naming the problem, before XLA does."""
    check_float(layer, "x", x)
    check_ndim(layer, "x", x, 4, "(N, H, W, C) (NHWC; convert NCHW with nchw_to_nhwc)")
    size = _pair(layer, what, size, 1)
    stride = _pair(layer, "stride", stride, 1)
    if isinstance(padding, str):
        check_choice(layer, "padding", padding, ("same", "valid"))
        padding = ((size[0] - 1) // 2, (size[1] - 1) // 2) if padding == "same" else (0, 0)
    padding = _pair(layer, "padding", padding, 0)
    win = Window(size, stride, padding, (x.shape[1], x.shape[2]))
    hp, wp = win.padded_hw
    if size[0] > hp or size[1] > wp:
        raise ValueError(
            f"{layer}: the {size[0]}x{size[1]} {what} is larger than the padded input {hp}x{wp} "
            f"(x is {x.shape[1]}x{x.shape[2]}, padding {padding})"
        )
    return win


def _conv_window(layer: str, x: Array, params: Params, stride: Pair, padding: Padding) -> Window:
    w, b = params["w"], params["b"]
    check_float(layer, "x", x)
    check_ndim(layer, "x", x, 4, "(N, H, W, C) (NHWC; convert NCHW with nchw_to_nhwc)")
    check_float(layer, "w", w)
    check_ndim(layer, "w", w, 4, "(kh, kw, C_in, C_out) (HWIO; convert OIHW with oihw_to_hwio)")
    check_float(layer, "b", b)
    if w.shape[2] != x.shape[3]:
        raise ValueError(
            f"{layer}: w of shape {w.shape} expects C_in={w.shape[2]} channels but x of shape "
            f"{x.shape} has {x.shape[3]} (x must be NHWC, w HWIO)"
        )
    if b.shape != (w.shape[3],):
        raise ValueError(f"{layer}: b must have shape ({w.shape[3]},), got {b.shape}")
    return sliding_window(layer, x, w.shape[:2], stride, padding, what="kernel")


def pad_input(x: Array, win: Window, value: float = 0.0) -> Array:
    """x (N, H, W, C) -> xp (N, H + 2ph, W + 2pw, C), padded with `value` on every side."""
    (ph, pw) = win.padding
    return jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)), constant_values=value)


def crop_padding(dxp: Array, win: Window) -> Array:
    """The gradient w.r.t. the padded input -> the gradient w.r.t. x (drop the padding)."""
    (ph, pw), (h, w) = win.padding, win.in_hw
    return dxp[:, ph : ph + h, pw : pw + w, :]


def window_positions(win: Window):
    """Yield (i, j, rows, cols): output position (i, j) reads xp[:, rows, cols, :]."""
    (kh, kw), (sh, sw), (ho, wo) = win.size, win.stride, win.out_hw
    for i in range(ho):
        for j in range(wo):
            yield i, j, slice(i * sh, i * sh + kh), slice(j * sw, j * sw + kw)


# ----------------------------------------------------------------------------- fast conv
_DIMS = ("NHWC", "HWIO", "NHWC")


def conv2d_forward(
    x: Array, params: Params, *, stride: Pair = 1, padding: Padding = 0
) -> tuple[Array, tuple]:
    """out[n,i,j,f] = sum_{a,b,c} xp[n, sh*i + a, sw*j + b, c] * w[a,b,c,f] + b[f], xp = padded x.

    x (N, H, W, C_in), params {"w": (kh, kw, C_in, C_out), "b": (C_out,)}; out (N, Ho, Wo, C_out).
    """
    win = _conv_window("conv2d", x, params, stride, padding)
    w, b = params["w"], params["b"]
    dtype = jnp.result_type(x, w, b)  # mixed precision: compute in the wider type
    out = lax.conv_general_dilated(
        x.astype(dtype), w.astype(dtype), win.stride, win.lax_padding, dimension_numbers=_DIMS
    )
    return out + b.astype(dtype), (x, w, b, win)


# Derivation of the backward. Write xp for the zero-padded input (Hp = H + 2p rows), s for the
# stride, k for the kernel size, and per axis r = (Hp - k) % s. The forward is
#     out[n,i,j,f] = sum_{a,b,c} xp[n, s_h i + a, s_w j + b, c] w[a,b,c,f] + bias[f].
#
# db: bias[f] is added to every output of channel f, so db[f] = sum_{n,i,j} dout[n,i,j,f].
#
# dw: d out[n,i,j,f] / d w[a,b,c,f] = xp[n, s_h i + a, s_w j + b, c], hence
#     dw[a,b,c,f] = sum_{n,i,j} xp[n, s_h i + a, s_w j + b, c] dout[n,i,j,f],
#   a correlation of xp with dout used as the kernel, whose taps sit s apart (rhs_dilation = s).
#   The sum runs over the batch, so the batch axis plays "input feature" and C_in plays "batch":
#   dimension numbers ("CHWN", "IHWO", "HWNC") read x and dout as they are and emit HWIO.
#   The dilated dout spans (Ho-1) s + 1 = Hp - k - r + 1 rows, so a correlation over all of xp
#   has k + r outputs; the last r are offsets a >= k the kernel does not have (they would pair
#   dout with the r rows no window reads): pad the bottom by p - r instead of p to drop them.
#
# dx: xp[n,y,z,c] reaches out[n,i,j,f] through w[y - s_h i, z - s_w j, c, f] (when in range), so
#     dxp[n,y,z,c] = sum_{i,j,f} dout[n,i,j,f] w[y - s_h i, z - s_w j, c, f].
#   Spread dout on a grid with s - 1 zeros between entries (lhs_dilation = s): d[s i] = dout[i].
#   Then dxp[y] = sum_a d[y - a] w[a], a true convolution, i.e. a correlation of d zero-padded by
#   k - 1 on both sides with the spatially flipped kernel w[k-1-a], contracting over C_out and
#   producing C_in (read w as HWOI: in and out channels swapped). That yields (Ho-1) s + k = Hp - r
#   rows: the last r rows of xp are never read, so their gradient is zero: pad r more at the
#   bottom. Finally dx drops the p padding rows on each side, so the padding is k-1-p on top and
#   k-1-p+r at the bottom (negative when p > k-1: XLA then crops).
def conv2d_backward(dout: Array, cache: tuple) -> tuple[Array, Params]:
    x, w, b, win = cache
    (kh, kw), (ph, pw), (rh, rw) = win.size, win.padding, win.unread
    dtype = dout.dtype
    dx = lax.conv_general_dilated(
        dout,
        w[::-1, ::-1].astype(dtype),
        window_strides=(1, 1),
        padding=[(kh - 1 - ph, kh - 1 - ph + rh), (kw - 1 - pw, kw - 1 - pw + rw)],
        lhs_dilation=win.stride,
        dimension_numbers=("NHWC", "HWOI", "NHWC"),
    )
    dw = lax.conv_general_dilated(
        x.astype(dtype),
        dout,
        window_strides=(1, 1),
        padding=[(ph, ph - rh), (pw, pw - rw)],
        rhs_dilation=win.stride,
        dimension_numbers=("CHWN", "IHWO", "HWNC"),
    )
    db = dout.sum(axis=(0, 1, 2))
    return dx.astype(x.dtype), {"w": dw.astype(w.dtype), "b": db.astype(b.dtype)}


conv2d = manual_vjp(conv2d_forward, conv2d_backward)


# ----------------------------------------------------------------------------- naive conv
def conv2d_naive_forward(
    x: Array, params: Params, *, stride: Pair = 1, padding: Padding = 0
) -> tuple[Array, tuple]:
    """Same maths and arguments as `conv2d_forward`, one output position at a time."""
    win = _conv_window("conv2d_naive", x, params, stride, padding)
    w, b = params["w"], params["b"]
    xp = pad_input(x, win)
    outs = []
    for _, _, rows, cols in window_positions(win):  # row-major over (i, j)
        patch = xp[:, rows, cols, :]  # (N, kh, kw, C_in): what output (i, j) reads
        outs.append(jnp.tensordot(patch, w, axes=3) + b)  # (N, C_out)
    out = jnp.stack(outs, axis=1).reshape(x.shape[0], *win.out_hw, w.shape[3])
    return out, (x, w, b, win)


def conv2d_naive_backward(dout: Array, cache: tuple) -> tuple[Array, Params]:
    # The forward is also a sum over kernel taps: out = sum_{a,b} S_ab(xp) @ w[a, b] + bias, where
    # S_ab(xp)[n,i,j,:] = xp[n, a + sh i, b + sw j, :] is a strided slice (N, Ho, Wo, C_in).
    # Each tap is a plain matmul, so its gradients are dw[a, b] = S_ab(xp)^T dout (summed over
    # n, i, j) and dS_ab = dout @ w[a, b]^T, added back into the sliced positions of dxp.
    x, w, bias, win = cache
    (kh, kw), (sh, sw), (ho, wo) = win.size, win.stride, win.out_hw
    xp = pad_input(x, win)
    dxp = jnp.zeros_like(xp)
    dw = jnp.zeros_like(w)
    for a in range(kh):
        for b in range(kw):
            rows = slice(a, a + sh * (ho - 1) + 1, sh)
            cols = slice(b, b + sw * (wo - 1) + 1, sw)
            dw = dw.at[a, b].set(jnp.einsum("nijc,nijf->cf", xp[:, rows, cols, :], dout))
            dxp = dxp.at[:, rows, cols, :].add(jnp.einsum("nijf,cf->nijc", dout, w[a, b]))
    db = dout.sum(axis=(0, 1, 2))
    return crop_padding(dxp, win).astype(x.dtype), {"w": dw, "b": db.astype(bias.dtype)}


conv2d_naive = manual_vjp(conv2d_naive_forward, conv2d_naive_backward)
