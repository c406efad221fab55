"""Batch, spatial batch, layer and group norm: gradient audit, known answers, bad input."""

from __future__ import annotations

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets.gradcheck.cases.norm import CASES
from jaxnets.gradcheck.core import rel_error
from jaxnets.layers import norm

NORM_CASES = [c for c in CASES if c.name != "dropout"]
LAYERS = (norm.batchnorm, norm.spatial_batchnorm, norm.layernorm, norm.groupnorm)


# ----------------------------------------------------------------------------- gradients
def jitted(case):
    """The same case with forward and backward compiled whole: run eagerly, check_layer compiles
    some 70 single ops per case, most of this file's runtime. `jaxnets gradcheck` runs the
    cases eagerly; they pass there too."""
    forward = jax.jit(case.forward, static_argnames=tuple(case.config))
    return dataclasses.replace(case, forward=forward, backward=jax.jit(case.backward))


@pytest.mark.parametrize("case", NORM_CASES, ids=lambda c: c.name)
def test_manual_vs_autodiff_vs_numerical(x64, case):
    # Thresholds are LayerCase's defaults: 1e-8 against jax.vjp (same math, different order of
    # operations) and 1e-6 against float64 central differences with h = 1e-5, whose roundoff
    # (~3e-10 absolute) sets the error on the smallest entries of dx.
    result = jitted(case).run(seed=0)
    assert result.passed, result.as_dict()


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("case", NORM_CASES, ids=lambda c: c.name)
def test_jax_grad_through_manual_vjp_matches_autodiff_of_the_forward(x64, case, jit):
    """jax.grad through the custom_vjp form (the hand-derived backward) against jax.grad of
    the plain forward (autodiff's own derivative): independent derivations of one function."""
    layer = next(f for f in LAYERS if f.forward is case.forward)
    args = case.make_args(jax.random.key(1))
    out, cache = case.forward(*args, **case.config)
    y = out[0] if case.has_aux else out
    dout = jnp.asarray(np.random.default_rng(2).standard_normal(y.shape), y.dtype)
    n = len(case.backward(dout, cache))
    fixed = args[n:]

    def loss(f, *diff):
        value = f(*diff, *fixed, **case.config)
        return jnp.vdot(value[0] if case.has_aux else value, dout)

    def plain(*a, **config):
        return case.forward(*a, **config)[0]

    manual = jax.grad(lambda *d: loss(layer, *d), argnums=tuple(range(n)))
    autodiff = jax.grad(lambda *d: loss(plain, *d), argnums=tuple(range(n)))
    maybe_jit = jax.jit if jit else (lambda f: f)
    # The same sums in another order: float64 rounding, ~1e-15 relative, far below 1e-10.
    assert rel_error(maybe_jit(manual)(*args[:n]), maybe_jit(autodiff)(*args[:n])) < 1e-10


# ----------------------------------------------------------------------------- known answers
def _np_batchnorm(x, gamma, beta, mean, var, eps=1e-5):
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


def test_batchnorm_init():
    params, state = norm.batchnorm_init(7)
    np.testing.assert_array_equal(params["gamma"], np.ones(7))
    np.testing.assert_array_equal(params["beta"], np.zeros(7))
    np.testing.assert_array_equal(state["mean"], np.zeros(7))  # the course starts at zeros
    np.testing.assert_array_equal(state["var"], np.zeros(7))
    assert all(v.dtype == jnp.float32 for v in (*params.values(), *state.values()))


