"""Native CPU kernels, compiled on first use and called from jitted code as XLA FFI custom calls.

`conv_cpu.cc` is a direct convolution (forward and weight gradient) for float32 NHWC inputs,
which XLA's CPU backend runs far below the matmul rate (its header says how it works;
benchmarks/README.md has the figures). `build.build_library` compiles it once per machine.

Nothing here is required: without a C++ compiler, or with `JAXNETS_NATIVE=0`, `available()` is
False, the reason is printed once, and the layers use their XLA kernels.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.native.build import NativeBuildError, build_library

Array = jax.Array

SOURCE = Path(__file__).with_name("conv_cpu.cc")
TARGETS = (
    "jaxnets_conv2d_forward",
    "jaxnets_conv2d_relu_pool2_forward",
    "jaxnets_conv2d_weight_grad",
    "jaxnets_conv2d_relu_pool2_weight_grad",
)
# Output channels must fill whole vectors; 16 floats is the widest (AVX-512) the source uses.
CHANNEL_MULTIPLE = 16


@functools.cache
def unavailable_reason() -> str | None:
    """Build, load and register the kernels (once). None if that worked, else why not."""
    if os.environ.get("JAXNETS_NATIVE", "1") == "0":
        return "disabled by JAXNETS_NATIVE=0"
    try:
        library = ctypes.cdll.LoadLibrary(str(build_library(SOURCE)))
        for name in TARGETS:
            jax.ffi.register_ffi_target(
                name, jax.ffi.pycapsule(getattr(library, name)), platform="cpu"
            )
    except (NativeBuildError, OSError, AttributeError) as error:
        reason = f"native CPU kernels unavailable, using XLA's: {error}"
        print(f"jaxnets: {reason}", file=sys.stderr)
        return reason
    return None


def available() -> bool:
    """Whether the native kernels are built, loaded and registered (builds them if needed)."""
    return unavailable_reason() is None


def supports(dtype: Any, c_out: int) -> bool:
    """Whether a convolution computed in `dtype` can run natively: float32 on the CPU, C_out a
    multiple of 16."""
    return (
        jax.default_backend() == "cpu"
        and jnp.dtype(dtype) == jnp.float32
        and c_out % CHANNEL_MULTIPLE == 0
        and available()
    )


def _strides(stride: tuple[int, int]) -> dict[str, np.int64]:
    return {"stride_h": np.int64(stride[0]), "stride_w": np.int64(stride[1])}


def conv2d_forward(xp: Array, w: Array, b: Array, stride: tuple[int, int]) -> Array:
    """out[n,i,j,f] = b[f] + sum_{a,b,c} xp[n, sh*i+a, sw*j+b, c] w[a,b,c,f]; xp already padded."""
    n, hp, wp, _ = xp.shape
    kh, kw, _, f = w.shape
    out = jax.ShapeDtypeStruct(
        (n, (hp - kh) // stride[0] + 1, (wp - kw) // stride[1] + 1, f), jnp.float32
    )
    call = jax.ffi.ffi_call("jaxnets_conv2d_forward", out, vmap_method="sequential")
    return call(xp, w, b, **_strides(stride))


def conv2d_relu_pool2_forward(
    xp: Array, w: Array, b: Array, stride: tuple[int, int]
) -> tuple[Array, Array]:
    """`conv2d_forward`, relu and a 2x2 max pool (stride 2) in one pass: (pooled, which), where
    which[n,i,j,f] in 0..3 is the first tap (row-major) of the window equal to its max, or 4 when
    that max is <= 0. The conv output is never stored."""
    n, hp, wp, _ = xp.shape
    kh, kw, _, f = w.shape
    ho, wo = (hp - kh) // stride[0] + 1, (wp - kw) // stride[1] + 1
    shape = (n, ho // 2, wo // 2, f)
    outs = (jax.ShapeDtypeStruct(shape, jnp.float32), jax.ShapeDtypeStruct(shape, jnp.int8))
    call = jax.ffi.ffi_call("jaxnets_conv2d_relu_pool2_forward", outs, vmap_method="sequential")
    return call(xp, w, b, **_strides(stride))


def conv2d_weight_grad(
    xp: Array, dout: Array, kernel: tuple[int, int], stride: tuple[int, int]
) -> Array:
    """dw[a,b,c,f] = sum_{n,i,j} xp[n, sh*i+a, sw*j+b, c] dout[n,i,j,f], shape (kh, kw, C, F)."""
    dw = jax.ShapeDtypeStruct((*kernel, xp.shape[3], dout.shape[3]), jnp.float32)
    call = jax.ffi.ffi_call("jaxnets_conv2d_weight_grad", dw, vmap_method="sequential")
    return call(xp, dout, **_strides(stride))


def conv2d_relu_pool2_weight_grad(
    xp: Array, dpool: Array, which: Array, kernel: tuple[int, int], stride: tuple[int, int]
) -> Array:
    """`conv2d_weight_grad` of a conv - relu - 2x2 pool block from the pooled gradient and
    `which` (as `conv2d_relu_pool2_forward` returns it): the conv output's gradient, dpool at
    each window's winning tap and 0 elsewhere, is formed in registers, never stored."""
    dw = jax.ShapeDtypeStruct((*kernel, xp.shape[3], dpool.shape[3]), jnp.float32)
    call = jax.ffi.ffi_call("jaxnets_conv2d_relu_pool2_weight_grad", dw, vmap_method="sequential")
    return call(xp, dpool, which, **_strides(stride))
