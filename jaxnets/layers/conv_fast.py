"""The fast `conv2d`: one entry point that picks a kernel per backend and geometry.

The same function as the course's `conv2d_naive` (`jaxnets/layers/conv.py`), with a
hand-derived backward for every kernel, none left to autodiff. `impl` picks the kernel:
- "lax" (`conv_lax.py`): forward and backward are each a `lax.conv_general_dilated` call, so XLA
  runs them as real convolutions (GPUs, TPUs);
- "native" (`conv_native.py`): a direct convolution compiled for this CPU (`jaxnets.native`, an
  XLA FFI custom call), forward, weight gradient and (as a forward on the spread output
  gradient) input gradient. The CPU default for float32 layers with C_out a multiple of 16;
- "matmul" (`conv_matmul.py`): im2col, i.e. the patches gathered by strided slices and one large
  matrix product (with a tile of output columns per row when there are few input channels);
  backward as two more matrix products and the col2im adjoint. On CPU for other layers with few
  input channels, where XLA's convolution is slow;
- "mixed": lax forward and input gradient, the weight gradient as an im2col matrix product. On
  CPU for the remaining layers;
- "xla": whichever of lax / matmul / mixed the backend would pick, never native: every op an XLA
  op, for `jax.grad` to differentiate by itself;
- "auto" (the default): `default_impl`'s choice. `forced_impl` overrides it within a block.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp

from jaxnets import native
from jaxnets.layers.checks import check_choice
from jaxnets.layers.conv_lax import LaxPlan, _lax_backward, _lax_forward
from jaxnets.layers.conv_matmul import MatmulPlan, _matmul_backward, _matmul_forward
from jaxnets.layers.conv_native import NativePlan, _native_backward, _native_forward
from jaxnets.layers.vjp import manual_vjp
from jaxnets.layers.window import Array, Padding, Pair, Params, Window, conv_window

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
    win = conv_window("conv2d", x, params, stride, padding)
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
