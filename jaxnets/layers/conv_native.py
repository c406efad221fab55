"""The native CPU conv kernel: `jaxnets.native`'s direct convolution, an XLA FFI custom call.

A convolution compiled for this CPU, for float32 layers with C_out a multiple of 16
(`native.supports`). The FFI call is opaque to autodiff, so it carries its hand-derived VJP.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax import lax

from jaxnets import native
from jaxnets.layers.conv_lax import _input_grad_padding, _lax_input_grad
from jaxnets.layers.vjp import manual_vjp
from jaxnets.layers.window import Array, Params, Window, pad_input


# The same three sums as the lax kernel's derivation (conv_lax.py), by jaxnets.native's direct
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
