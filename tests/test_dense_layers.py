"""Affine, activations, softmax and losses: hand-derived vs jax.grad vs central differences.

Thresholds: manual vs autodiff <= 1e-8 (both are exact float64 math; only summation order
differs, ~1e-15 in practice); manual vs numerical <= 1e-6 (central differences with h=1e-5 carry
O(h^2) truncation and ~1e-11 rounding error, so a correct gradient lands near 1e-9, while a wrong
sign or a dropped term gives an error of order 1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets.gradcheck.cases.dense import CASES
from jaxnets.layers import core, losses


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_gradients_agree_three_ways(case, x64):
    result = case.run(seed=3)
    assert result.manual_vs_autodiff <= 1e-8, result
    assert result.custom_vjp_vs_manual <= 1e-8, result
    assert result.manual_vs_numerical <= 1e-6, result


def test_affine_flattens_trailing_axes_and_restores_dx_shape():
    x = jnp.arange(24.0).reshape(2, 3, 4)
    params = {"w": jnp.ones((12, 5)), "b": jnp.arange(5.0)}
    out, cache = core.affine_forward(x, params)
    np.testing.assert_allclose(out, x.reshape(2, 12).sum(1, keepdims=True) + jnp.arange(5.0))
    dx, _ = core.affine_backward(jnp.ones((2, 5)), cache)
    assert dx.shape == x.shape


def test_softmax_cross_entropy_matches_closed_form():
    logits = jnp.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    labels = jnp.array([2, 0])
    p0 = np.exp(3) / (np.exp(1) + np.exp(2) + np.exp(3))
    expected = -(np.log(p0) + np.log(1 / 3)) / 2
    assert float(losses.softmax_cross_entropy(logits, labels)) == pytest.approx(expected, rel=1e-6)
    # Integer labels and their one-hot rows are the same loss and gradient.
    onehot = jax.nn.one_hot(labels, 3)
    g_int = jax.grad(losses.softmax_cross_entropy)(logits, labels)
    g_hot = jax.grad(losses.softmax_cross_entropy)(logits, onehot)
    np.testing.assert_allclose(g_int, g_hot, atol=1e-7)


def test_svm_loss_known_answer():
    scores = jnp.array([[3.0, 1.0, 2.5]])  # true class 0: margins 1-3+1 < 0, 2.5-3+1 = 0.5
    assert float(losses.svm_loss(scores, jnp.array([0]))) == pytest.approx(0.5)


def test_manual_backward_runs_under_jit():
    x = jax.random.normal(jax.random.key(0), (8, 6))
    params = {"w": jax.random.normal(jax.random.key(1), (6, 4)), "b": jnp.zeros(4)}
    labels = jnp.arange(8) % 4

    def loss(params, x):
        return losses.softmax_cross_entropy(core.gelu(core.affine(x, params)), labels)

    eager = jax.grad(loss)(params, x)
    jitted = jax.jit(jax.grad(loss))(params, x)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), eager, jitted)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: core.affine(jnp.ones((2, 5)), {"w": jnp.ones((4, 3)), "b": jnp.ones(3)}),
            ValueError,
            "flattens to 5 features",
        ),
        (
            lambda: core.affine(jnp.ones((2, 4)), {"w": jnp.ones((4, 3)), "b": jnp.ones(4)}),
            ValueError,
            "b must have shape",
        ),
        (
            lambda: core.affine(
                jnp.ones((2, 4), jnp.int32), {"w": jnp.ones((4, 3)), "b": jnp.ones(3)}
            ),
            TypeError,
            "floating-point",
        ),
        (lambda: core.relu(jnp.arange(3)), TypeError, "relu: x must be a floating-point"),
        (
            lambda: losses.softmax_cross_entropy(jnp.ones((3, 4)), jnp.array([0, 1])),
            ValueError,
            "3 rows of logits but 2 labels",
        ),
        (
            lambda: losses.softmax_cross_entropy(jnp.ones((3, 4)), jnp.ones((3, 5))),
            ValueError,
            "targets have 5 classes",
        ),
        (lambda: losses.svm_loss(jnp.ones(4), jnp.array([0])), ValueError, "must be 2-D"),
        (lambda: losses.mse(jnp.ones(3), jnp.ones(4)), ValueError, "pred has shape"),
    ],
)
def test_bad_input_is_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_bad_shape_errors_surface_under_jit_before_xla():
    bad = jax.jit(lambda x: core.affine(x, {"w": jnp.ones((4, 3)), "b": jnp.ones(3)}))
    with pytest.raises(ValueError, match="affine"):
        bad(jnp.ones((2, 7)))
