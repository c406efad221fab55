"""Hand-written reference optimizers, as drop-in `optax.GradientTransformation`s.

Each optimizer is a pair of pure functions over pytrees: `init(params) -> state` and
`update(grads, state, params=None) -> (updates, state)`; apply with `optax.apply_updates`.
So one training loop takes either these or optax's own, and the tests check that the two agree
step by step. States are NamedTuples holding a step `count`, from which a learning-rate
schedule `step -> lr` is read (optax's convention: the first update uses `schedule(0)`).

Course defaults: sgd lr 1e-2; sgd_momentum lr 1e-2, momentum 0.9 (course B: per-parameter
gradient clipping at norm 1.0); rmsprop decay 0.99, eps 1e-8; adam lr 1e-3, b1 0.9, b2 0.999,
eps 1e-8.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

Array = jax.Array
Schedule = Callable[[Array], Array]
ScalarOrSchedule = float | Array | Schedule
PyTree = Any


# ----------------------------------------------------------------------------- schedules
def constant_schedule(learning_rate: float) -> Schedule:
    """step -> learning_rate, for every step."""
    return lambda step: jnp.asarray(learning_rate)


def exponential_schedule(
    learning_rate: float, decay: float, stage_length: int, staircase: bool = False
) -> Schedule:
    """Course B's step -> lr * decay ** (step / stage_length).

    With `staircase` the exponent is floored, so the rate drops once per stage. Course B counts
    epochs; here the count is optimizer steps, so pass stage_length in steps (e.g. epochs per
    stage times steps per epoch). For step >= 0 this equals
    `optax.exponential_decay(lr, stage_length, decay, staircase=staircase)` (checked in tests).
    """
    if stage_length <= 0:
        raise ValueError(f"exponential_schedule: stage_length must be positive, got {stage_length}")

    def schedule(step: Array) -> Array:
        # A float step in the default float type: int32 / int would give float32 even under x64.
        p = jnp.asarray(step, dtype=float) / stage_length
        if staircase:
            p = jnp.floor(p)
        return learning_rate * jnp.power(decay, p)

    return schedule


def _lr_at(learning_rate: ScalarOrSchedule, count: Array) -> Array | float:
    return learning_rate(count) if callable(learning_rate) else learning_rate


def _increment(count: Array) -> Array:
    # Saturate instead of wrapping around to negative step counts (as optax does).
    return jnp.where(count < jnp.iinfo(jnp.int32).max, count + 1, count)


def _zeros() -> Array:
    return jnp.zeros([], jnp.int32)


# ----------------------------------------------------------------------------- clipping
def clip_per_param(grads: PyTree, max_norm: float) -> PyTree:
    """Rescale each leaf to L2 norm <= max_norm (course B clips every parameter separately).

    This is not optax.clip_by_global_norm, which shares one factor across all leaves.
    """

    def clip(g: Array) -> Array:
        norm = jnp.sqrt(jnp.sum(jnp.square(g)))
        # where, not an if: the branch is a traced value. The unused branch may be 0/0 at
        # norm 0, but where selects g there, so no NaN escapes.
        return jnp.where(norm > max_norm, g * (max_norm / norm), g)

    return jax.tree.map(clip, grads)


def _maybe_clip(grads: PyTree, clip_norm: float | None) -> PyTree:
    return grads if clip_norm is None else clip_per_param(grads, clip_norm)


# ----------------------------------------------------------------------------- sgd
class SGDState(NamedTuple):
    count: Array


def sgd(learning_rate: ScalarOrSchedule = 1e-2, *, clip_norm: float | None = None):
    """w -= lr * g, with optional per-parameter clipping of g to norm <= clip_norm."""

    def init(params: PyTree) -> SGDState:
        del params
        return SGDState(count=_zeros())

    def update(grads: PyTree, state: SGDState, params: PyTree = None):
        del params
        lr = _lr_at(learning_rate, state.count)
        grads = _maybe_clip(grads, clip_norm)
        updates = jax.tree.map(lambda g: -lr * g, grads)
        return updates, SGDState(count=_increment(state.count))

    return optax.GradientTransformation(init, update)


# ----------------------------------------------------------------------------- sgd + momentum
class MomentumState(NamedTuple):
    count: Array
    delta: PyTree


def sgd_momentum(
    learning_rate: ScalarOrSchedule = 1e-2,
    momentum: float = 0.9,
    *,
    clip_norm: float | None = None,
):
    """Course B's momentum: delta = momentum * delta + lr * g; w -= delta.

    optax.sgd(lr, momentum) keeps t = g + momentum * t and steps by -lr * t. With a constant lr
    delta = lr * t, so the two agree up to rounding; under a schedule they differ, since here
    each gradient is scaled by the lr of its own step.
    """

    def init(params: PyTree) -> MomentumState:
        return MomentumState(count=_zeros(), delta=jax.tree.map(jnp.zeros_like, params))

    def update(grads: PyTree, state: MomentumState, params: PyTree = None):
        del params
        lr = _lr_at(learning_rate, state.count)
        grads = _maybe_clip(grads, clip_norm)
        delta = jax.tree.map(lambda d, g: momentum * d + lr * g, state.delta, grads)
        updates = jax.tree.map(jnp.negative, delta)
        return updates, MomentumState(count=_increment(state.count), delta=delta)

    return optax.GradientTransformation(init, update)


# ----------------------------------------------------------------------------- rmsprop
class RMSPropState(NamedTuple):
    count: Array
    cache: PyTree


def rmsprop(learning_rate: ScalarOrSchedule = 1e-2, decay: float = 0.99, eps: float = 1e-8):
    """Course A: cache = decay * cache + (1 - decay) * g**2; w -= lr * g / (sqrt(cache) + eps).

    Equals optax.rmsprop(lr, decay=decay, eps=eps, eps_in_sqrt=False): eps outside the root and
    the cache starting at zero (optax's default initial_scale=0, no bias correction).
    """

    def init(params: PyTree) -> RMSPropState:
        return RMSPropState(count=_zeros(), cache=jax.tree.map(jnp.zeros_like, params))

    def update(grads: PyTree, state: RMSPropState, params: PyTree = None):
        del params
        lr = _lr_at(learning_rate, state.count)
        cache = jax.tree.map(lambda c, g: decay * c + (1 - decay) * g * g, state.cache, grads)
        updates = jax.tree.map(lambda g, c: -lr * g / (jnp.sqrt(c) + eps), grads, cache)
        return updates, RMSPropState(count=_increment(state.count), cache=cache)

    return optax.GradientTransformation(init, update)


# ----------------------------------------------------------------------------- adam, adamw
class AdamState(NamedTuple):
    count: Array  # t: the number of updates made so far
    m: PyTree
    v: PyTree


def _adam_direction(grads: PyTree, state: AdamState, b1: float, b2: float, eps: float):
    """Bias-corrected m_hat / (sqrt(v_hat) + eps) and the new state, t incremented before use."""
    t = _increment(state.count)
    m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.m, grads)
    v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state.v, grads)
    # 1 - b**t in the count's float type, then cast: in bfloat16 b2**t would round to 1.
    c1, c2 = 1 - b1**t, 1 - b2**t
    direction = jax.tree.map(
        lambda m, v: (m / c1.astype(m.dtype)) / (jnp.sqrt(v / c2.astype(v.dtype)) + eps), m, v
    )
    return direction, AdamState(count=t, m=m, v=v)


def _adam_init(params: PyTree) -> AdamState:
    zeros = jax.tree.map(jnp.zeros_like, params)
    return AdamState(count=_zeros(), m=zeros, v=jax.tree.map(jnp.zeros_like, params))


def adam(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
):
    """Course A's Adam: t += 1; m, v moving averages; w -= lr * m_hat / (sqrt(v_hat) + eps)."""

    def update(grads: PyTree, state: AdamState, params: PyTree = None):
        del params
        lr = _lr_at(learning_rate, state.count)
        direction, state = _adam_direction(grads, state, b1, b2, eps)
        return jax.tree.map(lambda d: -lr * d, direction), state

    return optax.GradientTransformation(_adam_init, update)


def adamw(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 1e-4,
    mask: PyTree | Callable[[PyTree], PyTree] | None = None,
):
    """Adam with decoupled weight decay, as optax.adamw: w -= lr * (adam_direction + wd * w).

    `mask` (as in optax) is a pytree of bools shaped like params (or a prefix of it), or a
    function params -> such a tree; decay applies only where it is True (e.g. skip biases).
    """

    def update(grads: PyTree, state: AdamState, params: PyTree = None):
        if params is None:
            raise ValueError("adamw: update needs params for the weight decay term")
        lr = _lr_at(learning_rate, state.count)
        direction, state = _adam_direction(grads, state, b1, b2, eps)
        if mask is None:
            decay_on = jax.tree.map(lambda _: True, params)
        else:
            m = mask(params) if callable(mask) else mask
            decay_on = jax.tree.broadcast(m, params)  # a prefix mask covers whole subtrees
        updates = jax.tree.map(
            lambda d, p, on: -lr * jnp.where(on, d + weight_decay * p, d),
            direction,
            params,
            decay_on,
        )
        return updates, state

    return optax.GradientTransformation(_adam_init, update)


# ----------------------------------------------------------------------------- registry
OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "sgd": sgd,
    "sgd_momentum": sgd_momentum,
    "rmsprop": rmsprop,
    "adam": adam,
    "adamw": adamw,
}


def get_optimizer(
    name: str, learning_rate: ScalarOrSchedule | None = None, **kwargs: Any
) -> optax.GradientTransformation:
    """Optimizer by name: one of OPTIMIZERS, or "optax:<name>" for optax's own (e.g. "optax:adam").

    learning_rate None means the optimizer's course default (optax's need one given).
    Extra keyword arguments go to the optimizer's constructor.
    """
    known = [*OPTIMIZERS, "optax:<name>"]
    if name.startswith("optax:"):
        opt_name = name.removeprefix("optax:")
        factory = getattr(optax, opt_name, None)
        if opt_name.startswith("_") or not callable(factory):
            raise ValueError(f"get_optimizer: optax has no optimizer {opt_name!r}")
        if learning_rate is None:
            raise ValueError(f"get_optimizer: {name!r} needs an explicit learning_rate")
        return factory(learning_rate, **kwargs)
    if name not in OPTIMIZERS:
        raise ValueError(f"get_optimizer: unknown optimizer {name!r}; known names: {known}")
    if learning_rate is None:
        return OPTIMIZERS[name](**kwargs)
    return OPTIMIZERS[name](learning_rate, **kwargs)
