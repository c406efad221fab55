"""Inverted dropout with a hand-derived backward.

`keep_prob` is the probability of KEEPING a unit (the course's `p`). Kept units are scaled by
1 / keep_prob during training so the expected activation is unchanged and eval mode is the
identity. Randomness comes from an explicit PRNG key: the same key gives the same mask.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxnets.layers.checks import check_float
from jaxnets.layers.vjp import manual_vjp

Array = jax.Array


def _check_key(key: Any) -> None:
    if key is None:
        raise TypeError("dropout: key must be a single jax PRNG key in train mode, got None")
    dtype = jnp.result_type(key)
    typed = jnp.issubdtype(dtype, jax.dtypes.prng_key) and jnp.ndim(key) == 0
    raw = dtype == jnp.uint32 and jnp.shape(key) == (2,)  # legacy jax.random.PRNGKey
    if not (typed or raw):
        raise TypeError(
            "dropout: key must be a single jax PRNG key (jax.random.key(seed)), "
            f"got dtype {dtype} and shape {jnp.shape(key)}"
        )


def dropout_forward(
    x: Array, key: Array | None, *, keep_prob: float, train: bool = True
) -> tuple[Array, Array | None]:
    """Inverted dropout: out = x * mask / keep_prob with mask ~ Bernoulli(keep_prob).

    Eval mode (`train=False`) returns x unchanged and may be given `key=None`.
    """
    check_float("dropout", "x", x)
    if isinstance(keep_prob, bool) or not isinstance(keep_prob, int | float):
        raise TypeError(f"dropout: keep_prob must be a Python float, got {keep_prob!r}")
    if not 0 < keep_prob <= 1:
        raise ValueError(
            f"dropout: keep_prob is the probability of keeping a unit and must be in (0, 1], "
            f"got {keep_prob!r}"
        )
    if not isinstance(train, bool):
        raise TypeError(f"dropout: train must be a Python bool, got {train!r}")
    if not train:
        return x, None  # a None cache tells the backward it was the identity
    _check_key(key)
    # The scaled mask is the cache: the backward multiplies by exactly the same values.
    mask = jax.random.bernoulli(key, keep_prob, x.shape).astype(x.dtype) / keep_prob
    return x * mask, mask


def dropout_backward(dout: Array, cache: Array | None) -> Array:
    return dout if cache is None else dout * cache


dropout = manual_vjp(dropout_forward, dropout_backward)
