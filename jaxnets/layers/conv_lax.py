"""The lax conv kernel: forward, weight gradient and input gradient as XLA convolutions.

Each of the three is one `lax.conv_general_dilated` call, so backends with fast native
convolutions (GPUs, TPUs) run them as such; the comment above `_input_grad_padding` derives the
dimension numbers, dilations and paddings of the two gradients. With `dw_by_matmul` ("mixed")
the weight gradient is an im2col matrix product instead (`conv_matmul._patches`), for CPUs.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax import lax

from jaxnets.layers.conv_matmul import MatmulPlan, _patches
from jaxnets.layers.window import Array, Params, Window

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
