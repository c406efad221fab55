"""Bind a hand-derived backward to its forward with `jax.custom_vjp`.

Every layer in `jaxnets.layers` is written as a pair

    forward(*args, **config) -> (out, cache)
    backward(dout, cache)    -> grad, or a tuple of grads for the leading args

`manual_vjp(forward, backward)` returns a function `f(*args, **config) -> out` whose
reverse-mode derivative is exactly `backward`, so `jax.grad` (and `jit`) of a network built
from such functions runs the hand-derived math. Arguments after the ones `backward` returns
grads for (labels, PRNG keys, running statistics) get zero cotangents.

With `has_aux=True` the forward's `out` is `(value, aux)` and only `value` is differentiated:
this is how batch norm returns its updated running statistics.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax

Forward = Callable[..., tuple[Any, Any]]
Backward = Callable[[Any, Any], Any]


def manual_vjp(forward: Forward, backward: Backward, *, has_aux: bool = False) -> Callable:
    """Return `f(*args, **config)` computing `forward(...)[0]` with `backward` as its VJP."""

    @functools.wraps(forward)
    def layer(*args, **config):
        frozen = tuple(sorted((k, _hashable(v)) for k, v in config.items()))
        return _bind(forward, backward, has_aux, len(args), frozen)(*args)

    layer.forward = forward
    layer.backward = backward
    return layer


def _hashable(value: Any) -> Any:
    # Config is static (strides, modes, eps): lists become tuples so it can key the cache.
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


@functools.cache
def _bind(forward: Forward, backward: Backward, has_aux: bool, nargs: int, frozen: tuple):
    # One custom_vjp per (layer, static config): built once, reused by every trace.
    config = dict(frozen)

    @jax.custom_vjp
    def f(*args):
        return forward(*args, **config)[0]

    def f_fwd(*args):
        return forward(*args, **config)

    def f_bwd(cache, dout):
        if has_aux:
            dout = dout[0]
        grads = backward(dout, cache)
        if not isinstance(grads, tuple):
            grads = (grads,)
        return grads + (None,) * (nargs - len(grads))

    f.defvjp(f_fwd, f_bwd)
    return f
