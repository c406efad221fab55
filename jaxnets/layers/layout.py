"""Convert images and conv kernels between the course's NCHW / OIHW layout and ours (NHWC / HWIO).

jaxnets computes in NHWC with HWIO kernels (course B, and what XLA likes on CPU); course A writes
images as (N, C, H, W) and kernels as (F, C, HH, WW). Convert once at the boundary.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxnets.layers.checks import check_ndim

Array = jax.Array


def nchw_to_nhwc(x: Array) -> Array:
    """(N, C, H, W) -> (N, H, W, C)."""
    check_ndim("nchw_to_nhwc", "x", x, 4, "(N, C, H, W)")
    return jnp.transpose(x, (0, 2, 3, 1))


def nhwc_to_nchw(x: Array) -> Array:
    """(N, H, W, C) -> (N, C, H, W)."""
    check_ndim("nhwc_to_nchw", "x", x, 4, "(N, H, W, C)")
    return jnp.transpose(x, (0, 3, 1, 2))


def oihw_to_hwio(w: Array) -> Array:
    """Conv kernel (C_out, C_in, kh, kw) -> (kh, kw, C_in, C_out)."""
    check_ndim("oihw_to_hwio", "w", w, 4, "(C_out, C_in, kh, kw)")
    return jnp.transpose(w, (2, 3, 1, 0))


def hwio_to_oihw(w: Array) -> Array:
    """Conv kernel (kh, kw, C_in, C_out) -> (C_out, C_in, kh, kw)."""
    check_ndim("hwio_to_oihw", "w", w, 4, "(kh, kw, C_in, C_out)")
    return jnp.transpose(w, (3, 2, 0, 1))
