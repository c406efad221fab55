"""Inverted dropout with a hand-derived backward.

`keep_prob` is the probability of KEEPING a unit (the course's `p`). Kept units are scaled by
1 / keep_prob during training so the expected activation is unchanged and eval mode is the
identity. Randomness comes from an explicit PRNG key: the same key gives the same mask.

Random bits are most of the cost of dropout on CPU (threefry hashes every 32-bit word), so a
keep_prob that is a multiple of 1/2^b for b <= 16 (0.5, 0.75, 0.875, ...) draws only b bits a
unit: each 32-bit word is cut into 32 / b fields and a unit is kept when its field is below
keep_prob * 2^b, an exact Bernoulli(keep_prob). Other values use `jax.random.bernoulli`.
"""

from __future__ import annotations

import math
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


def _bits_per_unit(keep_prob: float) -> int | None:
    """The fewest bits b of (1, 2, 4, 8, 16) for which keep_prob * 2^b is a whole number."""
    return next((b for b in (1, 2, 4, 8, 16) if (keep_prob * (1 << b)).is_integer()), None)


def keep_mask(key: Array, keep_prob: float, shape: tuple[int, ...]) -> Array:
    """Boolean mask of `shape`, each unit True with probability keep_prob, independently."""
    bits = _bits_per_unit(keep_prob)
    if bits is None:
        return jax.random.bernoulli(key, keep_prob, shape)
    per_word, size = 32 // bits, math.prod(shape)
    words = jax.random.bits(key, (-(-size // per_word),), jnp.uint32)
    shifts = jnp.arange(per_word, dtype=jnp.uint32) * bits
    fields = (words[:, None] >> shifts) & ((1 << bits) - 1)
    return (fields.reshape(-1)[:size] < int(keep_prob * (1 << bits))).reshape(shape)


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
    mask = keep_mask(key, keep_prob, x.shape).astype(x.dtype) / keep_prob
    return x * mask, mask


def dropout_backward(dout: Array, cache: Array | None) -> Array:
    return dout if cache is None else dout * cache


dropout = manual_vjp(dropout_forward, dropout_backward)
