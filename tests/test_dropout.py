"""Inverted dropout: gradient audit, mask statistics, eval identity, bad input."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets.gradcheck.cases.norm import CASES
from jaxnets.gradcheck.core import check_layer, rel_error
from jaxnets.layers import dropout as dropout_module
from jaxnets.layers.dropout import dropout, dropout_backward, dropout_forward

CASE = next(c for c in CASES if c.name == "dropout")


def normal(shape, dtype=jnp.float32, seed=0):
    # numpy draws: jax.random would compile a kernel per shape, the bulk of this file's runtime.
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


# ----------------------------------------------------------------------------- gradients
def test_manual_vs_autodiff_vs_numerical(x64):
    # Default thresholds (1e-8 vs jax.vjp, 1e-6 vs central differences). Dropout is linear in x
    # for a fixed key, so central differences are exact up to roundoff. The forward is compiled
    # whole (jit) only to keep this test fast; the math is the same.
    case = dataclasses.replace(
        CASE, forward=jax.jit(dropout_forward, static_argnames=tuple(CASE.config))
    )
    result = case.run(seed=0)
    assert result.passed, result.as_dict()


def test_eval_mode_gradcheck(x64):
    x = normal((3, 4), jnp.float64)
    args = (x, jax.random.key(1))
    result = check_layer(
        "dropout (eval)",
        dropout_forward,
        dropout_backward,
        args,
        {"keep_prob": 0.5, "train": False},
    )
    assert result.passed, result.as_dict()


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_jax_grad_through_manual_vjp_matches_autodiff_of_the_forward(x64, jit):
    x, key = CASE.make_args(jax.random.key(3))
    dout = normal(x.shape, x.dtype, seed=4)
    manual = jax.grad(lambda x: jnp.vdot(dropout(x, key, keep_prob=0.7), dout))
    autodiff = jax.grad(
        lambda x: jnp.vdot(dropout_forward(x, key, keep_prob=0.7)[0], dout)  # plain forward
    )
    maybe_jit = jax.jit if jit else (lambda f: f)
    # Both are dout * mask / keep_prob, elementwise, with the same key's mask.
    assert rel_error(maybe_jit(manual)(x), maybe_jit(autodiff)(x)) < 1e-12


# ----------------------------------------------------------------------------- behaviour
@pytest.mark.parametrize("keep_prob", [0.3, 0.5, 0.75, 0.9, 0.0625, 0.5 + 2**-16])
def test_fraction_kept_and_mean_preserved(keep_prob):
    n = 1_000_000
    x = jnp.ones((n,))
    out, _ = dropout_forward(x, jax.random.key(0), keep_prob=keep_prob)
    out = np.asarray(out)
    kept = out != 0
    # Binomial(n, p) fraction has std sqrt(p (1 - p) / n) <= 5e-4: 3e-3 is 6 standard deviations.
    assert abs(kept.mean() - keep_prob) < 3e-3
    # Kept units are scaled by exactly 1 / keep_prob (inverted dropout) ...
    np.testing.assert_allclose(out[kept], 1 / keep_prob, rtol=1e-6)
    # ... so the mean survives: its std is sqrt((1 - p) / (p n)) <= 1.6e-3, bound is 6 of them.
    assert abs(out.mean() - 1) < 1e-2


@pytest.mark.parametrize("keep_prob, bits", [(0.5, 1), (0.75, 2), (0.8125, 4), (0.3, None)])
def test_few_bit_masks_are_independent_units(keep_prob, bits):
    """A keep_prob that is a multiple of 1/2^b draws b bits a unit, several units from one
    32-bit word: neighbours, and units at the same place of neighbouring words, stay
    uncorrelated, and shapes that do not fill the last word come out whole."""
    assert dropout_module._bits_per_unit(keep_prob) == bits
    shape = (1001, 997)  # 998,000 units: not a multiple of 32
    mask = np.asarray(dropout_module.keep_mask(jax.random.key(3), keep_prob, shape), np.float64)
    assert mask.shape == shape
    flat = mask.reshape(-1)
    assert abs(flat.mean() - keep_prob) < 3e-3  # 6 standard deviations, as above
    # A correlation of n independent pairs has std 1 / sqrt(n) ~ 1e-3: 6e-3 is 6 of them.
    for lag in (1, 32 // (bits or 32), 32):
        assert abs(np.corrcoef(flat[:-lag], flat[lag:])[0, 1]) < 6e-3, lag


def test_mean_preserved_on_random_input():
    x = normal((500, 400)) + 3.0
    out, _ = dropout_forward(x, jax.random.key(1), keep_prob=0.5)
    # std of the mean of x * (mask / p - 1) is about sqrt(E[x^2] (1 - p) / (p n)) = 7e-3.
    assert abs(float(out.mean()) - float(x.mean())) < 0.04


def test_eval_mode_is_identity():
    x = normal((4, 5))
    for key in (None, jax.random.key(1)):
        out, cache = dropout_forward(x, key, keep_prob=0.3, train=False)
        np.testing.assert_array_equal(out, x)
        np.testing.assert_array_equal(dropout_backward(x * 2, cache), x * 2)
    np.testing.assert_array_equal(
        jax.jit(lambda x: dropout(x, None, keep_prob=0.3, train=False))(x), x
    )


def test_keep_prob_one_keeps_everything():
    x = normal((4, 5))
    out, _ = dropout_forward(x, jax.random.key(1), keep_prob=1.0)
    np.testing.assert_array_equal(out, x)


def test_backward_uses_the_forward_mask():
    x = normal((50, 40)) + 10.0  # no zeros in x
    key = jax.random.key(7)
    out, cache = dropout_forward(x, key, keep_prob=0.6)
    dx = dropout_backward(jnp.ones_like(x), cache)
    # d out / d x is mask / keep_prob, which is out / x elementwise.
    np.testing.assert_allclose(dx, out / x, rtol=1e-6)
    np.testing.assert_array_equal(dx != 0, out != 0)
    # jax.grad through the manual_vjp form, under jit, uses the same key and so the same mask.
    g = jax.jit(jax.grad(lambda x: dropout(x, key, keep_prob=0.6).sum()))(x)
    np.testing.assert_array_equal(g, dx)


def test_same_key_same_mask_other_key_other_mask():
    x = jnp.ones((64, 64))
    a, _ = dropout_forward(x, jax.random.key(0), keep_prob=0.5)
    b, _ = dropout_forward(x, jax.random.key(0), keep_prob=0.5)
    c, _ = dropout_forward(x, jax.random.key(1), keep_prob=0.5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_raw_uint32_key_and_dtype():
    x = jnp.ones((8, 8), jnp.bfloat16)
    out, _ = dropout_forward(x, jax.random.PRNGKey(0), keep_prob=0.5)
    assert out.dtype == jnp.bfloat16


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("keep_prob", [0.0, -0.1, 1.5])
def test_keep_prob_out_of_range(keep_prob):
    with pytest.raises(
        ValueError, match=r"keep_prob is the probability of keeping a unit and must be in \(0, 1\]"
    ):
        dropout_forward(jnp.ones(3), jax.random.key(0), keep_prob=keep_prob)


def test_rejects_bad_input():
    key = jax.random.key(0)
    with pytest.raises(TypeError, match="keep_prob must be a Python float"):
        dropout_forward(jnp.ones(3), key, keep_prob="0.5")
    with pytest.raises(TypeError, match="dropout: x must be a floating-point array"):
        dropout_forward(jnp.ones(3, jnp.int32), key, keep_prob=0.5)
    with pytest.raises(TypeError, match="dropout: key must be a single jax PRNG key"):
        dropout_forward(jnp.ones(3), jnp.ones(2), keep_prob=0.5)
    with pytest.raises(TypeError, match="dropout: key must be a single jax PRNG key"):
        dropout_forward(jnp.ones(3), None, keep_prob=0.5)  # train mode needs a key
    with pytest.raises(TypeError, match="dropout: key must be a single jax PRNG key"):
        dropout_forward(jnp.ones(3), jax.random.split(key, 2), keep_prob=0.5)
    with pytest.raises(TypeError, match="dropout: train must be a Python bool"):
        dropout_forward(jnp.ones(3), key, keep_prob=0.5, train="eval")
    with pytest.raises(ValueError, match="keep_prob"):  # fires at trace time under jit too
        jax.jit(lambda x: dropout(x, key, keep_prob=0.0))(jnp.ones(3))
