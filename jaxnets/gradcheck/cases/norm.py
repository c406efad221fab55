"""Audit cases for batch, spatial batch, layer and group norm and for dropout."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxnets.gradcheck.cases.base import LayerCase
from jaxnets.layers import dropout, norm

f64 = jnp.float64


# Inputs are unit-scale. The central differences' error is roundoff, about 3e-10 in absolute
# terms for these sizes, so the elementwise relative error is set by the smallest |dx| entries:
# a large shift or spread of x (dx ~ 1 / std) or many elements pushes some entry towards that
# floor. With these shapes the worst numerical error over seeds 0-19 is below 6e-7.
def _normal(key: jax.Array, shape: tuple[int, ...], scale: float = 1.0, shift: float = 0.0):
    return scale * jax.random.normal(key, shape, f64) + shift


def _affine_params(key: jax.Array, size: int) -> dict:
    kg, kb = jax.random.split(key)
    return {"gamma": _normal(kg, (size,)), "beta": _normal(kb, (size,))}


def _batchnorm_args(shape: tuple[int, ...], *, eval_stats: bool = False):
    """x (shifted and scaled, as the course checks it), params, and running state."""

    def make(key: jax.Array) -> tuple:
        kx, kp, km, kv = jax.random.split(key, 4)
        c = shape[-1]
        if eval_stats:  # trained-looking running statistics, variance safely positive
            state = {"mean": _normal(km, (c,)), "var": jnp.exp(_normal(kv, (c,)))}
        else:
            state = {"mean": jnp.zeros(c, f64), "var": jnp.zeros(c, f64)}
        return _normal(kx, shape, 1.0, 0.5), _affine_params(kp, c), state

    return jax.jit(make)


def _norm_args(shape: tuple[int, ...]):
    def make(key: jax.Array) -> tuple:
        kx, kp = jax.random.split(key)
        return _normal(kx, shape, 1.0, 0.5), _affine_params(kp, shape[-1])

    return jax.jit(make)


@jax.jit
def _dropout_args(key: jax.Array) -> tuple:
    # The mask key is fixed by the case seed, so forward, backward and every central-difference
    # evaluation see the same mask.
    kx, kmask = jax.random.split(key)
    return _normal(kx, (6, 10)), kmask


CASES = [
    LayerCase(
        "batchnorm (train)",
        norm.batchnorm_forward,
        norm.batchnorm_backward,
        _batchnorm_args((8, 5)),
        {"train": True},
        has_aux=True,
    ),
    LayerCase(
        "batchnorm (eval)",
        norm.batchnorm_forward,
        norm.batchnorm_backward,
        _batchnorm_args((8, 5), eval_stats=True),
        {"train": False},
        has_aux=True,
    ),
    LayerCase(
        "spatial_batchnorm (train)",
        norm.spatial_batchnorm_forward,
        norm.spatial_batchnorm_backward,
        _batchnorm_args((2, 3, 4, 3)),
        {"train": True},
        has_aux=True,
    ),
    LayerCase("layernorm (N, D)", norm.layernorm_forward, norm.layernorm_backward, _norm_args((4, 6))),
    LayerCase(
        "layernorm (B, T, E)", norm.layernorm_forward, norm.layernorm_backward, _norm_args((2, 3, 8))
    ),
    LayerCase(
        "groupnorm",
        norm.groupnorm_forward,
        norm.groupnorm_backward,
        _norm_args((2, 3, 4, 6)),
        {"groups": 2},
    ),
    LayerCase(
        "dropout",
        dropout.dropout_forward,
        dropout.dropout_backward,
        _dropout_args,
        {"keep_prob": 0.7},
    ),
]
