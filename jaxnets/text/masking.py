"""BERT's masked-language-model corruption, in pure JAX (jittable, no host round trip).

Of the non-padding positions, each is selected with probability 15%; a selected token becomes
[MASK] with probability 80%, a random token in [random_low, vocab_size) with probability 10%,
and stays unchanged otherwise. Labels hold the original token at selected positions and
IGNORE_INDEX (-100) everywhere else, padding included. On random batches that gives about
0.15 labelled, 0.12 masked and 0.135 changed positions (0.12 + 0.015, less the rare random
token equal to the original).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxnets.layers.checks import check_int, check_ndim

Array = jax.Array

IGNORE_INDEX = -100


def mask_tokens(
    key: Array,
    ids: Array,
    *,
    mask_id: int,
    vocab_size: int,
    pad_id: int = 0,
    select_prob: float = 0.15,
    mask_prob: float = 0.8,
    random_prob: float = 0.1,
    random_low: int = 1,
    special_ids: Sequence[int] = (),
) -> tuple[Array, Array]:
    """(inputs, labels) for MLM from token ids (B, T).

    pad_id positions are never selected, nor are `special_ids` (e.g. [CLS], [SEP]). Random
    replacement tokens are uniform in [random_low, vocab_size): the course draws from [1, vocab);
    with a tokenizer pass its number of special tokens so they are never drawn.
    """
    check_int("mask_tokens", "ids", ids)
    check_ndim("mask_tokens", "ids", ids, 2, "(B, T)")
    if not 0 <= random_low < vocab_size:
        raise ValueError(f"mask_tokens: need 0 <= random_low < vocab_size, got {random_low}")
    if not (0 <= select_prob <= 1 and mask_prob >= 0 and random_prob >= 0):
        raise ValueError("mask_tokens: probabilities must lie in [0, 1]")
    if mask_prob + random_prob > 1:
        raise ValueError("mask_tokens: mask_prob + random_prob must be at most 1")
    k_select, k_action, k_random = jax.random.split(key, 3)
    eligible = ids != pad_id
    for special in special_ids:
        eligible &= ids != special
    selected = eligible & jax.random.bernoulli(k_select, select_prob, ids.shape)
    # One uniform draw decides the action: [0, 0.8) mask, [0.8, 0.9) random, [0.9, 1) keep.
    u = jax.random.uniform(k_action, ids.shape)
    to_mask = selected & (u < mask_prob)
    to_random = selected & (u >= mask_prob) & (u < mask_prob + random_prob)
    random_tokens = jax.random.randint(k_random, ids.shape, random_low, vocab_size, ids.dtype)
    inputs = jnp.where(to_mask, jnp.asarray(mask_id, ids.dtype), ids)
    inputs = jnp.where(to_random, random_tokens, inputs)
    labels = jnp.where(selected, ids, jnp.asarray(IGNORE_INDEX, ids.dtype))
    return inputs, labels


def mlm_loss(logits: Array, labels: Array) -> tuple[Array, Array]:
    """(mean cross-entropy over labelled positions, number of them); IGNORE_INDEX is skipped.

    logits (..., V), labels (...). An all-ignored batch gives loss 0, not NaN.
    """
    valid = labels != IGNORE_INDEX
    safe = jnp.where(valid, labels, 0)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
    count = valid.sum()
    return jnp.where(valid, nll, 0.0).sum() / jnp.maximum(count, 1), count
