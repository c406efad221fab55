"""The native CPU convolution (jaxnets.native, an XLA FFI custom call): forward, weight and input
gradients against the lax kernel and a float64 loop, its VJP under `jax.grad`, when `impl="auto"`
picks it, clear errors, and the fallback when it cannot be built."""

from __future__ import annotations

import functools
import os
import pathlib
import platform
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import native
from jaxnets.layers import conv

needs_native = pytest.mark.skipif(
    jax.default_backend() != "cpu" or not native.available(),
    reason=f"native CPU kernels not available: {native.unavailable_reason()}"
    if jax.default_backend() == "cpu"
    else "not a CPU backend",
)

# (x shape, kernel, C_out, stride, padding). C_in 16 / 32 run dx natively, C_in 3 / 1 take dx
# from lax; odd batches split unevenly over the thread pool; strides with unread rows; padding
# larger than k - 1 (negative dx padding); output rows that do not fill a register tile.
GEOMETRIES = [
    ((3, 9, 11, 16), (3, 3), 16, 1, 1),
    ((2, 9, 11, 32), (3, 2), 32, (2, 3), (1, 0)),
    ((1, 6, 5, 16), (4, 3), 16, (3, 2), (3, 2)),
    ((3, 32, 32, 3), (7, 7), 32, 1, "same"),
    ((2, 14, 14, 32), (3, 3), 64, 1, "same"),
    ((5, 28, 28, 1), (3, 3), 32, 1, "same"),
    ((2, 7, 9, 16), (1, 1), 48, 2, 0),
]


def _inputs(x_shape, kernel, c_out, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=x_shape), dtype)
    w = jnp.asarray(rng.normal(size=(*kernel, x_shape[-1], c_out)) / np.sqrt(x_shape[-1]), dtype)
    return x, {"w": w, "b": jnp.asarray(rng.normal(size=c_out), dtype)}


def _case(x_shape, kernel, c_out, dout_hw):
    """Inputs, parameters and an output gradient (cropped to the output by the test)."""
    x, params = _inputs(x_shape, kernel, c_out)
    rng = np.random.default_rng(1)
    dout = jnp.asarray(rng.normal(size=(x_shape[0], dout_hw, dout_hw, c_out)), jnp.float32)
    return x, params, dout


def _forward_backward(x, params, dout_full, impl, stride, padding):
    out, cache = conv.conv2d_forward(x, params, stride=stride, padding=padding, impl=impl)
    dout = dout_full[:, : out.shape[1], : out.shape[2]]
    return out, conv.conv2d_backward(dout, cache)


def _normwise(a, b) -> float:
    """max |a - b| / max |b| per leaf, worst leaf. Float32 sums of many products in different
    orders differ by ~1e-7 relative to the largest entry; entries near zero make an elementwise
    ratio meaningless there."""
    leaves = zip(jax.tree.leaves(a), jax.tree.leaves(b))
    return max(float(jnp.abs(u - v).max() / jnp.abs(v).max()) for u, v in leaves)


@needs_native
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_native_matches_lax_forward_and_backward(geometry):
    # Sums of up to 7*7*3 = 147 (forward), 9*64 (dx) or N*Ho*Wo = 3072 (dw) float32 products:
    # measured <= 2e-6 of the largest entry; 1e-5 leaves room for other summation orders while a
    # wrong tap, flip or offset gives O(1).
    x_shape, kernel, c_out, stride, padding = geometry
    x, params, dout = _case(x_shape, kernel, c_out, 40)
    run = jax.jit(_forward_backward, static_argnames=("impl", "stride", "padding"))
    native_result = run(x, params, dout, "native", stride, padding)
    lax_result = run(x, params, dout, "lax", stride, padding)
    assert native_result[0].shape == lax_result[0].shape
    assert jax.tree.map(lambda a: a.dtype, native_result) == jax.tree.map(
        lambda a: a.dtype, lax_result
    )
    assert _normwise(native_result, lax_result) < 1e-5


