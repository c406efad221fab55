"""conv2d and conv2d_naive: gradient audit, naive vs fast, course A known answer, hand examples,
layout helpers and input validation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets.gradcheck.cases.conv import CASES
from jaxnets.gradcheck.core import rel_error
from jaxnets.layers import conv
from jaxnets.layers.layout import hwio_to_oihw, nchw_to_nhwc, nhwc_to_nchw, oihw_to_hwio

# Each variant on the course A geometry and on the one with unread rows; `jaxnets gradcheck`
# runs every case (kept short here: float64 convolutions compile slowly on CPU).
CONV_CASES = [
    c for c in CASES if c.name.startswith("conv2d") and ("pad 1" in c.name or "unread" in c.name)
]
LAYERS = {"fast": conv.conv2d, "naive": conv.conv2d_naive}

# (x shape, kernel, stride, padding): square and non-square, "same" with an even kernel, padding
# larger than k - 1 (the dx padding goes negative), and (in + 2p - k) % s != 0 (unread rows).
GEOMETRIES = [
    ((2, 4, 4, 3), (3, 3), 1, "same"),
    ((2, 6, 7, 3), (3, 2), (2, 3), (1, 0)),
    ((1, 6, 5, 2), (4, 3), (3, 2), (3, 2)),
    ((2, 4, 5, 2), (1, 1), 2, (2, 1)),
    ((1, 5, 5, 2), (2, 2), 1, "same"),
]


def _inputs(x_shape, kernel, filters=4, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=x_shape), dtype)
    w = jnp.asarray(rng.normal(size=(*kernel, x_shape[-1], filters)), dtype)
    return x, {"w": w, "b": jnp.asarray(rng.normal(size=filters), dtype)}


# ----------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: c.name)
def test_manual_vs_autodiff_vs_numerical(x64, case):
    # Thresholds: manual vs jax.vjp 1e-8 (same maths, float64 roundoff); manual vs central
    # differences CONV_NUMERICAL_THRESHOLD (justified in the cases module).
    check = case.run()
    assert check.passed, check.as_dict()
    assert check.manual_vs_autodiff < 1e-10


@pytest.mark.parametrize("name", LAYERS)
def test_jax_grad_runs_the_manual_backward(x64, name):
    layer = LAYERS[name]
    x, params = _inputs((1, 4, 5, 2), (3, 2))
    config = {"stride": (2, 3), "padding": (1, 0)}
    out, cache = layer.forward(x, params, **config)
    dout = jnp.asarray(np.random.default_rng(1).normal(size=out.shape))
    expected = layer.backward(dout, cache)

    def loss(x, params):
        return jnp.vdot(layer(x, params, **config), dout)

    grad = jax.grad(loss, argnums=(0, 1))
    assert rel_error(jax.jit(grad)(x, params), expected) < 1e-12
    if name == "fast":  # eagerly too (the naive loops would compile op by op: slow)
        assert rel_error(grad(x, params), expected) < 1e-12
    # ... and it is the derivative of the plain lax convolution.
    plain = jax.grad(lambda x, p: jnp.vdot(conv.conv2d_forward(x, p, **config)[0], dout), (0, 1))
    assert rel_error(plain(x, params), expected) < 1e-10


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_naive_and_fast_agree(x64, geometry):
    x_shape, kernel, stride, padding = geometry
    x, params = _inputs(x_shape, kernel)
    config = {"stride": stride, "padding": padding}

    def run(layer, x, params, dout):
        out, cache = layer.forward(x, params, **config)
        return out, layer.backward(dout[:, : out.shape[1], : out.shape[2]], cache)

    fast = jax.jit(lambda *a: run(conv.conv2d, *a))
    naive = jax.jit(lambda *a: run(conv.conv2d_naive, *a))
    dout = jnp.asarray(np.random.default_rng(2).normal(size=(x_shape[0], 9, 9, 4)))
    (out_fast, grads_fast), (out_naive, grads_naive) = fast(x, params, dout), naive(x, params, dout)
    assert out_fast.shape == out_naive.shape
    assert rel_error(out_fast, out_naive) < 1e-10
    assert rel_error(grads_fast, grads_naive) < 1e-10


def test_float32_and_mixed_precision_grads_keep_primal_dtypes(x64):
    x, params = _inputs((2, 5, 5, 3), (3, 3), dtype=np.float32)
    params = {"w": params["w"].astype(jnp.float64), "b": params["b"]}
    dx, dparams = jax.grad(lambda x, p: conv.conv2d(x, p, padding=1).sum(), (0, 1))(x, params)
    assert dx.dtype == jnp.float32
    assert dparams["w"].dtype == jnp.float64 and dparams["b"].dtype == jnp.float32


# ----------------------------------------------------------------------------- known answers
def _numpy_conv_nchw(x, w, b, stride, pad):
    """Course A's definition, written out independently: NCHW input, (F, C, HH, WW) kernel."""
    n, _, h, wd = x.shape
    f, _, hh, ww = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = 1 + (h + 2 * pad - hh) // stride, 1 + (wd + 2 * pad - ww) // stride
    out = np.zeros((n, f, ho, wo))
    for i in range(n):
        for k in range(f):
            for r in range(ho):
                for c in range(wo):
                    patch = xp[i, :, r * stride : r * stride + hh, c * stride : c * stride + ww]
                    out[i, k, r, c] = np.sum(patch * w[k]) + b[k]
    return out


