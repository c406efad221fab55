"""Window geometry shared by the convolution and pooling layers (NHWC inputs).

A `Window` holds a 2-D window's static size, stride and padding over an input; `sliding_window`
checks an input and builds one, raising an error that names the problem before XLA would.
`pad_input`, `crop_padding` and `window_positions` are the small steps every naive
window-by-window layer repeats; `conv_window` adds the checks of a conv's kernel and bias.

Padding (course B): "same" = ((kh-1)//2, (kw-1)//2), "valid" = 0, an int, or (ph, pw), always
symmetric; stride an int or (sh, sw); out = (in + 2p - k)//s + 1 per axis.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

import jax
import jax.numpy as jnp

from jaxnets.layers.checks import check_choice, check_float, check_ndim

Array = jax.Array
Params = dict[str, Array]
Padding = str | int | tuple[int, int]
Pair = int | tuple[int, int]


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


def conv_window(layer: str, x: Array, params: Params, stride: Pair, padding: Padding) -> Window:
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