def test_spatial_batchnorm_train_gamma_beta(x64):
    # Course check: gamma [3, 4, 5], beta [6, 7, 8] give channel means [6, 7, 8], stds ~[3, 4, 5].
    x = np.random.default_rng(0).normal(10, 4, (2, 3, 4, 5)).transpose(0, 2, 3, 1)  # NCHW -> NHWC
    params = {"gamma": jnp.array([3.0, 4.0, 5.0]), "beta": jnp.array([6.0, 7.0, 8.0])}
    _, state = norm.batchnorm_init(3, jnp.float64)
    (out, _), _ = norm.spatial_batchnorm_forward(jnp.asarray(x), params, state, train=True)
    out = np.asarray(out)
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), [6, 7, 8], atol=1e-12)
    np.testing.assert_allclose(out.std(axis=(0, 1, 2)), [3, 4, 5], rtol=1e-5)  # eps shrinks it
    for c in range(3):  # an explicit per-channel computation of the whole output
        xc = x[..., c]
        want = _np_batchnorm(xc, [3, 4, 5][c], [6, 7, 8][c], xc.mean(), xc.var())
        np.testing.assert_allclose(out[..., c], want, rtol=1e-12)


def test_spatial_batchnorm_eval_after_50_train_passes():
    # Course check: 50 train passes on 2.3 randn + 13 of NCHW shape (10, 4, 11, 12), then the
    # eval-mode output has per-channel means within +-0.06 of 0 and stds within 0.96-1.03.
    # On ONE eval batch that is a coin flip: the zero-initialised running mean leaves a bias of
    # 13 * 0.9**50 / 2.3 = 0.029 and one batch's channel mean has noise 1 / sqrt(1320) = 0.028,
    # so only ~40% of seeds meet the bounds (a numpy simulation over 200 seeds). The bounds are
    # checked on the average over 16 eval batches instead (noise 0.007; 199 of 200 seeds pass),
    # and the exact running statistics against a numpy recomputation over the same draws.
    rng = np.random.default_rng(0)
    shape, c = (10, 4, 11, 12), 4
    params, state = norm.batchnorm_init(c)
    step = jax.jit(lambda x, s: norm.spatial_batchnorm(x, params, s, train=True))
    evaluate = jax.jit(lambda x, s: norm.spatial_batchnorm(x, params, s, train=False))

    def draw() -> np.ndarray:
        return (2.3 * rng.standard_normal(shape) + 13).transpose(0, 2, 3, 1)  # NCHW -> NHWC

    run_mean, run_var = np.zeros(c), np.zeros(c)
    for _ in range(50):
        x = draw()
        _, state = step(jnp.asarray(x, jnp.float32), state)
        run_mean = 0.9 * run_mean + 0.1 * x.mean(axis=(0, 1, 2))
        run_var = 0.9 * run_var + 0.1 * x.var(axis=(0, 1, 2))
    np.testing.assert_allclose(state["mean"], run_mean, rtol=1e-5)
    np.testing.assert_allclose(state["var"], run_var, rtol=1e-4)

    means, stds = [], []
    for _ in range(16):
        out, kept = evaluate(jnp.asarray(draw(), jnp.float32), state)
        for k in state:  # eval mode returns the state unchanged
            np.testing.assert_array_equal(kept[k], state[k])
        means.append(out.mean(axis=(0, 1, 2)))
        stds.append(out.std(axis=(0, 1, 2)))
    means, stds = np.mean(means, axis=0), np.mean(stds, axis=0)
    assert np.all(np.abs(means) < 0.06), means
    assert np.all((stds > 0.96) & (stds < 1.03)), stds


@pytest.mark.parametrize("momentum", [0.9, 0.95])
def test_batchnorm_running_stats_follow_momentum_formula(x64, momentum):
    rng = np.random.default_rng(1)
    params = {"gamma": jnp.asarray(rng.normal(size=4)), "beta": jnp.asarray(rng.normal(size=4))}
    _, state = norm.batchnorm_init(4, jnp.float64)
    run_mean, run_var = np.zeros(4), np.zeros(4)
    for _ in range(3):
        x = rng.normal(3, 2, (16, 4))
        (out, state), _ = norm.batchnorm_forward(
            jnp.asarray(x), params, state, train=True, momentum=momentum
        )
        mu = x.sum(axis=0) / len(x)
        var = ((x - mu) ** 2).sum(axis=0) / len(x)  # biased
        np.testing.assert_allclose(
            out, _np_batchnorm(x, params["gamma"], params["beta"], mu, var), rtol=1e-12, atol=1e-12
        )
        run_mean = momentum * run_mean + (1 - momentum) * mu
        run_var = momentum * run_var + (1 - momentum) * var
        np.testing.assert_allclose(state["mean"], run_mean, rtol=1e-12)
        np.testing.assert_allclose(state["var"], run_var, rtol=1e-12)
    # Eval mode normalises with those running statistics.
    x = rng.normal(3, 2, (5, 4))
    (out, same), _ = norm.batchnorm_forward(jnp.asarray(x), params, state, train=False)
    assert same is state
    want = _np_batchnorm(x, params["gamma"], params["beta"], run_mean, run_var)
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)


