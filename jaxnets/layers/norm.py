"""Batch, spatial batch, layer and group normalisation, each with a hand-derived backward.

All four compute out = gamma * xhat + beta with xhat = (x - mean) / sqrt(var + eps) and differ
only in which axes the (biased) statistics are taken over. Their backward passes share one
closed form (batch norm's eval mode, with fixed statistics, is just dx = dxhat * inv_std):

    dx = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),   dxhat = dout * gamma

Batch norm's running statistics are explicit state: the forward takes `state` and returns the
updated one next to its output, `((out, new_state), cache)`, so nothing is mutated behind jit.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxnets.layers.checks import check_float, check_ndim, check_shape
from jaxnets.layers.vjp import manual_vjp

Array = jax.Array
Params = dict[str, Array]
State = dict[str, Array]


# ----------------------------------------------------------------------------- checks
def _check_dict(layer: str, name: str, d: Any, keys: tuple[str, ...], size: int) -> None:
    """`d` must be a dict holding float vectors of shape (size,) under `keys`."""
    if not isinstance(d, dict):
        raise TypeError(f"{layer}: {name} must be a dict with keys {keys}, got {type(d).__name__}")
    missing = [k for k in keys if k not in d]
    if missing:
        raise ValueError(f"{layer}: {name} is missing {missing}, got keys {sorted(d)}")
    for k in keys:
        check_float(layer, f"{name}['{k}']", d[k])
        check_shape(layer, f"{name}['{k}']", d[k], (size,))


def _check_eps(layer: str, eps: float) -> None:
    if not eps > 0:
        raise ValueError(f"{layer}: eps must be positive, got {eps!r}")


def _check_train(layer: str, train: Any) -> None:
    # A Python bool, because it picks the code path at trace time (and keys the custom_vjp).
    if not isinstance(train, bool):
        raise TypeError(f"{layer}: train must be a Python bool, got {train!r}")


def _dx(dxhat: Array, xhat: Array, inv_std: Array, axis: int | tuple[int, ...]) -> Array:
    """dL/dx given dL/dxhat, for xhat = (x - mean) * inv_std with biased stats over `axis`.

    The mean and variance depend on x too; their contributions fold into the two mean terms.
    """
    m1 = dxhat.mean(axis=axis, keepdims=True)
    m2 = (dxhat * xhat).mean(axis=axis, keepdims=True)
    return inv_std * (dxhat - m1 - xhat * m2)


# ----------------------------------------------------------------------------- batch norm
def batchnorm_init(num_features: int, dtype: Any = jnp.float32) -> tuple[Params, State]:
    """gamma = 1, beta = 0; running mean and variance start at zeros, as in the course."""
    params = {"gamma": jnp.ones(num_features, dtype), "beta": jnp.zeros(num_features, dtype)}
    state = {"mean": jnp.zeros(num_features, dtype), "var": jnp.zeros(num_features, dtype)}
    return params, state


def _batchnorm_rows(
    layer: str, x: Array, params: Params, state: State, train: bool, eps: float, momentum: float
) -> tuple[tuple[Array, State], dict]:
    """Batch norm of x (M, D) over its rows; the shared core of the plain and spatial forms."""
    _check_train(layer, train)
    _check_eps(layer, eps)
    if not 0 <= momentum <= 1:
        raise ValueError(f"{layer}: momentum must be in [0, 1], got {momentum!r}")
    d = x.shape[1]
    _check_dict(layer, "params", params, ("gamma", "beta"), d)
    _check_dict(layer, "state", state, ("mean", "var"), d)
    gamma, beta = params["gamma"], params["beta"]
    if train:
        mean, var = x.mean(axis=0), x.var(axis=0)  # biased variance (ddof=0), as the course
        # The state keeps its own dtype so it can be a fixed-type carry of a scan/fori_loop.
        new_state = {
            k: (momentum * state[k] + (1 - momentum) * batch).astype(state[k].dtype)
            for k, batch in (("mean", mean), ("var", var))
        }
    else:
        mean, var, new_state = state["mean"], state["var"], state
    inv_std = jax.lax.rsqrt(var + eps)
    xhat = (x - mean) * inv_std
    # The mode lives in the cache's structure (a dict key, static under jit) rather than as a
    # string among the residuals, which custom_vjp rejects as not a JAX type.
    cache = {"train" if train else "eval": (xhat, gamma, inv_std)}
    return (gamma * xhat + beta, new_state), cache


def batchnorm_forward(
    x: Array,
    params: Params,
    state: State,
    *,
    train: bool,
    eps: float = 1e-5,
    momentum: float = 0.9,
) -> tuple[tuple[Array, State], dict]:
    """Batch norm of x (N, D) -> ((out, new_state), cache).

    Train mode normalises with the batch mean and biased variance and returns
    running = momentum * running + (1 - momentum) * batch; eval mode normalises with the running
    statistics and returns `state` unchanged.
    """
    check_float("batchnorm", "x", x)
    check_ndim("batchnorm", "x", x, 2, "(N, D)")
    return _batchnorm_rows("batchnorm", x, params, state, train, eps, momentum)


def batchnorm_backward(dout: Array, cache: dict) -> tuple[Array, Params]:
    ((mode, (xhat, gamma, inv_std)),) = cache.items()
    dparams = {
        "gamma": (dout * xhat).sum(axis=0).astype(gamma.dtype),
        "beta": dout.sum(axis=0).astype(gamma.dtype),
    }
    dxhat = dout * gamma
    if mode == "eval":
        # The running statistics are constants here, so the normalisation is just a scale.
        return dxhat * inv_std, dparams
    # Train mode: mean and variance depend on every row; this is the simplified closed form.
    return _dx(dxhat, xhat, inv_std, 0), dparams


batchnorm = manual_vjp(batchnorm_forward, batchnorm_backward, has_aux=True)


# ----------------------------------------------------------------------------- spatial batch norm
def spatial_batchnorm_forward(
    x: Array,
    params: Params,
    state: State,
    *,
    train: bool,
    eps: float = 1e-5,
    momentum: float = 0.9,
) -> tuple[tuple[Array, State], dict]:
    """Batch norm of NHWC x with per-channel statistics over (N, H, W); gamma, beta (C,)."""
    check_float("spatial_batchnorm", "x", x)
    check_ndim("spatial_batchnorm", "x", x, 4, "(N, H, W, C)")
    rows = x.reshape(-1, x.shape[-1])  # every (n, h, w) position is one sample per channel
    (out, new_state), cache = _batchnorm_rows(
        "spatial_batchnorm", rows, params, state, train, eps, momentum
    )
    return (out.reshape(x.shape), new_state), cache


def spatial_batchnorm_backward(dout: Array, cache: dict) -> tuple[Array, Params]:
    # dout has x's shape, so it carries the shape to restore (no Python tuples in the cache).
    dx, dparams = batchnorm_backward(dout.reshape(-1, dout.shape[-1]), cache)
    return dx.reshape(dout.shape), dparams


spatial_batchnorm = manual_vjp(spatial_batchnorm_forward, spatial_batchnorm_backward, has_aux=True)


# ----------------------------------------------------------------------------- layer norm
def layernorm_forward(x: Array, params: Params, *, eps: float = 1e-5) -> tuple[Array, tuple]:
    """Normalise each sample over the last axis of x (N, D) or (B, T, E); gamma, beta (D,).

    Same in train and eval, no running statistics.
    """
    check_float("layernorm", "x", x)
    if x.ndim < 1:
        raise ValueError(f"layernorm: x needs a feature axis, got shape {x.shape}")
    _check_eps("layernorm", eps)
    _check_dict("layernorm", "params", params, ("gamma", "beta"), x.shape[-1])
    gamma, beta = params["gamma"], params["beta"]
    mean = x.mean(axis=-1, keepdims=True)
    inv_std = jax.lax.rsqrt(x.var(axis=-1, keepdims=True) + eps)
    xhat = (x - mean) * inv_std
    return gamma * xhat + beta, (xhat, gamma, inv_std)


def layernorm_backward(dout: Array, cache: tuple) -> tuple[Array, Params]:
    xhat, gamma, inv_std = cache
    d = dout.shape[-1]
    dparams = {
        "gamma": (dout * xhat).reshape(-1, d).sum(axis=0).astype(gamma.dtype),
        "beta": dout.reshape(-1, d).sum(axis=0).astype(gamma.dtype),
    }
    return _dx(dout * gamma, xhat, inv_std, -1), dparams


layernorm = manual_vjp(layernorm_forward, layernorm_backward)


# ----------------------------------------------------------------------------- group norm
_GROUP_AXES = (1, 2, 4)  # H, W and the channels within a group, of x viewed as (N, H, W, G, C/G)


def groupnorm_forward(
    x: Array, params: Params, *, groups: int, eps: float = 1e-5
) -> tuple[Array, tuple]:
    """Spatial group norm of NHWC x: C splits into `groups` contiguous groups, statistics per
    sample and group over (H, W, C/G); gamma, beta (C,)."""
    check_float("groupnorm", "x", x)
    check_ndim("groupnorm", "x", x, 4, "(N, H, W, C)")
    n, h, w, c = x.shape
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groupnorm: groups must be a positive int, got {groups!r}")
    if c % groups:
        raise ValueError(f"groupnorm: C={c} channels are not divisible by groups={groups}")
    _check_eps("groupnorm", eps)
    _check_dict("groupnorm", "params", params, ("gamma", "beta"), c)
    gamma, beta = params["gamma"], params["beta"]
    xg = x.reshape(n, h, w, groups, c // groups)
    mean = xg.mean(axis=_GROUP_AXES, keepdims=True)
    inv_std = jax.lax.rsqrt(xg.var(axis=_GROUP_AXES, keepdims=True) + eps)
    xhat = (xg - mean) * inv_std  # kept grouped: the backward's reductions need that view
    return gamma * xhat.reshape(x.shape) + beta, (xhat, gamma, inv_std)


def groupnorm_backward(dout: Array, cache: tuple) -> tuple[Array, Params]:
    xhat, gamma, inv_std = cache
    dparams = {
        "gamma": (dout * xhat.reshape(dout.shape)).sum(axis=(0, 1, 2)).astype(gamma.dtype),
        "beta": dout.sum(axis=(0, 1, 2)).astype(gamma.dtype),
    }
    dxhat = (dout * gamma).reshape(xhat.shape)
    return _dx(dxhat, xhat, inv_std, _GROUP_AXES).reshape(dout.shape), dparams


groupnorm = manual_vjp(groupnorm_forward, groupnorm_backward)
