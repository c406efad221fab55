"""The hand-written optimizers against optax's own, numpy loops and closed forms.

Agreement tests feed both optimizers the same fixed sequence of N_STEPS random gradients (some
10x, some 1e-3x) and compare params after EVERY step. The two compute the same formulas in a
different order of floating-point operations (e.g. -lr*g/(sqrt(c)+eps) here, g*(1/(sqrt(c)+eps))
*(-lr) in optax; delta = m*delta + lr*g here, -lr*(g + m*t) there), so steps differ by rounding,
which accumulates over the steps. Measured worst gap over 200 steps, relative to 1 + max|params|:
3.3 ulp (sgd_momentum), 1 ulp (rmsprop), <= 0.2 ulp (adam, adamw), 0 (sgd), in both float32 and
float64. Tolerance TOL * (1 + max|params|), TOL = 1e-5 (84 ulp) in float32, 1e-14 (45 ulp) in
float64: ample for rounding, yet a real formula change is caught at step 0-4 (checked by hand:
eps inside the root, nesterov, eps_root=1e-8, weight decay 1e-3 vs 0 all exceed it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnets import optim

N_STEPS = 200
TOL = {"float32": 1e-5, "float64": 1e-14}


def make_problem(dtype, seed: int = 0):
    """A two-leaf params tree and a fixed sequence of gradients (stacked on a leading step axis),
    some large, some tiny."""
    rng = np.random.default_rng(seed)
    params = {"w": rng.normal(size=(5, 3)), "b": rng.normal(size=(3,))}
    scale = np.where(np.arange(N_STEPS) % 7 == 0, 10.0, 1.0)
    scale = np.where(np.arange(N_STEPS) % 11 == 0, 1e-3, scale)
    grads = {
        k: scale.reshape(-1, *[1] * v.ndim) * rng.normal(size=(N_STEPS, *v.shape))
        for k, v in params.items()
    }
    cast = lambda tree: jax.tree.map(lambda x: jnp.asarray(x, dtype), tree)  # noqa: E731
    return cast(params), cast(grads)


def trajectory(opt, params, grads):
    """Params after every step (leading step axis), the loop a lax.scan."""

    def step(carry, g):
        p, state = carry
        u, state = opt.update(g, state, p)
        p = optax.apply_updates(p, u)
        return (p, state), p

    return jax.lax.scan(step, (params, opt.init(params)), grads)[1]


def assert_agree(ours, theirs, dtype, steps: int = N_STEPS):
    params, grads = make_problem(dtype)
    grads = jax.tree.map(lambda g: g[:steps], grads)
    # One jit for both runs: a single compilation keeps the test fast.
    both = jax.jit(lambda p, g: (trajectory(ours, p, g), trajectory(theirs, p, g)))
    ha, hb = both(params, grads)
    tol = TOL[jnp.dtype(dtype).name]
    for a, b in zip(jax.tree.leaves(ha), jax.tree.leaves(hb), strict=True):
        assert a.dtype == dtype and a.shape[0] == steps
        a, b = np.asarray(a), np.asarray(b)
        # Per step: the gap against the tolerance scaled by that step's parameter size.
        gap = np.abs(a - b).reshape(steps, -1).max(axis=1)
        bound = tol * (1.0 + np.abs(b).reshape(steps, -1).max(axis=1))
        bad = np.flatnonzero(gap > bound)
        assert bad.size == 0, f"step {bad[0]}: gap {gap[bad[0]]:.3g} > {bound[bad[0]]:.3g}"


PAIRS = {
    "sgd": lambda: (optim.sgd(0.05), optax.sgd(0.05)),
    "sgd_momentum": lambda: (optim.sgd_momentum(0.05, 0.9), optax.sgd(0.05, momentum=0.9)),
    # eps outside the square root and a zero initial cache make optax's rmsprop course A's.
    "rmsprop": lambda: (
        optim.rmsprop(0.01, decay=0.99, eps=1e-8),
        optax.rmsprop(0.01, decay=0.99, eps=1e-8, eps_in_sqrt=False),
    ),
    "adam": lambda: (optim.adam(1e-2), optax.adam(1e-2)),
    "adamw": lambda: (optim.adamw(1e-2, weight_decay=0.1), optax.adamw(1e-2, weight_decay=0.1)),
    "adamw_mask": lambda: (
        optim.adamw(1e-2, weight_decay=0.1, mask={"w": True, "b": False}),
        optax.adamw(1e-2, weight_decay=0.1, mask={"w": True, "b": False}),
    ),
    "adamw_mask_fn": lambda: (
        optim.adamw(1e-2, weight_decay=0.1, mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p)),
        optax.adamw(1e-2, weight_decay=0.1, mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p)),
    ),
    # One schedule object for both: this checks that the step count feeds the schedule the same
    # way (first update at schedule(0)). Our schedule itself is checked against optax's below.
    "sgd_schedule": lambda: (
        optim.sgd(sched := optax.exponential_decay(0.1, 50, 0.5)),
        optax.sgd(sched),
    ),
    "adam_schedule": lambda: (
        optim.adam(sched := optim.exponential_schedule(1e-2, 0.3, 40, staircase=True)),
        optax.adam(sched),
    ),
}


@pytest.mark.parametrize("name", PAIRS)
def test_matches_optax_float32(name):
    assert_agree(*PAIRS[name](), jnp.float32)


@pytest.mark.parametrize("name", PAIRS)
def test_matches_optax_float64(name, x64):
    assert_agree(*PAIRS[name](), jnp.float64)


def test_course_defaults(x64):
    """Course A/B defaults, read back from the first step on a unit gradient.

    In float64: in float32, 1 - 0.999 and 1 - 0.999**1 already differ from 1e-3 by ~1e-5.
    """
    p, g = {"w": jnp.zeros(3)}, {"w": jnp.ones(3)}

    def first_update(opt):
        return float(opt.update(g, opt.init(p), p)[0]["w"][0])

    assert first_update(optim.sgd()) == pytest.approx(-1e-2)
    assert first_update(optim.sgd_momentum()) == pytest.approx(-1e-2)
    # rmsprop: cache = 0.01 after one unit gradient, so the step is lr / (0.1 + 1e-8).
    assert first_update(optim.rmsprop()) == pytest.approx(-1e-2 / (0.1 + 1e-8), rel=1e-6)
    # adam: m_hat = v_hat = 1 at t=1, so the first step is lr / (1 + eps).
    assert first_update(optim.adam()) == pytest.approx(-1e-3 / (1 + 1e-8), rel=1e-6)


# ----------------------------------------------------------------------------- numpy references
def numpy_momentum(params, grads, lr_at, momentum, clip_norm):
    """Course B written out in numpy: clip each parameter, delta = m*delta + lr*g, p -= delta."""
    params = {k: np.array(v, np.float64) for k, v in params.items()}
    delta = {k: np.zeros_like(v) for k, v in params.items()}
    history = []
    for step in range(N_STEPS):
        for k in params:
            gk = np.array(grads[k][step], np.float64)
            norm = np.sqrt(np.sum(gk * gk))
            if clip_norm is not None and norm > clip_norm:
                gk = gk * clip_norm / norm
            delta[k] = momentum * delta[k] + lr_at(step) * gk
            params[k] = params[k] - delta[k]
        history.append({k: v.copy() for k, v in params.items()})
    return {k: np.stack([h[k] for h in history]) for k in params}


@pytest.mark.parametrize("use_schedule", [False, True])
def test_momentum_with_clipping_matches_numpy(use_schedule, x64):
    params, grads = make_problem(jnp.float64)
    grads = {k: v.at[3].set(0.0) for k, v in grads.items()}  # a zero gradient must not NaN
    lr_at = (lambda s: 0.05 * 0.5 ** (s / 30)) if use_schedule else (lambda s: 0.05)
    lr = optim.exponential_schedule(0.05, 0.5, 30) if use_schedule else 0.05
    opt = optim.sgd_momentum(lr, 0.9, clip_norm=1.0)
    expected = numpy_momentum(params, grads, lr_at, 0.9, clip_norm=1.0)
    got = jax.jit(trajectory, static_argnums=0)(opt, params, grads)
    for k in params:
        np.testing.assert_allclose(np.asarray(got[k]), expected[k], rtol=1e-12, atol=1e-12)


def test_sgd_clipping_matches_numpy(x64):
    params, grads = make_problem(jnp.float64)
    opt = optim.sgd(0.1, clip_norm=1.0)
    expected = numpy_momentum(params, grads, lambda s: 0.1, momentum=0.0, clip_norm=1.0)
    got = jax.jit(trajectory, static_argnums=0)(opt, params, grads)
    for k in params:
        np.testing.assert_allclose(np.asarray(got[k]), expected[k], rtol=1e-12, atol=1e-12)


def test_clip_per_param_is_per_leaf():
    """Each leaf separately: a big leaf goes to norm 1, a small one is untouched."""
    g = {"big": jnp.array([3.0, 4.0]), "small": jnp.array([0.3, 0.4]), "zero": jnp.zeros(2)}
    out = optim.clip_per_param(g, 1.0)
    np.testing.assert_allclose(out["big"], [0.6, 0.8], rtol=1e-6)
    np.testing.assert_array_equal(out["small"], g["small"])
    np.testing.assert_array_equal(out["zero"], g["zero"])


# ----------------------------------------------------------------------------- schedules
@pytest.mark.parametrize("staircase", [False, True])
def test_exponential_schedule_closed_form_and_optax(staircase, x64):
    ours = optim.exponential_schedule(0.1, 0.9, 7, staircase=staircase)
    theirs = optax.exponential_decay(0.1, 7, 0.9, staircase=staircase)
    steps = np.arange(100)
    want = 0.1 * 0.9 ** (steps // 7 if staircase else steps / 7)
    np.testing.assert_allclose(ours(jnp.asarray(steps)), want, rtol=1e-13)
    np.testing.assert_allclose(theirs(jnp.asarray(steps)), want, rtol=1e-13)


def test_exponential_schedule_matches_optax_on_int32_counts():
    """On the optimizer's own int32 counts, in float32. (Under x64 optax still evaluates its
    schedule in float32 on an int32 count, ~1e-8 off; ours uses the default float type.)"""
    for staircase in (False, True):
        ours = optim.exponential_schedule(3e-3, 0.7, 13, staircase=staircase)
        theirs = optax.exponential_decay(3e-3, 13, 0.7, staircase=staircase)
        counts = jnp.arange(500, dtype=jnp.int32)
        np.testing.assert_allclose(ours(counts), theirs(counts), rtol=1e-6)


def test_constant_schedule():
    s = optim.constant_schedule(0.25)
    assert all(float(s(jnp.asarray(t))) == 0.25 for t in (0, 1, 1000))


def test_exponential_schedule_rejects_bad_stage_length():
    with pytest.raises(ValueError, match="stage_length"):
        optim.exponential_schedule(0.1, 0.9, 0)


def test_schedule_count_is_per_update():
    """The first update uses schedule(0), the k-th schedule(k-1), as in optax."""
    opt = optim.sgd(lambda t: 1.0 / (1.0 + t))
    p, g = {"w": jnp.zeros(())}, {"w": jnp.ones(())}
    state = opt.init(p)
    for k in range(4):
        u, state = opt.update(g, state, p)
        assert float(u["w"]) == pytest.approx(-1.0 / (1 + k))


# ----------------------------------------------------------------------------- convergence, jit
@pytest.mark.parametrize(
    ("name", "kwargs", "steps", "tol"),
    [
        ("sgd", {"learning_rate": 0.2}, 300, 1e-4),
        ("sgd_momentum", {"learning_rate": 0.05}, 300, 1e-4),
        ("sgd_momentum", {"learning_rate": 0.05, "clip_norm": 1.0}, 300, 1e-4),
        ("rmsprop", {"learning_rate": optim.exponential_schedule(0.05, 0.1, 300)}, 600, 1e-3),
        ("adam", {"learning_rate": optim.exponential_schedule(0.1, 0.1, 300)}, 600, 1e-3),
        ("adamw", {"learning_rate": 0.05, "weight_decay": 0.0}, 600, 1e-3),
    ],
)
def test_converges_on_quadratic(name, kwargs, steps, tol):
    """0.5 x'Ax - b'x with A SPD (eigenvalues 0.5..2): every optimizer reaches x* = A^-1 b."""
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    a = jnp.asarray(q @ np.diag(np.linspace(0.5, 2.0, 6)) @ q.T, jnp.float32)
    b = jnp.asarray(rng.normal(size=6), jnp.float32)
    x_star = np.linalg.solve(np.asarray(a, np.float64), np.asarray(b, np.float64))
    loss = lambda p: 0.5 * p["x"] @ a @ p["x"] - b @ p["x"]  # noqa: E731
    opt = optim.get_optimizer(name, **kwargs)

    def step(carry, _):
        p, state = carry
        u, state = opt.update(jax.grad(loss)(p), state, p)
        return (optax.apply_updates(p, u), state), None

    p0 = {"x": jnp.zeros(6, jnp.float32)}
    (p, _), _ = jax.lax.scan(step, (p0, opt.init(p0)), None, length=steps)
    assert np.max(np.abs(np.asarray(p["x"]) - x_star)) < tol


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_jit_matches_eager(name, x64):
    """jit compiles the same arithmetic, up to rounding (XLA may fuse b*m + (1-b)*g into an FMA).

    In float64, where that rounding is ~1e-16 and even Adam's cancellations keep it below 1e-10.
    """
    opt = optim.get_optimizer(name)
    params, grads = make_problem(jnp.float64)
    s_eager = s_jit = opt.init(params)
    step = jax.jit(opt.update)
    for i in range(3):
        g = jax.tree.map(lambda x: x[i], grads)  # noqa: B023
        u_eager, s_eager = opt.update(g, s_eager, params)
        u_jit, s_jit = step(g, s_jit, params)
        for x, y in zip(jax.tree.leaves(u_eager), jax.tree.leaves(u_jit), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-14)
    assert jax.tree.structure(s_eager) == jax.tree.structure(s_jit)


# ----------------------------------------------------------------------------- registry
def test_get_optimizer_names():
    assert set(optim.OPTIMIZERS) == {"sgd", "sgd_momentum", "rmsprop", "adam", "adamw"}
    assert_agree(
        optim.get_optimizer("adam", 1e-2),
        optim.get_optimizer("optax:adam", 1e-2),
        jnp.float32,
        steps=20,
    )
    # The options reach the optimizer: two steps of a gradient of norm 5 (clipped to norm 1,
    # so g = (0.6, 0.8)) with momentum 0.5 and lr 0.1 move by 0.1 g, then 0.5 * 0.1 g + 0.1 g.
    kw = optim.get_optimizer("sgd_momentum", 0.1, momentum=0.5, clip_norm=1.0)
    grads = {"w": jnp.array([3.0, 4.0])}
    state = kw.init(grads)
    first, state = kw.update(grads, state)
    second, _ = kw.update(grads, state)
    g = np.array([0.6, 0.8])
    np.testing.assert_allclose(first["w"], -0.1 * g, rtol=1e-6)
    np.testing.assert_allclose(second["w"], -0.15 * g, rtol=1e-6)


def test_get_optimizer_errors():
    with pytest.raises(ValueError, match=r"unknown optimizer 'nadam'.*sgd_momentum.*optax:<name>"):
        optim.get_optimizer("nadam", 1e-3)
    with pytest.raises(ValueError, match="optax has no optimizer"):
        optim.get_optimizer("optax:not_an_optimizer", 1e-3)
    with pytest.raises(ValueError, match="explicit learning_rate"):
        optim.get_optimizer("optax:adam")


def test_adamw_needs_params():
    opt = optim.adamw()
    p = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match="needs params"):
        opt.update(p, opt.init(p))


def test_adamw_prefix_mask_matches_optax():
    """A mask that is a prefix of the params tree covers whole subtrees, as in optax."""
    rng = np.random.default_rng(2)
    params = {
        "dense": {"w": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)},
        "norm": {"g": jnp.ones(2), "b": jnp.zeros(2)},
    }
    mask = {"dense": True, "norm": False}
    grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=(20, *p.shape)), p.dtype), params)
    ours = optim.adamw(1e-2, weight_decay=0.5, mask=mask)
    theirs = optax.adamw(1e-2, weight_decay=0.5, mask=mask)
    ha, hb = trajectory(ours, params, grads), trajectory(theirs, params, grads)
    for a, b in zip(jax.tree.leaves(ha), jax.tree.leaves(hb), strict=True):
        np.testing.assert_allclose(a, b, rtol=TOL["float32"], atol=TOL["float32"])
    # and the decay really is off for the norm subtree: it matches plain adam there
    hc = trajectory(optim.adam(1e-2), params, grads)
    np.testing.assert_allclose(ha["norm"]["g"], hc["norm"]["g"], rtol=1e-6)
    assert not np.allclose(ha["dense"]["w"], hc["dense"]["w"], rtol=1e-6)


def test_composes_with_optax():
    """Ours are ordinary GradientTransformations: optax.chain and optax.MultiSteps accept them."""
    params, grads = make_problem(jnp.float32)
    grads = jax.tree.map(lambda g: g[:30], grads)
    ours = optax.chain(optax.clip_by_global_norm(1.0), optim.adam(1e-2))
    theirs = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))
    ha, hb = trajectory(ours, params, grads), trajectory(theirs, params, grads)
    for a, b in zip(jax.tree.leaves(ha), jax.tree.leaves(hb), strict=True):
        np.testing.assert_allclose(a, b, rtol=TOL["float32"], atol=TOL["float32"])
    multi = optax.MultiSteps(optim.sgd(0.1), every_k_schedule=2)
    state = multi.init(params)
    u, state = multi.update(jax.tree.map(lambda g: g[0], grads), state, params)
    assert all(float(jnp.max(jnp.abs(x))) == 0.0 for x in jax.tree.leaves(u))  # accumulating