def test_batchnorm_state_keeps_its_dtype_under_jit():
    params, state = norm.batchnorm_init(3)
    x = jnp.arange(12.0).reshape(4, 3)
    out, new_state = jax.jit(lambda x, s: norm.batchnorm(x, params, s, train=True))(x, state)
    assert out.dtype == jnp.float32
    assert all(v.dtype == jnp.float32 for v in new_state.values())
    np.testing.assert_allclose(
        new_state["mean"], 0.1 * np.arange(12.0).reshape(4, 3).mean(0), rtol=1e-6
    )


@pytest.mark.parametrize("shape", [(4, 6), (2, 3, 8)])
def test_layernorm_matches_numpy(x64, shape):
    rng = np.random.default_rng(2)
    x = rng.normal(1, 3, shape)
    gamma, beta = rng.normal(size=shape[-1]), rng.normal(size=shape[-1])
    out, _ = norm.layernorm_forward(
        jnp.asarray(x), {"gamma": jnp.asarray(gamma), "beta": jnp.asarray(beta)}
    )
    rows = x.reshape(-1, shape[-1])
    want = np.stack([_np_batchnorm(r, gamma, beta, r.mean(), r.var()) for r in rows])
    np.testing.assert_allclose(np.asarray(out).reshape(rows.shape), want, rtol=1e-12, atol=1e-12)


def test_groupnorm_matches_numpy_loop(x64):
    rng = np.random.default_rng(3)
    n, h, w, c, g = 2, 3, 4, 6, 3
    x = rng.normal(2, 3, (n, h, w, c))
    gamma, beta = rng.normal(size=c), rng.normal(size=c)
    out, _ = norm.groupnorm_forward(
        jnp.asarray(x), {"gamma": jnp.asarray(gamma), "beta": jnp.asarray(beta)}, groups=g
    )
    want = np.empty_like(x)
    size = c // g
    for i in range(n):
        for j in range(g):
            ch = slice(j * size, (j + 1) * size)  # contiguous channel groups
            block = x[i, :, :, ch]
            want[i, :, :, ch] = _np_batchnorm(block, gamma[ch], beta[ch], block.mean(), block.var())
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- bad input
def _bn_args(d: int = 5):
    params, state = norm.batchnorm_init(d)
    return jnp.ones((4, d)), params, state


def test_batchnorm_rejects_bad_input():
    x, params, state = _bn_args()
    with pytest.raises(ValueError, match=re.escape("batchnorm: x must be 2-D (N, D)")):
        norm.batchnorm_forward(jnp.ones((4, 5, 1)), params, state, train=True)
    with pytest.raises(TypeError, match="batchnorm: x must be a floating-point array"):
        norm.batchnorm_forward(jnp.ones((4, 5), jnp.int32), params, state, train=True)
    bad = {**params, "gamma": jnp.ones(6)}
    with pytest.raises(ValueError, match=re.escape("params['gamma'] must have shape (5)")):
        norm.batchnorm_forward(x, bad, state, train=True)
    with pytest.raises(TypeError, match=re.escape("params['beta'] must be a floating-point")):
        norm.batchnorm_forward(x, {**params, "beta": jnp.zeros(5, jnp.int32)}, state, train=True)
    with pytest.raises(ValueError, match=re.escape("state is missing ['var']")):
        norm.batchnorm_forward(x, params, {"mean": state["mean"]}, train=True)
    with pytest.raises(ValueError, match=re.escape("state['mean'] must have shape (5)")):
        norm.batchnorm_forward(x, params, {**state, "mean": jnp.zeros(3)}, train=False)
    with pytest.raises(TypeError, match="train must be a Python bool"):
        norm.batchnorm_forward(x, params, state, train="train")
    with pytest.raises(ValueError, match="momentum must be in"):
        norm.batchnorm_forward(x, params, state, train=True, momentum=1.5)
    with pytest.raises(ValueError, match="eps must be positive"):
        norm.batchnorm_forward(x, params, state, train=True, eps=0.0)


