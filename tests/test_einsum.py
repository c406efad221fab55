"""The einsum examples against the plain jnp operations, on random inputs of random shapes.

Tolerance: float32 sums of at most 4 products of N(0,1) numbers; einsum and jnp.dot may sum in a
different order, a few ulp of the largest term: rtol 1e-5, atol 1e-5.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxnets import einsum_examples as ex

dim = st.integers(min_value=1, max_value=4)  # few distinct shapes: fewer XLA compiles
seed = st.integers(min_value=0, max_value=2**32 - 1)
TOL = {"rtol": 1e-5, "atol": 1e-5}
SETTINGS = settings(max_examples=15, deadline=None)


# Each test compares inside one jit: one XLA compile per shape instead of one per eager op.
@jax.jit
def square_cases(a):
    return (ex.trace(a), jnp.trace(a)), (ex.diagonal(a), jnp.diag(a))


@jax.jit
def matmul_cases(a, b):
    return ex.matmul(a, b), jnp.dot(a, b)


@jax.jit
def batched_cases(a, b):
    return ex.batched_matmul(a, b), jnp.matmul(a, b)


@jax.jit
def vector_cases(u, v, w, a):
    return (
        (ex.inner(u, w), jnp.dot(u, w)),
        (ex.outer(u, v), jnp.outer(u, v)),
        (ex.transpose(a), a.T),
        (ex.row_sums(a), a.sum(axis=1)),
    )


def randn(rng: np.random.Generator, *shape: int) -> jnp.ndarray:
    return jnp.asarray(rng.normal(size=shape), jnp.float32)


@SETTINGS
@given(n=dim, s=seed)
def test_trace_and_diagonal(n, s):
    for got, want in square_cases(randn(np.random.default_rng(s), n, n)):
        np.testing.assert_allclose(got, want, **TOL)


@SETTINGS
@given(i=dim, j=dim, k=dim, s=seed)
def test_matmul(i, j, k, s):
    rng = np.random.default_rng(s)
    a, b = randn(rng, i, j), randn(rng, j, k)
    out, want = matmul_cases(a, b)
    assert out.shape == (i, k)
    np.testing.assert_allclose(out, want, **TOL)


@SETTINGS
@given(batch=dim, j=dim, k=dim, l_=dim, s=seed)
def test_batched_matmul(batch, j, k, l_, s):
    rng = np.random.default_rng(s)
    a, b = randn(rng, batch, j, k), randn(rng, batch, k, l_)
    out, want = batched_cases(a, b)
    assert out.shape == (batch, j, l_)
    np.testing.assert_allclose(out, want, **TOL)


@SETTINGS
@given(i=dim, j=dim, s=seed)
def test_vector_and_reshaping_examples(i, j, s):
    rng = np.random.default_rng(s)
    cases = vector_cases(randn(rng, i), randn(rng, j), randn(rng, i), randn(rng, i, j))
    for got, want in cases:
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, **TOL)


def test_known_values():
    """Small hand-computed cases."""
    a = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    assert float(ex.trace(a)) == 5.0
    np.testing.assert_array_equal(ex.matmul(a, a), [[7.0, 10.0], [15.0, 22.0]])
    np.testing.assert_array_equal(ex.batched_matmul(a[None], a[None]), [[[7, 10], [15, 22]]])


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        ex.matmul(jnp.ones((2, 3)), jnp.ones((4, 5)))
    with pytest.raises(ValueError):
        ex.trace(jnp.ones((2, 3)))