@needs_native
def test_native_known_answer_against_a_float64_loop():
    # An explicit loop over output positions in float64 numpy (not the layer), stride (2, 1).
    x, params = _inputs((2, 6, 7, 16), (3, 2), 16)
    xn, wn, bn = (np.asarray(a, np.float64) for a in (x, params["w"], params["b"]))
    xp = np.pad(xn, ((0, 0), (1, 1), (0, 0), (0, 0)))
    ho, wo = (6 + 2 - 3) // 2 + 1, 7 - 2 + 1
    expected = np.zeros((2, ho, wo, 16))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, 2 * i : 2 * i + 3, j : j + 2, :]
            expected[:, i, j] = np.einsum("nabc,abcf->nf", patch, wn) + bn
    out = conv.conv2d(x, params, stride=(2, 1), padding=(1, 0), impl="native")
    assert out.shape == expected.shape
    assert _normwise(out, expected) < 1e-6  # float32 rounding of 96-term sums


@needs_native
def test_jax_grad_through_the_native_forward_uses_its_vjp():
    # The FFI call has no autodiff rule; conv2d_forward wraps it with the hand-derived VJP, so a
    # plain forward under jax.grad works and gives the same gradients as the lax kernel's autodiff.
    x, params = _inputs((2, 8, 8, 16), (3, 3), 32)
    dout = jnp.asarray(np.random.default_rng(2).normal(size=(2, 8, 8, 32)), jnp.float32)

    def loss(x, params, impl):
        return jnp.vdot(conv.conv2d_forward(x, params, padding="same", impl=impl)[0], dout)

    native_grads = jax.jit(jax.grad(loss, (0, 1)), static_argnums=2)(x, params, "native")
    lax_grads = jax.jit(jax.grad(loss, (0, 1)), static_argnums=2)(x, params, "lax")
    assert _normwise(native_grads, lax_grads) < 1e-5


@needs_native
def test_native_conv_under_vmap():
    # vmap runs the custom call once per mapped slice ("sequential"): same as a batched call.
    x, params = _inputs((6, 8, 8, 16), (3, 3), 16)
    batched = conv.conv2d(x, params, padding=1, impl="native")
    mapped = jax.vmap(lambda xi: conv.conv2d(xi, params, padding=1, impl="native"))(
        x.reshape(3, 2, 8, 8, 16)
    )
    assert _normwise(mapped.reshape(batched.shape), batched) < 1e-6


@needs_native
def test_auto_picks_native_for_float32_layers_it_supports():
    assert conv.default_impl(3, 7, 32, jnp.float32) == "native"
    assert conv.default_impl(32, 3, 64, jnp.float32) == "native"
    assert conv.default_impl(3, 7, 10, jnp.float32) == "matmul"  # C_out not a multiple of 16
    assert conv.default_impl(32, 3, 64, jnp.float32, xla_only=True) == "mixed"
    with conv.forced_impl("xla"):
        assert conv.default_impl(3, 7, 32, jnp.float32) == "matmul"
    x, params = _inputs((1, 8, 8, 3), (3, 3), 16)
    _, cache = conv.conv2d_forward(x, params, padding=1)
    assert isinstance(cache[-1], conv.NativePlan)
    _, cache = conv.conv2d_forward(x, params, padding=1, impl="xla")
    assert isinstance(cache[-1], conv.MatmulPlan)


def test_native_rejects_what_it_cannot_run_by_name():
    x, params = _inputs((1, 8, 8, 3), (3, 3), 10)
    with pytest.raises(ValueError, match=r"impl='native'.*C_out=10"):
        conv.conv2d(x, params, padding=1, impl="native")


def test_native_rejects_float64_by_name(x64):
    x, params = _inputs((1, 8, 8, 3), (3, 3), 16, dtype=np.float64)
    with pytest.raises(ValueError, match=r"impl='native'.*float64"):
        conv.conv2d(x, params, padding=1, impl="native")
    assert conv.default_impl(3, 3, 16, jnp.float64) != "native"


def _fresh_process(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
        check=False,
    )