def test_spatial_batchnorm_rejects_bad_input():
    _, params, state = _bn_args(3)
    with pytest.raises(
        ValueError, match=re.escape("spatial_batchnorm: x must be 4-D (N, H, W, C)")
    ):
        norm.spatial_batchnorm_forward(jnp.ones((4, 3)), params, state, train=True)
    # Channels last: an NCHW array has the wrong last axis for gamma.
    msg = "spatial_batchnorm: params['gamma'] must have shape (5), got (3,)"
    with pytest.raises(ValueError, match=re.escape(msg)):
        norm.spatial_batchnorm_forward(jnp.ones((2, 3, 4, 5)), params, state, train=True)


def test_layernorm_rejects_bad_input():
    params = {"gamma": jnp.ones(4), "beta": jnp.zeros(4)}
    with pytest.raises(
        ValueError, match=re.escape("layernorm: params['gamma'] must have shape (5)")
    ):
        norm.layernorm_forward(jnp.ones((2, 5)), {"gamma": jnp.ones(4), "beta": jnp.zeros(5)})
    with pytest.raises(TypeError, match="layernorm: x must be a floating-point array"):
        norm.layernorm_forward(jnp.ones((2, 4), jnp.int32), params)
    with pytest.raises(ValueError, match="layernorm: x needs a feature axis"):
        norm.layernorm_forward(jnp.float32(1.0), params)
    with pytest.raises(TypeError, match="params must be a dict"):
        norm.layernorm_forward(jnp.ones((2, 4)), (jnp.ones(4), jnp.zeros(4)))


def test_groupnorm_rejects_bad_input():
    params = {"gamma": jnp.ones(6), "beta": jnp.zeros(6)}
    x = jnp.ones((2, 3, 3, 6))
    with pytest.raises(ValueError, match="C=6 channels are not divisible by groups=4"):
        norm.groupnorm_forward(x, params, groups=4)
    for groups in (0, -2, 2.0, True):
        with pytest.raises(ValueError, match="groups must be a positive int"):
            norm.groupnorm_forward(x, params, groups=groups)
    with pytest.raises(ValueError, match=re.escape("groupnorm: x must be 4-D (N, H, W, C)")):
        norm.groupnorm_forward(jnp.ones((2, 6)), params, groups=2)
    with pytest.raises(TypeError, match="groupnorm: x must be a floating-point array"):
        norm.groupnorm_forward(jnp.ones((2, 3, 3, 6), jnp.int32), params, groups=2)
    with pytest.raises(
        ValueError, match=re.escape("groupnorm: params['beta'] must have shape (6)")
    ):
        norm.groupnorm_forward(x, {"gamma": jnp.ones(6), "beta": jnp.zeros(3)}, groups=2)


def test_errors_fire_at_trace_time_under_jit():
    params = {"gamma": jnp.ones(4), "beta": jnp.zeros(4)}
    with pytest.raises(
        ValueError, match=re.escape("layernorm: params['gamma'] must have shape (5)")
    ):
        jax.jit(lambda x: norm.layernorm(x, params))(jnp.ones((2, 5)))
    with pytest.raises(ValueError, match="not divisible by groups=4"):
        jax.jit(
            lambda x: norm.groupnorm(x, {"gamma": jnp.ones(6), "beta": jnp.zeros(6)}, groups=4)
        )(jnp.ones((1, 2, 2, 6)))
