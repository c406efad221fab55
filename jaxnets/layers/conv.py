"""2-D convolution (cross-correlation) in NHWC with HWIO kernels: the course's layer.

Forward. x (N, H, W, C_in), w (kh, kw, C_in, C_out), bias (C_out,). With xp the input padded
with (ph, pw) zeros on every side and stride (sh, sw),

    out[n,i,j,f] = sum_{a,b,c} xp[n, sh*i + a, sw*j + b, c] * w[a,b,c,f] + bias[f],

out (N, Ho, Wo, C_out) with Ho = (H + 2ph - kh)//sh + 1, Wo = (W + 2pw - kw)//sw + 1. Padding
(course B): "same" = ((kh-1)//2, (kw-1)//2), "valid" = 0, an int, or (ph, pw), always symmetric
zeros; stride an int or (sh, sw).

Backward. Read the same sum as a sum over the kh*kw kernel taps (a, b):

    out = sum_{a,b} S_ab(xp) @ w[a, b] + bias,    S_ab(xp)[n,i,j,:] = xp[n, a + sh*i, b + sw*j, :]

where S_ab(xp) is a strided slice (N, Ho, Wo, C_in) and w[a, b] a (C_in, C_out) matrix. Each tap
is a plain matmul Y = X W, whose gradients are dX = dY W^T and dW = X^T dY. So, with dout the
loss's gradient w.r.t. out:
- dbias[f] = sum_{n,i,j} dout[n,i,j,f]: bias[f] is added to every output of channel f;
- dw[a, b] = S_ab(xp)^T dout, summed over n, i, j, i.e.
  dw[a,b,c,f] = sum_{n,i,j} xp[n, a + sh*i, b + sw*j, c] dout[n,i,j,f];
- dS_ab = dout @ w[a, b]^T is added back into the positions of dxp that S_ab read (when the
  kernel is larger than the stride, taps read overlapping positions and their gradients add up);
- dx = dxp with the padding cropped off (the padding zeros are constants, not inputs).

`conv2d_naive_forward` loops over output positions (i, j), `conv2d_naive_backward` over kernel
taps (a, b), with small jnp ops inside: slow, for small inputs, tests and reading.
`conv2d_naive` binds the two with `manual_vjp`, so `jax.grad` runs the backward above.

The fast layer `conv2d` computes the same function and the same three sums with a kernel chosen
per backend (`conv_fast.py`, which dispatches to `conv_lax.py`, `conv_native.py` and
`conv_matmul.py`), and `conv2d_relu_pool` fuses course B's conv - relu - max pool
(`conv_relu_pool.py`). Both are re-exported at the end of this file, so `conv.conv2d` and the
rest work as before. The window geometry shared with the pooling layers is in `window.py`.
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxnets.layers.vjp import manual_vjp
from jaxnets.layers.window import (
    Array,
    Padding,
    Pair,
    Params,
    conv_window,
    crop_padding,
    pad_input,
    window_positions,
)


def conv2d_naive_forward(
    x: Array, params: Params, *, stride: Pair = 1, padding: Padding = 0
) -> tuple[Array, tuple]:
    """`out` as defined in the module docstring, one output position at a time.

    Arguments as `conv2d_forward`'s; returns (out, cache).
    """
    win = conv_window("conv2d_naive", x, params, stride, padding)
    w, b = params["w"], params["b"]
    xp = pad_input(x, win)
    outs = []
    for _, _, rows, cols in window_positions(win):  # row-major over (i, j)
        patch = xp[:, rows, cols, :]  # (N, kh, kw, C_in): what output (i, j) reads
        outs.append(jnp.tensordot(patch, w, axes=3) + b)  # (N, C_out)
    out = jnp.stack(outs, axis=1).reshape(x.shape[0], *win.out_hw, w.shape[3])
    return out, (x, w, b, win)


def conv2d_naive_backward(dout: Array, cache: tuple) -> tuple[Array, Params]:
    """(dx, {"w": dw, "b": db}), one kernel tap (a, b) at a time (see the module docstring)."""
    # Tap (a, b) reads the strided slice S_ab(xp) = xp[:, rows, cols, :]: dw[a, b] = S_ab(xp)^T dout
    # and dS_ab = dout @ w[a, b]^T, added back into the positions of dxp it read.
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


# ----------------------------------------------------------------------------- the fast layers
# Re-exported so that `conv.conv2d`, `conv.default_impl`, ... keep working. They live in
# conv_fast.py (the dispatcher), conv_lax.py, conv_native.py and conv_matmul.py (its kernels)
# and conv_relu_pool.py, which import window.py and each other, never this file. Imported here,
# below the course's layer, so that this file reads top-down as the course does.
from jaxnets.layers.conv_fast import (  # noqa: E402
    IMPLS,
    conv2d,
    conv2d_backward,
    conv2d_forward,
    default_impl,
    forced_impl,
)
from jaxnets.layers.conv_lax import LaxPlan  # noqa: E402
from jaxnets.layers.conv_matmul import MatmulPlan, matmul_tile_width  # noqa: E402
from jaxnets.layers.conv_native import NativePlan  # noqa: E402
from jaxnets.layers.conv_relu_pool import (  # noqa: E402
    conv2d_relu_pool,
    conv2d_relu_pool_backward,
    conv2d_relu_pool_forward,
)

__all__ = [
    "IMPLS",
    "LaxPlan",
    "MatmulPlan",
    "NativePlan",
    "conv2d",
    "conv2d_backward",
    "conv2d_forward",
    "conv2d_naive",
    "conv2d_naive_backward",
    "conv2d_naive_forward",
    "conv2d_relu_pool",
    "conv2d_relu_pool_backward",
    "conv2d_relu_pool_forward",
    "default_impl",
    "forced_impl",
    "matmul_tile_width",
]
