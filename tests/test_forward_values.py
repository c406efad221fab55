"""Known answers for the activation and loss forwards.

The three-way audit only shows a backward matches its forward; a wrong forward (a GELU constant,
a leaky slope, a log-softmax shift) would pass it. Each forward here is compared in float64 with
an independent computation: jax.nn, scipy, the closed form in numpy, or values worked by hand.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf, log_softmax, softmax

from jaxnets.layers import core, losses

X = np.array([[-3.0, -0.5, 0.0, 0.25, 2.0], [1.5, -1.0, 4.0, -0.1, 0.7]])
LABELS = np.array([3, 2])


@pytest.fixture(autouse=True)
def _float64(x64):
    yield


def _close(ours, expected):
    np.testing.assert_allclose(np.asarray(ours), expected, rtol=1e-12, atol=1e-14)


def test_relu_and_leaky_relu():
    _close(core.relu_forward(jnp.asarray(X))[0], np.maximum(X, 0))
    leaky = core.leaky_relu_forward(jnp.asarray(X), negative_slope=0.2)[0]
    _close(leaky, np.where(X > 0, X, 0.2 * X))
    _close(core.leaky_relu_forward(jnp.asarray([-2.0]))[0], [-0.02])  # default slope 0.01


def test_sigmoid_and_tanh():
    _close(core.sigmoid_forward(jnp.asarray(X))[0], 1 / (1 + np.exp(-X)))
    _close(core.tanh_forward(jnp.asarray(X))[0], np.tanh(X))


def test_both_gelus():
    exact = X * 0.5 * (1 + erf(X / math.sqrt(2)))  # x * Phi(x)
    _close(core.gelu_forward(jnp.asarray(X))[0], exact)
    tanh_form = 0.5 * X * (1 + np.tanh(math.sqrt(2 / math.pi) * (X + 0.044715 * X**3)))
    _close(core.gelu_forward(jnp.asarray(X), approximate=True)[0], tanh_form)
    _close(core.gelu_forward(jnp.asarray(X))[0], jax.nn.gelu(jnp.asarray(X), approximate=False))
    # By hand: GELU(1) = Phi(1) = 0.8413447460685429.
    _close(core.gelu_forward(jnp.asarray([1.0]))[0], [0.8413447460685429])


def test_softmax_and_log_softmax():
    _close(losses.softmax_forward(jnp.asarray(X))[0], softmax(X, axis=-1))
    _close(losses.log_softmax_forward(jnp.asarray(X))[0], log_softmax(X, axis=-1))
    # Large logits: the shift keeps them finite (exp(1000) overflows).
    big = np.array([[1000.0, 1000.0]])
    _close(losses.log_softmax_forward(jnp.asarray(big))[0], [[-math.log(2), -math.log(2)]])


def test_cross_entropies():
    p = softmax(X, axis=-1)
    expected = -np.mean(np.log(p[np.arange(2), LABELS]))
    _close(losses.cross_entropy_forward(jnp.asarray(p), jnp.asarray(LABELS))[0], expected)
    fused = losses.softmax_cross_entropy_forward(jnp.asarray(X), jnp.asarray(LABELS))[0]
    _close(fused, expected)
    # By hand: uniform logits over 4 classes give ln 4.
    _close(
        losses.softmax_cross_entropy_forward(jnp.zeros((3, 4)), jnp.array([0, 1, 3]))[0],
        math.log(4),
    )


def test_svm_loss_by_hand():
    scores = jnp.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])
    labels = jnp.array([0, 1, 2])
    # CS231n's worked example: per-row hinge losses 2.9, 0 and 12.9; the mean is 5.27 (with
    # margin 1).
    _close(losses.svm_loss_forward(scores, labels)[0], (2.9 + 0.0 + 12.9) / 3)
    _close(losses.svm_loss_forward(scores, labels, margin=0.0)[0], (1.9 + 0 + 10.9) / 3)


def test_mse():
    target = X[::-1] * 0.5
    _close(losses.mse_forward(jnp.asarray(X), jnp.asarray(target))[0], np.mean((X - target) ** 2))