@pytest.mark.parametrize("name", LAYERS)
def test_course_a_conv_forward(x64, name):
    x = np.linspace(-0.1, 0.5, num=2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    w = np.linspace(-0.2, 0.3, num=3 * 3 * 4 * 4).reshape(3, 3, 4, 4)
    b = np.linspace(-0.1, 0.2, num=3)
    expected = _numpy_conv_nchw(x, w, b, stride=2, pad=1)
    params = {"w": oihw_to_hwio(jnp.asarray(w)), "b": jnp.asarray(b)}
    out = LAYERS[name](nchw_to_nhwc(jnp.asarray(x)), params, stride=2, padding=1)
    assert out.shape == (2, 2, 2, 3)
    assert rel_error(nhwc_to_nchw(out), expected) < 1e-8


def test_course_a_conv_forward_float32():
    # In the default float32 the same check holds to float32 precision (rel_error ~1e-6).
    x = np.linspace(-0.1, 0.5, num=96, dtype=np.float32).reshape(2, 3, 4, 4)
    w = np.linspace(-0.2, 0.3, num=144, dtype=np.float32).reshape(3, 3, 4, 4)
    b = np.linspace(-0.1, 0.2, num=3, dtype=np.float32)
    expected = _numpy_conv_nchw(x.astype(np.float64), w.astype(np.float64), b, 2, 1)
    out = conv.conv2d(
        nchw_to_nhwc(x), {"w": oihw_to_hwio(w), "b": jnp.asarray(b)}, stride=2, padding=1
    )
    assert rel_error(nhwc_to_nchw(out), expected) < 1e-5


def _hand_example():
    x = jnp.arange(1.0, 10.0).reshape(1, 3, 3, 1)  # [[1,2,3],[4,5,6],[7,8,9]]
    w = jnp.array([[1.0, 2.0], [3.0, 4.0]]).reshape(2, 2, 1, 1)
    return x, {"w": w, "b": jnp.array([1.0])}


@pytest.mark.parametrize("name", LAYERS)
def test_hand_computed_stride_1(name):
    x, params = _hand_example()
    out, cache = LAYERS[name].forward(x, params)
    # 1*1 + 2*2 + 4*3 + 5*4 + 1 = 38, and so on.
    np.testing.assert_array_equal(out[0, :, :, 0], [[38.0, 48.0], [68.0, 78.0]])
    dx, grads = LAYERS[name].backward(jnp.ones_like(out), cache)
    # dx[y, z] = sum of the kernel taps that read x[y, z]; dw[a, b] = sum of what tap (a, b) read.
    np.testing.assert_array_equal(dx[0, :, :, 0], [[1, 3, 2], [4, 10, 6], [3, 7, 4]])
    np.testing.assert_array_equal(grads["w"][:, :, 0, 0], [[12, 16], [24, 28]])
    np.testing.assert_array_equal(grads["b"], [4.0])


@pytest.mark.parametrize("name", LAYERS)
def test_hand_computed_stride_2_leaves_last_row_unread(name):
    # (3 - 2) % 2 = 1: one 2x2 window at the top left; row 2 and column 2 get zero gradient.
    x, params = _hand_example()
    out, cache = LAYERS[name].forward(x, params, stride=2)
    np.testing.assert_array_equal(out[0, :, :, 0], [[38.0]])
    dx, grads = LAYERS[name].backward(jnp.full_like(out, 2.0), cache)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[2, 4, 0], [6, 8, 0], [0, 0, 0]])
    np.testing.assert_array_equal(grads["w"][:, :, 0, 0], [[2, 4], [8, 10]])


