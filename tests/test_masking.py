"""MLM masking: the course's fractions on a large random batch, padding and special tokens never
selected, labels, jit, and the initial MLM loss of a fresh BERT on random tokens."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets.text.masking import IGNORE_INDEX, mlm_loss
from jaxnets.text.masking import mask_tokens as _mask_tokens

VOCAB = 100
MASK_ID = VOCAB  # the course's extra embedding row

# One compiled program per configuration (eagerly, every primitive compiles on its own).
_STATIC = ("mask_id", "vocab_size", "random_low", "mask_prob", "random_prob", "special_ids")
mask_tokens = jax.jit(_mask_tokens, static_argnames=_STATIC)


def _random_batch(seed: int, b: int = 128, t: int = 128, pad: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, (b, t))
    if pad:  # ragged lengths: everything after each row's length is padding (id 0)
        lengths = rng.integers(1, t + 1, b)
        ids[np.arange(t)[None, :] >= lengths[:, None]] = 0
    return ids.astype(np.int32)


def test_fractions_match_the_course_on_a_large_batch():
    ids = _random_batch(0)
    inputs, labels = mask_tokens(
        jax.random.key(0), jnp.asarray(ids), mask_id=MASK_ID, vocab_size=VOCAB
    )
    inputs, labels = np.asarray(inputs), np.asarray(labels)
    n = ids.size  # 16,384 positions: one standard error of a fraction near 0.15 is ~0.003
    labelled = (labels != IGNORE_INDEX).mean()
    masked = (inputs == MASK_ID).mean()
    changed = (inputs != ids).mean()
    assert labelled == pytest.approx(0.15, abs=0.01), labelled
    assert masked == pytest.approx(0.12, abs=0.01), masked
    # 0.12 masked + 0.015 random, less the 1/99 of random draws that hit the original token.
    assert changed == pytest.approx(0.135, abs=0.01), changed
    # Labels are the original tokens where selected; unselected positions are untouched.
    sel = labels != IGNORE_INDEX
    np.testing.assert_array_equal(labels[sel], ids[sel])
    np.testing.assert_array_equal(inputs[~sel], ids[~sel])
    # Of the selected: ~80% masked, ~10% random, ~10% kept (2,450 selected: s.e. ~0.8%).
    assert (inputs[sel] == MASK_ID).mean() == pytest.approx(0.8, abs=0.03)
    assert (inputs[sel] == ids[sel]).mean() == pytest.approx(0.1 + 0.1 / 99, abs=0.03)
    random_ones = inputs[sel & (inputs != MASK_ID) & (inputs != ids)]
    assert random_ones.min() >= 1 and random_ones.max() < VOCAB
    assert n == 128 * 128


def test_padding_and_special_tokens_are_never_selected():
    ids = _random_batch(1, pad=True)
    ids[:, 0] = 7  # pretend 7 is [CLS]
    inputs, labels = mask_tokens(
        jax.random.key(1), jnp.asarray(ids), mask_id=MASK_ID, vocab_size=VOCAB, special_ids=(7,)
    )
    inputs, labels = np.asarray(inputs), np.asarray(labels)
    pad = ids == 0
    assert pad.sum() > 1000
    assert np.all(labels[pad] == IGNORE_INDEX) and np.all(inputs[pad] == 0)
    assert np.all(labels[ids == 7] == IGNORE_INDEX) and np.all(inputs[ids == 7] == 7)
    # Fractions hold over the real tokens.
    labelled = (labels[~pad & (ids != 7)] != IGNORE_INDEX).mean()
    assert labelled == pytest.approx(0.15, abs=0.015)


def test_same_key_same_corruption_and_random_low():
    ids = jnp.asarray(_random_batch(2, 16, 32))
    kwargs = {"mask_id": MASK_ID, "vocab_size": VOCAB, "random_low": 5, "mask_prob": 0.0}
    a = mask_tokens(jax.random.key(3), ids, **kwargs)
    b = mask_tokens(jax.random.key(3), ids, **kwargs)
    np.testing.assert_array_equal(a[0], b[0])
    changed = np.asarray(a[0])[np.asarray(a[0]) != np.asarray(ids)]
    assert changed.size and changed.min() >= 5  # no special token is ever drawn
    with pytest.raises(ValueError, match="mask_prob"):
        _mask_tokens(jax.random.key(0), ids, mask_id=0, vocab_size=VOCAB, random_prob=0.5)
    with pytest.raises(TypeError, match="integer"):
        _mask_tokens(jax.random.key(0), ids.astype(jnp.float32), mask_id=0, vocab_size=VOCAB)


def test_mlm_loss_ignores_unlabelled_positions():
    logits = jnp.asarray(np.random.default_rng(0).standard_normal((2, 3, 5)), jnp.float32)
    labels = jnp.array([[1, IGNORE_INDEX, 4], [IGNORE_INDEX, IGNORE_INDEX, 0]])
    loss, count = mlm_loss(logits, labels)
    lg = np.asarray(logits, np.float64)
    logp = lg - np.log(np.exp(lg).sum(-1, keepdims=True))
    expected = -(logp[0, 0, 1] + logp[0, 2, 4] + logp[1, 2, 0]) / 3
    assert int(count) == 3 and float(loss) == pytest.approx(expected, rel=1e-5)
    empty, zero = mlm_loss(logits, jnp.full((2, 3), IGNORE_INDEX))
    assert float(empty) == 0.0 and int(zero) == 0


def test_initial_mlm_loss_of_a_fresh_bert_is_about_ln_vocab():
    from flax import nnx

    from jaxnets.models.bert import BertConfig, BertModel

    config = BertConfig(vocab_size=VOCAB, embed_dim=32, num_heads=2, num_layers=2, max_len=128)
    with jax.threefry_partitionable(False):  # one compiled init, quick to compile on CPU
        model = nnx.jit(lambda: BertModel(config, rngs=nnx.Rngs(0)))()
    ids = jnp.asarray(_random_batch(3))
    inputs, labels = mask_tokens(jax.random.key(4), ids, mask_id=config.mask_id, vocab_size=VOCAB)
    logits = nnx.jit(lambda m, x: m(x, ids == 0)[0])(nnx.view(model, deterministic=True), inputs)
    loss, _ = mlm_loss(logits, labels)
    # Near-uniform predictions: ln 100 = 4.61, plus half the logit variance (1/3 for the
    # torch-default-like init of the output layer on layer-normed features) ~ 0.17.
    assert abs(float(loss) - math.log(VOCAB)) < 0.35, float(loss)
