"""Audit cases for batch, spatial batch, layer and group norm and for dropout."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.gradcheck.cases.base import LayerCase
from jaxnets.layers import dropout, norm

f64 = jnp.float64
_SALT = 0x6E6F726D  # "norm"


# Inputs are drawn with numpy, seeded from the case's key: jax.random would compile a float64
# threefry kernel per shape (most of an eager audit's time), numpy compiles nothing.
#
# They are unit-scale. The central differences' error is roundoff, about 3e-10 in absolute
# terms for these sizes, so the elementwise relative error is set by the smallest |dx| entries:
# a large shift or spread of x (dx ~ 1 / std) or many elements pushes some entry towards that
# floor. So shapes are small and gamma stays off 0; then over seeds 0-29 every case passes the
# default 1e-6 (worst 4e-7, spatial batch norm; seed 0 at most 3e-8), so no case loosens
# LayerCase's default thresholds.
def _rng(key: jax.Array) -> np.random.Generator:
    # Salted: key(s) has key data [0, s], which numpy would seed exactly like default_rng(s),
    # the stream check_layer draws `dout` from, and an x equal to dout (plus a shift) makes the
    # batch-norm dx vanish to ~1e-5, all roundoff.
    return np.random.default_rng([_SALT, *np.asarray(jax.random.key_data(key)).tolist()])


def _normal(rng: np.random.Generator, shape: tuple[int, ...], scale=1.0, shift=0.0) -> jax.Array:
    return jnp.asarray(rng.normal(shift, scale, shape), f64)


def _affine_params(rng: np.random.Generator, size: int) -> dict:
    # |gamma| in [0.5, 1.5]: a gamma near 0 would scale a whole channel of dx down to the
    # central differences' roundoff floor.
    gamma = rng.uniform(0.5, 1.5, size) * rng.choice([-1.0, 1.0], size)
    return {"gamma": jnp.asarray(gamma, f64), "beta": _normal(rng, (size,))}


def _batchnorm_args(shape: tuple[int, ...], *, eval_stats: bool = False):
    """x, params, and running state (trained-looking in eval mode, zeros in train mode)."""

    def make(key: jax.Array) -> tuple:
        rng, c = _rng(key), shape[-1]
        x, params = _normal(rng, shape, 1.0, 0.5), _affine_params(rng, c)
        if eval_stats:  # the running variance must be positive
            state = {"mean": _normal(rng, (c,)), "var": jnp.exp(_normal(rng, (c,)))}
        else:
            state = {"mean": jnp.zeros(c, f64), "var": jnp.zeros(c, f64)}
        return x, params, state

    return make


def _norm_args(shape: tuple[int, ...]):
    def make(key: jax.Array) -> tuple:
        rng = _rng(key)
        return _normal(rng, shape, 1.0, 0.5), _affine_params(rng, shape[-1])

    return make


def _dropout_args(key: jax.Array) -> tuple:
    # The mask key is fixed by the case seed, so forward, backward and every central-difference
    # evaluation see the same mask.
    return _normal(_rng(key), (6, 10)), key


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
    LayerCase(
        "layernorm (N, D)", norm.layernorm_forward, norm.layernorm_backward, _norm_args((4, 6))
    ),
    LayerCase(
        "layernorm (B, T, E)",
        norm.layernorm_forward,
        norm.layernorm_backward,
        _norm_args((2, 3, 8)),
    ),
    LayerCase(
        "groupnorm",
        norm.groupnorm_forward,
        norm.groupnorm_backward,
        _norm_args((2, 2, 3, 6)),
        {"groups": 3},
    ),
    LayerCase(
        "dropout",
        dropout.dropout_forward,
        dropout.dropout_backward,
        _dropout_args,
        {"keep_prob": 0.7},
    ),
]