def test_layout_round_trips():
    x = jnp.arange(2 * 3 * 4 * 5.0).reshape(2, 3, 4, 5)
    assert nchw_to_nhwc(x).shape == (2, 4, 5, 3)
    np.testing.assert_array_equal(nhwc_to_nchw(nchw_to_nhwc(x)), x)
    assert nchw_to_nhwc(x)[1, 2, 3, 0] == x[1, 0, 2, 3]
    w = jnp.arange(6 * 3 * 5 * 7.0).reshape(6, 3, 5, 7)  # (F, C, HH, WW)
    assert oihw_to_hwio(w).shape == (5, 7, 3, 6)
    assert oihw_to_hwio(w)[4, 1, 2, 5] == w[5, 2, 4, 1]
    np.testing.assert_array_equal(hwio_to_oihw(oihw_to_hwio(w)), w)
    with pytest.raises(ValueError, match=r"nchw_to_nhwc: x must be 4-D"):
        nchw_to_nhwc(x[0])


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda x, p: (x[0], p, {}), ValueError, r"conv2d(_naive)?: x must be 4-D .*NHWC"),
        (lambda x, p: (x.astype(jnp.int32), p, {}), TypeError, r"x must be a floating-point"),
        (lambda x, p: (x[..., :2], p, {}), ValueError, r"expects C_in=3 channels but x .* has 2"),
        (lambda x, p: (x, {**p, "w": p["w"][0]}, {}), ValueError, r"w must be 4-D .*HWIO"),
        (lambda x, p: (x, {**p, "b": p["b"][None]}, {}), ValueError, r"b must have shape \(4,\)"),
        (lambda x, p: (x, p, {"stride": 0}), ValueError, r"stride must be >= 1"),
        (lambda x, p: (x, p, {"stride": 1.5}), TypeError, r"stride must be an int or a pair"),
        (lambda x, p: (x, p, {"stride": (1, 1, 1)}), TypeError, r"stride must be an int or a pair"),
        (lambda x, p: (x, p, {"padding": "full"}), ValueError, r"padding must be one of"),
        (lambda x, p: (x, p, {"padding": -1}), ValueError, r"padding must be >= 0"),
        (
            lambda x, p: (x[:, :2], p, {}),
            ValueError,
            r"3x3 kernel is larger than the padded input 2x5",
        ),
    ],
)
@pytest.mark.parametrize("name", LAYERS)
def test_bad_input_raises_clearly(name, change, error, match):
    x, params, config = change(*_inputs((2, 5, 5, 3), (3, 3), dtype=np.float32))
    with pytest.raises(error, match=match):
        LAYERS[name](x, params, **config)


def test_errors_fire_at_trace_time_under_jit():
    x, params = _inputs((2, 5, 5, 3), (3, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=r"conv2d: w of shape \(3, 3, 3, 4\) expects C_in=3"):
        jax.jit(conv.conv2d)(nhwc_to_nchw(x), params)