FALLBACK = """
    import jax, jax.numpy as jnp
    from jaxnets import native
    from jaxnets.layers import conv
    x = jnp.ones((2, 8, 8, 3)); params = {"w": jnp.ones((3, 3, 3, 16)), "b": jnp.zeros(16)}
    out = jax.jit(lambda x, p: conv.conv2d(x, p, padding=1))(x, params)
    print("impl", conv.default_impl(3, 3, 16, jnp.float32), "center", float(out[0, 4, 4, 0]))
    print("reason", native.unavailable_reason())
"""


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the native kernels are CPU-only")
def test_disabled_or_unbuildable_native_falls_back_to_xla(tmp_path):
    disabled = _fresh_process(FALLBACK, JAXNETS_NATIVE="0")
    assert disabled.returncode == 0, disabled.stderr
    assert "impl matmul center 27.0" in disabled.stdout  # 3x3x3 ones: 27
    assert "disabled by JAXNETS_NATIVE=0" in disabled.stdout
    # A "compiler" that fails, and an empty cache: the run still works, and says why once.
    broken = _fresh_process(
        FALLBACK, CXX="false", JAXNETS_CACHE_DIR=str(tmp_path), JAXNETS_NATIVE="1"
    )
    assert broken.returncode == 0, broken.stderr
    assert "impl matmul center 27.0" in broken.stdout
    assert broken.stderr.count("native CPU kernels unavailable") == 1
    assert not list(tmp_path.rglob("*.so"))  # nothing half-written left in the cache


@pytest.mark.skipif(not native.available(), reason="no working C++ compiler here")
def test_build_is_cached_by_content(tmp_path, monkeypatch):
    from jaxnets.native import build

    monkeypatch.setenv("JAXNETS_CACHE_DIR", str(tmp_path / "cache"))
    source = tmp_path / "tiny.cc"
    source.write_text('extern "C" int answer() { return 42; }\n')
    first = build.build_library(source)
    stamp = first.stat().st_mtime_ns
    assert build.build_library(source) == first and first.stat().st_mtime_ns == stamp  # not rebuilt
    source.write_text('extern "C" int answer() { return 43; }\n')
    second = build.build_library(source)
    assert second != first and second.exists()
    cached = {p.name for p in (tmp_path / "cache" / "native").iterdir()}
    assert cached == {first.name, second.name}  # no temporary files left behind


# (x shape, kernel, C_out, stride, padding): both models' blocks, odd conv outputs (the last
# row / column dropped by the pool), 16 and 48 channels (one channel vector per tile).
SANDWICHES = [
    ((3, 32, 32, 3), (7, 7), 32, 1, "same"),
    ((2, 28, 28, 1), (3, 3), 32, 1, "same"),
    ((2, 14, 14, 32), (3, 3), 64, 1, "same"),
    ((3, 9, 11, 16), (3, 3), 16, 1, 0),
    ((2, 13, 15, 16), (3, 2), 48, (1, 2), 1),
]


@needs_native
@pytest.mark.parametrize("geometry", SANDWICHES, ids=str)
def test_fused_native_conv_relu_pool_matches_lax(geometry):
    # The native kernel pools in registers and returns which tap won; lax computes the conv, then
    # the pool. Same tolerance as above; `which` must agree exactly (random data has no ties).
    x_shape, kernel, c_out, stride, padding = geometry
    x, params, dout = _case(x_shape, kernel, c_out, 20)

    @functools.partial(jax.jit, static_argnames="impl")
    def run(x, params, dout, impl):
        out, cache = conv.conv2d_relu_pool_forward(
            x, params, stride=stride, padding=padding, pool=2, impl=impl
        )
        dout = dout[:, : out.shape[1], : out.shape[2]]
        return out, cache[1], conv.conv2d_relu_pool_backward(dout, cache)

    out, which, grads = run(x, params, dout, "native")
    out_lax, which_lax, grads_lax = run(x, params, dout, "lax")
    assert out.shape == out_lax.shape and which.dtype == which_lax.dtype
    assert bool((which == which_lax).all())
    assert _normwise(out, out_lax) < 1e-5 and _normwise(grads, grads_lax) < 1e-5


