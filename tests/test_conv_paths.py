"""conv2d's kernels (lax, the CPU matmul / im2col one and "mixed") agree forward and backward;
the per-backend choice, the tile-width rule, a loop known answer, bad tile widths, and the fused
conv-relu-pool sandwich against the separate layers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets.gradcheck.cases.conv import CASES
from jaxnets.gradcheck.core import rel_error
from jaxnets.layers import conv, core, pool

KERNEL_CASES = [c for c in CASES if "kernel (" in c.name or c.name.startswith("conv2d_relu_pool")]

# (x shape, kernel, stride, padding, tile widths to try): square and non-square kernels, strides,
# padding larger than k - 1, (in + 2p - k) % s != 0 (unread rows), tiles that do not divide Wo
# (3 into 7, 4 into 6) and a tile wider than the output (8 > 3).
GEOMETRIES = [
    ((1, 5, 7, 2), (5, 5), 1, "same", (1, 3, 4)),
    ((2, 6, 7, 3), (3, 2), (2, 3), (1, 0), (1, 2)),
    ((1, 6, 5, 2), (4, 3), (3, 2), (3, 2), (1, 8)),
    ((2, 4, 5, 2), (1, 1), 2, (2, 1), (1, 2)),
    ((1, 5, 5, 2), (2, 2), 1, "same", (1, 4)),
]


def _inputs(x_shape, kernel, filters=4, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=x_shape), dtype)
    w = jnp.asarray(rng.normal(size=(*kernel, x_shape[-1], filters)), dtype)
    return x, {"w": w, "b": jnp.asarray(rng.normal(size=filters), dtype)}


def _forward_backward(x, params, dout_full, **config):
    out, cache = conv.conv2d_forward(x, params, **config)
    return out, conv.conv2d_backward(dout_full[:, : out.shape[1], : out.shape[2]], cache)


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_matmul_and_lax_kernels_agree(x64, geometry):
    # Both are exact float64 computations of the same sums (in different orders): 1e-12.
    x_shape, kernel, stride, padding, tiles = geometry
    x, params = _inputs(x_shape, kernel)
    dout = jnp.asarray(np.random.default_rng(1).normal(size=(x_shape[0], 9, 9, 4)))
    config = {"stride": stride, "padding": padding}

    @jax.jit
    def run(x, params, dout):
        lax_result = _forward_backward(x, params, dout, impl="lax", **config)
        others = [_forward_backward(x, params, dout, impl="mixed", **config)]
        for t in tiles:
            others.append(_forward_backward(x, params, dout, impl="matmul", tile_width=t, **config))
        return lax_result, others

    (out_lax, grads_lax), results = run(x, params, dout)
    for kernel, (out, grads) in zip(["mixed", *tiles], results):
        assert out.shape == out_lax.shape, kernel
        assert rel_error(out, out_lax) < 1e-12, kernel
        assert rel_error(grads, grads_lax) < 1e-12, kernel


@pytest.mark.parametrize("case", KERNEL_CASES, ids=lambda c: c.name)
def test_kernel_gradients_vs_autodiff_and_numerical(x64, case):
    # Thresholds as in test_conv.py: manual vs jax.vjp 1e-8 (float64 roundoff), manual vs central
    # differences CONV_NUMERICAL_THRESHOLD (justified in jaxnets/gradcheck/cases/conv.py).
    check = case.run()
    assert check.passed, check.as_dict()
    assert check.manual_vs_autodiff < 1e-10


def _normwise(a, b) -> float:
    leaves = zip(jax.tree.leaves(a), jax.tree.leaves(b))
    return max(float(jnp.abs(u - v).max() / jnp.abs(v).max()) for u, v in leaves)


def test_float32_agreement_at_benchmark_geometry():
    # The three-layer net's 7x7x3 -> 32 "same" convolution on 32x32 images, default tile width.
    # Sums of up to 147 (forward) or 2048 (dw) float32 products in different orders: measured
    # about 1e-6 of the largest entry; entries near zero make rel_error's elementwise ratio
    # meaningless in float32, so the comparison is normwise.
    x, params = _inputs((2, 32, 32, 3), (7, 7), filters=32, dtype=np.float32)
    dout = jnp.asarray(np.random.default_rng(1).normal(size=(2, 32, 32, 32)), jnp.float32)
    run = jax.jit(_forward_backward, static_argnames="impl")
    matmul, lax_result = run(x, params, dout, impl="matmul"), run(x, params, dout, impl="lax")
    assert matmul[0].dtype == jnp.float32 and matmul[1][1]["w"].dtype == jnp.float32
    assert _normwise(matmul, lax_result) < 1e-5


def test_known_answer_with_tiles_past_the_edge(x64):
    # An explicit loop over output positions (written here, not using the layer), stride (1, 2)
    # and 3-column tiles over Wo = 4 output columns: the second tile runs 2 columns past the edge.
    x, params = _inputs((2, 5, 7, 2), (3, 3), filters=3)
    xn, wn, bn = np.asarray(x), np.asarray(params["w"]), np.asarray(params["b"])
    xp = np.pad(xn, ((0, 0), (1, 1), (1, 1), (0, 0)))
    ho, wo = 5, (7 + 2 - 3) // 2 + 1
    expected = np.zeros((2, ho, wo, 3))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, i : i + 3, 2 * j : 2 * j + 3, :]
            expected[:, i, j] = np.einsum("nabc,abcf->nf", patch, wn) + bn
    out = conv.conv2d(x, params, stride=(1, 2), padding=1, impl="matmul", tile_width=3)
    assert out.shape == expected.shape
    assert rel_error(out, expected) < 1e-12


def test_auto_picks_cpu_kernels_by_geometry_and_lax_elsewhere(monkeypatch):
    x3, params3 = _inputs((1, 5, 5, 3), (3, 3), dtype=np.float32)
    x16, params16 = _inputs((1, 5, 5, 16), (3, 3), dtype=np.float32)
    cpu = jax.default_backend() == "cpu"
    _, cache = conv.conv2d_forward(x3, params3, padding=1)  # kw * C_in = 9 < 32
    assert isinstance(cache[-1], conv.MatmulPlan) == cpu
    _, cache = conv.conv2d_forward(x16, params16, padding=1)  # 48 >= 32
    assert isinstance(cache[-1], conv.LaxPlan) and cache[-1].dw_by_matmul == cpu
    assert conv.default_impl(3, 7) == ("matmul" if cpu else "lax")
    with conv.forced_impl("lax"):
        _, cache = conv.conv2d_forward(x3, params3, padding=1)
        assert isinstance(cache[-1], conv.LaxPlan) and not cache[-1].dw_by_matmul
    assert conv.default_impl(3, 7) == ("matmul" if cpu else "lax")  # restored after the block
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert conv.default_impl(3, 7) == conv.default_impl(64, 3) == "lax"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((3, 7, 1, 32), 8),  # course 7x7x3: U = 14 = 2 kw
        ((1, 3, 1, 28), 4),  # Fashion-MNIST conv1 3x3x1: U = 6
        ((32, 3, 1, 14), 1),  # 3x3x32 rows hold 96 values: plain im2col
        ((3, 3, 2, 16), 2),  # stride 2: U = 5 for t = 2, 9 > 6 for t = 4
        ((1, 3, 1, 3), 2),  # never wider than 8 or the output
        ((1, 3, 1, 1), 1),
    ],
)
def test_matmul_tile_width_rule(args, expected):
    assert conv.matmul_tile_width(*args) == expected


@pytest.mark.parametrize(
    ("config", "error", "match"),
    [
        (
            {"impl": "fft"},
            ValueError,
            r"conv2d: impl must be one of \('auto', 'xla', 'lax', 'matmul',",
        ),
        ({"impl": "lax", "tile_width": 2}, ValueError, r"tile_width applies only to impl='matmul'"),
        ({"impl": "matmul", "tile_width": 0}, ValueError, r"tile_width must be >= 1"),
        ({"impl": "matmul", "tile_width": 1.5}, TypeError, r"tile_width must be an int"),
    ],
)
def test_bad_kernel_choice_raises_clearly(config, error, match):
    x, params = _inputs((1, 5, 5, 3), (3, 3), dtype=np.float32)
    with pytest.raises(error, match=match):
        conv.conv2d(x, params, **config)


# (x shape, kernel, padding, pool, impl): odd sizes (rows / columns no pool window reaches), a
# 3x3 pool, and each kernel.
SANDWICHES = [
    ((2, 7, 9, 3), (3, 3), "same", 2, "matmul"),
    ((2, 6, 6, 9), (3, 3), "same", 2, "mixed"),
    ((1, 9, 10, 2), (2, 2), 1, 3, "lax"),
]


@pytest.mark.parametrize("geometry", SANDWICHES, ids=str)
def test_conv_relu_pool_equals_the_separate_layers(x64, geometry):
    # Same float64 arithmetic on the same values, so forward and gradients agree to roundoff.
    x_shape, kernel, padding, window, impl = geometry
    x, params = _inputs(x_shape, kernel)
    # Some windows entirely negative (relu cuts their gradient), some positive.
    params["b"] = params["b"].at[0].set(-10.0).at[1].set(10.0)

    def fused(x, p):
        return conv.conv2d_relu_pool(x, p, padding=padding, pool=window, impl=impl)

    def separate(x, p):
        h = core.relu(conv.conv2d(x, p, padding=padding, impl=impl))
        return pool.max_pool(h, window=window)

    @jax.jit
    def run(x, p, dout):
        def grads(f):
            return jax.grad(lambda x, p: jnp.vdot(f(x, p), dout), (0, 1))(x, p)

        return fused(x, p), separate(x, p), grads(fused), grads(separate)

    out = jax.eval_shape(fused, x, params)
    dout = jnp.asarray(np.random.default_rng(3).normal(size=out.shape))
    out_f, out_s, grads_f, grads_s = run(x, params, dout)
    assert out_f.shape == out_s.shape
    assert rel_error(out_f, out_s) < 1e-12
    assert rel_error(grads_f, grads_s) < 1e-12


def test_conv_relu_pool_ties_go_to_the_first_maximum():
    # A 1x1 identity conv, so the pool sees x itself: equal maxima in a window, the gradient goes
    # to the first in row-major order; an all-negative window gets none.
    x = jnp.array([[3.0, 3.0], [1.0, 3.0]]).reshape(1, 2, 2, 1)
    x = jnp.concatenate([x, -x], axis=2)  # second window all <= 0
    params = {"w": jnp.ones((1, 1, 1, 1)), "b": jnp.zeros((1,))}
    out, cache = conv.conv2d_relu_pool_forward(x, params, pool=2)
    np.testing.assert_array_equal(out[0, :, :, 0], [[3.0, 0.0]])
    dx, _ = conv.conv2d_relu_pool_backward(jnp.array([[[[5.0], [7.0]]]]), cache)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[5.0, 0, 0, 0], [0, 0, 0, 0]])


def test_conv_relu_pool_bad_pool_raises():
    x, params = _inputs((1, 4, 4, 2), (3, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=r"pool must be a positive int"):
        conv.conv2d_relu_pool(x, params, pool=0)
    with pytest.raises(ValueError, match=r"5x5 pool is larger than the conv output 2x2"):
        conv.conv2d_relu_pool(x, params, pool=5)
