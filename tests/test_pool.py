"""Max and average pooling, fast and naive: gradient audit, naive vs fast, ties, course A known
answer, hand examples and input validation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets.gradcheck.cases.conv import CASES
from jaxnets.gradcheck.core import rel_error
from jaxnets.layers import pool
from jaxnets.layers.layout import nchw_to_nhwc, nhwc_to_nchw

# Both code paths of the fast layers (reshape 2x2, reduce_window 3x3), the naive ones on the
# overlapping padded case; `jaxnets gradcheck` runs every case.
POOL_CASES = [c for c in CASES if "pool" in c.name and c.name != "max_pool_naive (2x2)"]
LAYERS = {
    "max": pool.max_pool,
    "max_naive": pool.max_pool_naive,
    "avg": pool.avg_pool,
    "avg_naive": pool.avg_pool_naive,
}
PAIRS = {"max": (pool.max_pool, pool.max_pool_naive), "avg": (pool.avg_pool, pool.avg_pool_naive)}

# (x shape, window, stride, padding): the reshape path (stride == window, also when the padded
# size does not divide), and the reduce_window path (overlapping, gapped, padded, non-square).
GEOMETRIES = [
    ((2, 4, 6, 3), 2, None, 0),
    ((2, 5, 7, 2), (2, 3), None, 1),
    ((1, 6, 6, 2), 3, 2, 1),
    ((1, 4, 6, 2), (3, 2), (1, 3), (1, 1)),
    ((1, 3, 3, 2), 3, 1, "same"),
]
# Max pooling on inputs full of ties (the harder case for it), average pooling on distinct values.
AGREEMENT = [("max", g, True) for g in GEOMETRIES] + [("avg", g, False) for g in GEOMETRIES]


def _distinct(shape, seed=0):
    # Distinct values spaced 1/size apart: no ties, and no near-ties for central differences.
    n = int(np.prod(shape))
    return jnp.asarray(np.random.default_rng(seed).permutation(n).reshape(shape) / n)


# ----------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: c.name)
def test_manual_vs_autodiff_vs_numerical(x64, case):
    # Pooling is piecewise linear, and with no near-ties no central difference crosses a kink:
    # what is left is float64 roundoff, <= 2.2e-7 over 12 seeds, under the default 1e-6.
    check = case.run()
    assert check.passed, check.as_dict()
    assert check.manual_vs_autodiff < 1e-10


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize(
    ("config", "jit"),
    [({"window": 3, "stride": 2, "padding": 1}, True), ({"window": 2}, False)],
    ids=["3x3-stride2-pad1-jit", "2x2-eager"],
)
def test_jax_grad_through_manual_vjp_matches_autodiff_of_the_forward(x64, name, config, jit):
    # Eagerly only on a small 2x2 case: eager mode compiles every distinct slice / pad on its own.
    # Distinct inputs: no ties, where the hand-derived max pool picks the first maximum and
    # autodiff splits the gradient among equal values.
    layer = LAYERS[name]
    maybe_jit = jax.jit if jit else (lambda f: f)
    x = _distinct((1, 4, 5, 2) if jit else (1, 4, 4, 2))
    out, _ = maybe_jit(lambda x: layer.forward(x, **config))(x)
    dout = jnp.asarray(np.random.default_rng(1).normal(size=out.shape))
    manual = jax.grad(lambda x: jnp.vdot(layer(x, **config), dout))
    autodiff = jax.grad(lambda x: jnp.vdot(layer.forward(x, **config)[0], dout))
    assert rel_error(maybe_jit(manual)(x), maybe_jit(autodiff)(x)) < 1e-12


@pytest.mark.parametrize(("kind", "geometry", "ties"), AGREEMENT, ids=str)
def test_naive_and_fast_agree(x64, kind, geometry, ties):
    x_shape, window, stride, padding = geometry
    config = {"window": window, "stride": stride, "padding": padding}
    x = _distinct(x_shape)
    if ties:  # many equal values (and, with padding, all-negative windows for max pool)
        x = jnp.round(4 * x) - 2

    def run(layer, x, dout):
        out, cache = layer.forward(x, **config)
        return out, layer.backward(dout[:, : out.shape[1], : out.shape[2]], cache)

    dout = jnp.asarray(np.random.default_rng(2).normal(size=(x_shape[0], 9, 9, x_shape[3])))
    fast, naive = (jax.jit(lambda x, d, f=f: run(f, x, d)) for f in PAIRS[kind])
    (out_fast, dx_fast), (out_naive, dx_naive) = fast(x, dout), naive(x, dout)
    assert out_fast.shape == out_naive.shape
    assert rel_error(out_fast, out_naive) < 1e-12
    assert rel_error(dx_fast, dx_naive) < 1e-12
    if kind == "max":  # one winner per window: the incoming gradient is conserved, not copied
        np.testing.assert_allclose(
            dx_fast.sum(), dout[:, : out_fast.shape[1], : out_fast.shape[2]].sum()
        )


@pytest.mark.parametrize("name", ["max", "max_naive"])
@pytest.mark.parametrize("geometry", [(2, None), (2, 1), (3, 2)], ids=str)
def test_max_pool_ties_go_to_the_first_position(name, geometry):
    window, stride = geometry
    x = jnp.zeros((1, 4, 4, 1))  # every window is one big tie
    forward = jax.jit(LAYERS[name].forward, static_argnames=("window", "stride"))
    out, cache = forward(x, window=window, stride=stride)
    dx = jax.jit(LAYERS[name].backward)(jnp.ones_like(out), cache)
    s = window if stride is None else stride
    expected = np.zeros((4, 4))
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            expected[i * s, j * s] += 1.0  # each window's top-left element
    np.testing.assert_array_equal(dx[0, :, :, 0], expected)


# ----------------------------------------------------------------------------- known answers
def _numpy_max_pool_nchw(x, ph, pw, stride):
    """Course A's max pool, written out independently: NCHW, no padding."""
    n, c, h, w = x.shape
    ho, wo = 1 + (h - ph) // stride, 1 + (w - pw) // stride
    out = np.zeros((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = x[:, :, i * stride : i * stride + ph, j * stride : j * stride + pw]
            out[:, :, i, j] = patch.max(axis=(2, 3))
    return out


@pytest.mark.parametrize("name", ["max", "max_naive"])
def test_course_a_max_pool_forward(x64, name):
    x = np.linspace(-0.3, 0.4, num=2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    expected = _numpy_max_pool_nchw(x, 2, 2, 2)
    out = LAYERS[name](nchw_to_nhwc(jnp.asarray(x)), window=2, stride=2)
    assert out.shape == (2, 2, 2, 3)
    assert rel_error(nhwc_to_nchw(out), expected) < 1e-8


@pytest.mark.parametrize("kind", ["", "_naive"])
def test_hand_computed(kind):
    max_pool, avg_pool = LAYERS["max" + kind], LAYERS["avg" + kind]
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    np.testing.assert_array_equal(max_pool(x)[0, :, :, 0], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(avg_pool(x)[0, :, :, 0], [[2.5, 4.5], [10.5, 12.5]])
    out, cache = max_pool.forward(x)
    dx = max_pool.backward(jnp.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 2, 2, 1), cache)
    np.testing.assert_array_equal(
        dx[0, :, :, 0], [[0, 0, 0, 0], [0, 1, 0, 2], [0, 0, 0, 0], [0, 3, 0, 4]]
    )
    # Padding 1 around [[1, 2], [3, 4]]: each 2x2 window holds one value and three zeros, and the
    # zeros count in the average (course B); max pool pads with -inf, so padding never wins.
    y = jnp.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
    out, cache = avg_pool.forward(y, padding=1)
    np.testing.assert_array_equal(out[0, :, :, 0], [[0.25, 0.5], [0.75, 1.0]])
    np.testing.assert_array_equal(
        avg_pool.backward(jnp.ones_like(out), cache), jnp.full_like(y, 0.25)
    )
    np.testing.assert_array_equal(max_pool(-y, padding=1), -y)
    # 3x3 windows, stride 1 over a 3x4 input: two overlapping windows share columns 1-2.
    z = jnp.arange(12.0).reshape(1, 3, 4, 1)
    out, cache = avg_pool.forward(z, window=3, stride=1)
    np.testing.assert_array_equal(out[0, :, :, 0], [[5.0, 6.0]])
    dz = avg_pool.backward(jnp.full_like(out, 9.0), cache)
    np.testing.assert_array_equal(dz[0, :, :, 0], [[1, 2, 2, 1]] * 3)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("x_shape", "config", "error", "match"),
    [
        ((4, 4, 3), {}, ValueError, r"x must be 4-D .*NHWC"),
        (
            (1, 4, 4, 3),
            {"window": 5},
            ValueError,
            r"5x5 window is larger than the padded input 4x4",
        ),
        ((1, 4, 4, 3), {"window": 5, "stride": 1, "padding": 1}, None, None),  # fits padded
        (
            (1, 4, 4, 3),
            {"window": 2, "padding": 2},
            ValueError,
            r"padding \(2, 2\) must be smaller",
        ),
        ((1, 4, 4, 3), {"stride": 0}, ValueError, r"stride must be >= 1"),
        ((1, 4, 4, 3), {"window": (2, 2, 2)}, TypeError, r"window must be an int or a pair"),
        ((1, 4, 4, 3), {"padding": "full"}, ValueError, r"padding must be one of"),
    ],
)
@pytest.mark.parametrize("name", LAYERS)
def test_bad_input_raises_clearly(name, x_shape, config, error, match):
    x = jnp.zeros(x_shape)
    if error is None:
        assert LAYERS[name](x, **config).shape == (1, 2, 2, 3)
        return
    with pytest.raises(error, match=match):
        LAYERS[name](x, **config)


@pytest.mark.parametrize("name", LAYERS)
def test_integer_input_is_refused(name):
    with pytest.raises(TypeError, match=r"x must be a floating-point array, got dtype int32"):
        LAYERS[name](jnp.zeros((1, 4, 4, 1), jnp.int32))