@needs_native
def test_jax_grad_through_the_fused_native_forward():
    # The Fashion-MNIST CNN's second block as a plain forward under jax.grad: the fused FFI call
    # carries its hand-derived VJP; same gradients as the manual_vjp layer on lax.
    x, params = _inputs((2, 14, 14, 32), (3, 3), 64)

    def plain(x, params):
        out = conv.conv2d_relu_pool_forward(x, params, padding="same", pool=2, impl="native")[0]
        return jnp.sum(out * jnp.arange(out.size, dtype=out.dtype).reshape(out.shape) / out.size)

    def manual(x, params):
        out = conv.conv2d_relu_pool(x, params, padding="same", pool=2, impl="lax")
        return jnp.sum(out * jnp.arange(out.size, dtype=out.dtype).reshape(out.shape) / out.size)

    native_result = jax.jit(jax.value_and_grad(plain, (0, 1)))(x, params)
    lax_result = jax.jit(jax.value_and_grad(manual, (0, 1)))(x, params)
    assert _normwise(native_result, lax_result) < 1e-5


@needs_native
def test_native_gradients_are_reproducible():
    # Workers take blocks of images dynamically, but the weight gradient sums one partial per
    # block in block order: repeated runs give bit-identical results whatever the scheduling.
    x, params = _inputs((96, 8, 8, 16), (3, 3), 32)
    dout = jnp.asarray(np.random.default_rng(3).normal(size=(96, 8, 8, 32)), jnp.float32)
    run = jax.jit(_forward_backward, static_argnames=("impl", "stride", "padding"))
    first = run(x, params, dout, "native", 1, 1)
    for _ in range(5):
        again = run(x, params, dout, "native", 1, 1)
        assert all(
            bool((a == b).all()) for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(again))
        )


PORTABLE = """
    import jax, jax.numpy as jnp, numpy as np
    from jaxnets import native
    from jaxnets.layers import conv
    assert native.available(), native.unavailable_reason()
    rng = np.random.default_rng(0)
    worst = 0.0
    # C_out 32, 64 and 48: 48 is 6 AVX2 vectors and 12 SSE ones, split into tiles unevenly
    # unless the kernel picks a channel block that divides them.
    for x_shape, kernel, c_out in [((3, 32, 32, 3), (7, 7), 32), ((2, 14, 14, 32), (3, 3), 64),
                                   ((2, 13, 15, 16), (3, 2), 48)]:
        x = jnp.asarray(rng.normal(size=x_shape), jnp.float32)
        w = jnp.asarray(rng.normal(size=(*kernel, x_shape[3], c_out)) / 8, jnp.float32)
        params = {"w": w, "b": jnp.asarray(rng.normal(size=c_out), jnp.float32)}
        for layer in (conv.conv2d, conv.conv2d_relu_pool):
            def loss(x, params, impl):
                out = layer(x, params, padding="same", impl=impl)
                return jnp.sum(out * jnp.cos(jnp.arange(out.size).reshape(out.shape)))
            grad = jax.jit(jax.value_and_grad(loss, (0, 1)), static_argnums=2)
            a, b = grad(x, params, "native"), grad(x, params, "lax")
            for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
                worst = max(worst, float(jnp.abs(u - v).max() / jnp.abs(v).max()))
    print("worst", worst)
"""


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["haswell", "x86-64"])
def test_native_kernels_on_narrower_vectors(arch, tmp_path):
    # The same source compiled for AVX2 (8-lane vectors, 12 accumulators) and plain SSE2 (4
    # lanes): laptops without AVX-512 run these. Both run here, as this CPU has their
    # instructions. Tolerance as in test_native_matches_lax_forward_and_backward.
    flags = (
        pathlib.Path("/proc/cpuinfo").read_text() if pathlib.Path("/proc/cpuinfo").exists() else ""
    )
    if platform.machine() != "x86_64" or (arch == "haswell" and " avx2" not in flags):
        pytest.skip(f"this CPU cannot run {arch} code")
    done = _fresh_process(PORTABLE, JAXNETS_NATIVE_ARCH=arch, JAXNETS_CACHE_DIR=str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert float(done.stdout.split("worst")[1]) < 1e-5
