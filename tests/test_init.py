"""Initialisers: fans, gains, bounds, and empirical moments against theory.

Statistical tolerances: for U(-a, a) the sample variance of n draws has relative standard error
sqrt(Var(x^2)) / E(x^2) / sqrt(n) = sqrt(4/45) * 3 / sqrt(n) ~= 0.894 / sqrt(n), and the sample
mean has standard error a / sqrt(3n). Tests allow 5 standard errors (fixed keys, so they are
deterministic; 5 SE would be exceeded by chance ~1 in 1.7 million).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import init

SE_VAR_UNIFORM = math.sqrt(4 / 45) * 3  # relative SE of the sample variance, times sqrt(n)


def check_uniform(w: jax.Array, a: float) -> None:
    """Bounds, fill of the interval, mean and variance of a U(-a, a) draw."""
    x = np.asarray(w, np.float64).ravel()
    n = x.size
    assert np.all(np.abs(x) <= a * (1 + 1e-6)), "draw outside [-a, a]"
    assert np.max(np.abs(x)) > a * (1 - 20 / n), "draw does not reach the bound"
    assert abs(x.mean()) < 5 * a / math.sqrt(3 * n)
    assert x.var() / (a * a / 3) == pytest.approx(1.0, abs=5 * SE_VAR_UNIFORM / math.sqrt(n))


@pytest.mark.parametrize(
    ("shape", "fan_in", "fan_out"),
    [
        ((784, 100), 784, 100),
        ((3, 3, 16, 32), 3 * 3 * 16, 3 * 3 * 32),  # HWIO conv
        ((5, 7, 1, 6), 35, 210),  # non-square kernel
        ((4, 8, 2), 32, 8),  # 1-D conv (k, c_in, c_out)
    ],
)
def test_fans(shape, fan_in, fan_out):
    assert init.fans(shape) == (fan_in, fan_out)


def test_fans_rejects_vectors():
    with pytest.raises(ValueError, match="undefined for biases"):
        init.fans((10,))


def test_gains_match_torch_values():
    """torch.nn.init.calculate_gain's table, written out."""
    assert init.calculate_gain("linear") == 1.0
    assert init.calculate_gain("conv2d") == 1.0
    assert init.calculate_gain("sigmoid") == 1.0
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("relu") == pytest.approx(1.4142135623730951)
    assert init.calculate_gain("leaky_relu") == pytest.approx(math.sqrt(2 / (1 + 0.01**2)))
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    assert init.calculate_gain("selu") == 0.75


def test_gain_errors():
    with pytest.raises(ValueError, match="unknown nonlinearity 'gelu'"):
        init.calculate_gain("gelu")
    with pytest.raises(ValueError, match="not a number"):
        init.calculate_gain("leaky_relu", True)


@pytest.mark.parametrize("nonlinearity", ["linear", "relu", "tanh"])
def test_xavier_uniform_dense(nonlinearity):
    gain = init.calculate_gain(nonlinearity)
    shape = (1000, 500)
    w = init.xavier_uniform(jax.random.key(0), shape, gain=gain)
    assert w.shape == shape and w.dtype == jnp.float32
    check_uniform(w, gain * math.sqrt(6 / 1500))


def test_xavier_uniform_conv():
    shape = (3, 3, 64, 128)  # fan_in 576, fan_out 1152
    w = init.xavier_uniform(jax.random.key(1), shape)
    check_uniform(w, math.sqrt(6 / (576 + 1152)))


def test_xavier_matches_jax_glorot_bound():
    """Independent check on the fans: jax's glorot_uniform (fan_avg) uses the same bound for HWIO,
    so the two draws have the same maximum magnitude scale."""
    shape = (5, 5, 32, 64)
    ours = init.xavier_uniform(jax.random.key(2), shape)
    theirs = jax.nn.initializers.glorot_uniform()(jax.random.key(3), shape)
    a = math.sqrt(6 / (25 * 32 + 25 * 64))
    assert float(jnp.max(jnp.abs(theirs))) <= a * (1 + 1e-6)
    assert float(jnp.max(jnp.abs(ours))) == pytest.approx(float(jnp.max(jnp.abs(theirs))), rel=1e-3)


@pytest.mark.parametrize("shape", [(2000, 300), (3, 3, 32, 64)])
def test_he_uniform(shape):
    fan_in, _ = init.fans(shape)
    w = init.he_uniform(jax.random.key(4), shape)
    a = math.sqrt(2) * math.sqrt(3 / fan_in)
    check_uniform(w, a)
    # With the relu gain the variance is 2 / fan_in (Kaiming).
    assert a * a / 3 == pytest.approx(2 / fan_in)


def test_he_uniform_custom_gain():
    w = init.he_uniform(jax.random.key(5), (400, 400), gain=1.0)
    check_uniform(w, math.sqrt(3 / 400))


def test_normal():
    w = np.asarray(init.normal(jax.random.key(6), (1000, 1000)), np.float64)
    # std of n normal draws has relative SE 1/sqrt(2n).
    assert w.std() == pytest.approx(1e-3, rel=5 / math.sqrt(2 * w.size))
    assert abs(w.mean()) < 5 * 1e-3 / math.sqrt(w.size)
    w = init.normal(jax.random.key(7), (10, 10), scale=0.5)
    assert 0.3 < float(jnp.std(w)) < 0.7


def test_dtypes_and_determinism(x64):
    for fn in (init.xavier_uniform, init.he_uniform, init.normal):
        w = fn(jax.random.key(8), (4, 5), dtype=jnp.float64)
        assert w.dtype == jnp.float64
        np.testing.assert_array_equal(w, fn(jax.random.key(8), (4, 5), dtype=jnp.float64))
        assert not np.array_equal(w, fn(jax.random.key(9), (4, 5), dtype=jnp.float64))
    assert init.xavier_uniform(jax.random.key(0), (4, 5), dtype=jnp.bfloat16).dtype == jnp.bfloat16
