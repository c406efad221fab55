"""2-D convolution (cross-correlation) in NHWC with HWIO kernels, each with a hand-derived backward.

Two versions of the same layer:
- `conv2d`: the fast one, with its kernel chosen per backend and geometry (`impl="auto"`, see
  `default_impl`):
  - "lax": forward and backward are each a `lax.conv_general_dilated` call, so XLA runs them as
    real convolutions (GPUs, TPUs);
  - "native": a direct convolution compiled for this CPU (`jaxnets.native`, an XLA FFI custom
    call), forward, weight gradient and (as a forward on the spread output gradient) input
    gradient. The CPU default for float32 layers with C_out a multiple of 16;
  - "matmul": im2col, i.e. the patches gathered by strided slices and one large matrix product
    (with a tile of output columns per row when there are few input channels); backward as two
    more matrix products and the col2im adjoint. On CPU for other layers with few input
    channels, where XLA's convolution is slow;
  - "mixed": lax forward and input gradient, the weight gradient as an im2col matrix product.
    On CPU for the remaining layers;
  - "xla": whichever of lax / matmul / mixed the backend would pick, never native: every op an
    XLA op, for `jax.grad` to differentiate by itself.
  Every backward is derived below, not left to autodiff.
- `conv2d_naive`: the teaching reference, explicit Python loops over output positions (forward)
  and kernel positions (backward) with small jnp ops inside. Slow; for small inputs and tests.
- `conv2d_relu_pool`: course B's conv - relu - max pool sandwich, relu and pool fused (on the
  native kernel, a 2x2 pool is done in registers and the conv output is never stored).

Geometry (course B): padding "same" = ((kh-1)//2, (kw-1)//2), "valid" = 0, an int, or (ph, pw),
always symmetric zeros; stride an int or (sh, sw); out = (in + 2p - k)//s + 1.
`Window`, `sliding_window` and the padding helpers are shared with the pooling layers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import numbers
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxnets import native
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
IMPLS = ("auto", "xla", "lax", "matmul", "mixed", "native")

_forced_impl: str | None = None  # set by `forced_impl`


def default_impl(
    c_in: int, kernel_w: int, c_out: int | None = None, dtype: Any = None, *, xla_only: bool = False
) -> str:
    """The kernel `impl="auto"` picks for a layer with c_in -> c_out channels and kernel width kw
    (`impl="xla"`, with `xla_only`: the same choice among XLA kernels, which autodiff can see
    through).

    GPUs and TPUs: "lax", their native convolutions. CPU: "native" (`jaxnets.native`, a direct
    convolution compiled for this CPU) for float32 layers with c_out a multiple of 16 when it
    could be built. Otherwise XLA kernels: its convolution is slow when a kernel row holds few
    input values (7x7x3 at a fraction of matmul speed), and its weight gradient (a convolution
    with an image-sized window) is slow for every layer measured, so "matmul" when
    kw * c_in < 32, else "mixed" (lax forward and input gradient, im2col matmul weight
    gradient). See benchmarks/README.md for the measurements.
    """
    if _forced_impl == "xla":
        xla_only = True
    elif _forced_impl is not None:
        return _forced_impl
    if jax.default_backend() != "cpu":
        return "lax"
    if not xla_only and c_out is not None and dtype is not None:
        if native.supports(dtype, c_out):
            return "native"
    return "matmul" if kernel_w * c_in < 32 else "mixed"


@contextlib.contextmanager
def forced_impl(impl: str) -> Iterator[None]:
    """Within the block, `impl="auto"` means `impl` (one of `IMPLS` but "auto"), e.g. to time a
    model built on `conv2d` with another kernel. The kernel is chosen when a function is traced,
    so trace (first call a fresh `jax.jit`) inside the block."""
    global _forced_impl
    check_choice("conv2d", "impl", impl, IMPLS[1:])
    previous, _forced_impl = _forced_impl, impl
    try:
        yield
    finally:
        _forced_impl = previous


def conv2d_forward(
    x: Array,
    params: Params,
    *,
    stride: Pair = 1,
    padding: Padding = 0,
    impl: str = "auto",
    tile_width: int | None = None,
) -> tuple[Array, tuple]:
    """out[n,i,j,f] = sum_{a,b,c} xp[n, sh*i + a, sw*j + b, c] * w[a,b,c,f] + b[f], xp = padded x.

    x (N, H, W, C_in), params {"w": (kh, kw, C_in, C_out), "b": (C_out,)}; out (N, Ho, Wo, C_out).
    `impl` picks the kernel: "lax" (`lax.conv_general_dilated` forward and backward), "matmul"
    (im2col and one matrix product, see `MatmulPlan`), "mixed" (lax forward and input gradient,
    matmul weight gradient), "native" (`jaxnets.native`'s direct convolution, float32 on CPU),
    "auto" (`default_impl`) or "xla" (the same choice without "native": every op an XLA op, for
    `jax.grad` to differentiate by itself). `tile_width` overrides the matmul
    kernel's choice of output columns per patch row (1 = plain im2col). All compute the same
    function and have hand-derived backwards; `conv2d_backward` serves every kernel's cache.
    """
    win = _conv_window("conv2d", x, params, stride, padding)
    impl = _chosen_impl(x, params, win, impl)
    if impl == "matmul":
        return _matmul_forward(x, params, win, tile_width)
    if tile_width is not None:
        raise ValueError("conv2d: tile_width applies only to impl='matmul'")
    if impl == "native":
        return _native_forward(x, params, win)
    return _lax_forward(x, params, LaxPlan(win, impl == "mixed"))


def _chosen_impl(x: Array, params: Params, win: Window, impl: str) -> str:
    """The kernel to run: `impl`, or the one "auto" / "xla" pick; checks "native" can run."""
    check_choice("conv2d", "impl", impl, IMPLS)
    w, b = params["w"], params["b"]
    dtype = jnp.result_type(x, w, b)
    if impl in ("auto", "xla"):
        impl = default_impl(x.shape[3], win.size[1], w.shape[3], dtype, xla_only=impl == "xla")
    if impl == "native" and not native.supports(dtype, w.shape[3]):
        reason = native.unavailable_reason()
        raise ValueError(
            f"conv2d: impl='native' runs float32 on the CPU with C_out a multiple of "
            f"{native.CHANNEL_MULTIPLE}; got {dtype} on {jax.default_backend()} with "
            f"C_out={w.shape[3]}" + (f" ({reason})" if reason else "")
        )
    return impl


def conv2d_backward(dout: Array, cache: tuple) -> tuple[Array, Params]:
    """(dx, {"w": dw, "b": db}) for any kernel's cache."""
    if isinstance(cache[-1], MatmulPlan):
        return _matmul_backward(dout, cache)
    if isinstance(cache[-1], NativePlan):
        return _native_backward(dout, cache)
    return _lax_backward(dout, cache)


conv2d = manual_vjp(conv2d_forward, conv2d_backward)


# ----------------------------------------------------------------------------- lax kernel
_DIMS = ("NHWC", "HWIO", "NHWC")


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class LaxPlan:
    """The lax kernel's static cache entry."""

    win: Window
    dw_by_matmul: bool  # "mixed": the weight gradient as an im2col matrix product


def _lax_forward(x: Array, params: Params, plan: LaxPlan) -> tuple[Array, tuple]:
    w, b, win = params["w"], params["b"], plan.win
    dtype = jnp.result_type(x, w, b)  # mixed precision: compute in the wider type
    out = lax.conv_general_dilated(
        x.astype(dtype), w.astype(dtype), win.stride, win.lax_padding, dimension_numbers=_DIMS
    )
    return out + b.astype(dtype), (x, w, b, plan)


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
#
# "mixed" computes dw as the matmul kernel does with one column per tile (plain im2col): with
# P[(n,i,j), (a,b,c)] = xp[n, s_h i + a, s_w j + b, c], the sum above is dw = P^T dout, read as
# HWIO. XLA's CPU convolution handles the image-sized window of the dw correlation poorly.
def _input_grad_padding(win: Window) -> list[tuple[int, int]]:
    """dx's padding of the stride-dilated dout, per spatial axis (see the derivation above)."""
    return [(k - 1 - p, k - 1 - p + r) for k, p, r in zip(win.size, win.padding, win.unread)]


def _lax_input_grad(dout: Array, w: Array, win: Window) -> Array:
    return lax.conv_general_dilated(
        dout,
        w[::-1, ::-1].astype(dout.dtype),
        window_strides=(1, 1),
        padding=_input_grad_padding(win),
        lhs_dilation=win.stride,
        dimension_numbers=("NHWC", "HWOI", "NHWC"),
    )


def _lax_backward(dout: Array, cache: tuple) -> tuple[Array, Params]:
    x, w, b, plan = cache
    win = plan.win
    (ph, pw), (rh, rw) = win.padding, win.unread
    dtype = dout.dtype
    dx = _lax_input_grad(dout, w, win)
    if plan.dw_by_matmul:
        c, f = w.shape[2], w.shape[3]
        patches = _patches(x.astype(dtype), MatmulPlan(win, (c, f), 1, (x.dtype, w.dtype, b.dtype)))
        dw = (patches.T @ dout.reshape(-1, f)).reshape(w.shape)
    else:
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


# ----------------------------------------------------------------------------- native kernel
# The same three sums as the lax kernel's derivation above, computed by jaxnets.native's direct
# convolution: the forward on the padded input; dw by its weight-gradient kernel; dx as the
# forward kernel run on dout dilated by the stride and padded as derived there (lax.pad does
# both, and crops where the padding is negative), with the flipped kernel read as HWOI, i.e.
# w[::-1, ::-1] with its channel axes swapped. Layers whose C_in is not a multiple of 16 (the
# first layer, whose dx nobody needs and XLA drops) take dx from lax.
@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class NativePlan:
    """The native kernel's static cache entry."""

    win: Window


def _native_conv_forward(x: Array, w: Array, b: Array, *, win: Window) -> tuple[Array, tuple]:
    f32 = jnp.float32
    out = native.conv2d_forward(
        pad_input(x.astype(f32), win), w.astype(f32), b.astype(f32), win.stride
    )
    return out, (x, w, b, NativePlan(win))


def _native_backward(dout: Array, cache: tuple) -> tuple[Array, Params]:
    x, w, b, plan = cache
    win, f32 = plan.win, jnp.float32
    dout = dout.astype(f32)
    dw = native.conv2d_weight_grad(pad_input(x.astype(f32), win), dout, win.size, win.stride)
    db = dout.sum(axis=(0, 1, 2))
    return _native_input_grad(dout, w, win).astype(x.dtype), {
        "w": dw.astype(w.dtype),
        "b": db.astype(b.dtype),
    }


def _native_input_grad(dout: Array, w: Array, win: Window) -> Array:
    w32, c_in = w.astype(jnp.float32), w.shape[2]
    if c_in % native.CHANNEL_MULTIPLE:
        return _lax_input_grad(dout, w32, win)
    (top, bottom), (left, right) = _input_grad_padding(win)
    (sh, sw) = win.stride
    spread = lax.pad(
        dout,
        jnp.zeros((), dout.dtype),
        [(0, 0, 0), (top, bottom, sh - 1), (left, right, sw - 1), (0, 0, 0)],
    )
    flipped = jnp.swapaxes(w32[::-1, ::-1], 2, 3)
    return native.conv2d_forward(spread, flipped, jnp.zeros(c_in, jnp.float32), (1, 1))


def _native_conv_backward(dout: Array, cache: tuple) -> tuple[Array, Array, Array]:
    dx, grads = _native_backward(dout, cache)
    return dx, grads["w"], grads["b"]


# The FFI call is opaque to autodiff, so the native convolution carries its hand-derived VJP
# even when called through `conv2d_forward` (e.g. a plain forward under `jax.grad`).
_native_conv = manual_vjp(_native_conv_forward, _native_conv_backward)


def _native_forward(x: Array, params: Params, win: Window) -> tuple[Array, tuple]:
    w, b = params["w"], params["b"]
    return _native_conv(x, w, b, win=win), (x, w, b, NativePlan(win))


# ----------------------------------------------------------------------------- matmul kernel
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
# FLOPs (T is block-banded). `matmul_tile_width` picks t. On a 2-core AVX-512 CPU this makes
# the course's 7x7x3 -> 32 convolution (forward and weight gradient) 1.4-2x faster than
# `lax.conv_general_dilated` (benchmarks/README.md).
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
    # tile (runs of U*C after the first concat), then the kh rows: measured 1.3-2x faster.
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


# ----------------------------------------------------------------------------- conv-relu-pool
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
    win = _conv_window("conv2d_relu_pool", x, params, stride, padding)
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

# As `_native_conv`: the FFI call carries its VJP for callers of the plain forward. `which` is
# the aux output (integer, not differentiated).
_native_relu_pool = manual_vjp(_native_relu_pool_forward, _native_relu_pool_backward, has_aux=True)
