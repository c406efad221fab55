"""The three-way gradient check: hand-derived backward vs `jax.grad` vs central differences.

All three are meant to run in float64 (`jax.config.update("jax_enable_x64", True)`); in float32
the numerical gradient alone is only good to about 1e-3.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxnets.layers.vjp import manual_vjp

Array = jax.Array


def rel_error(x: Any, y: Any) -> float:
    """max |x - y| / max(1e-8, |x| + |y|), elementwise, over every leaf of two pytrees.

    The course's measure: about 1e-7 or smaller means the gradients agree; a wrong sign or a
    missing term gives something of order 1.
    """
    xs, ys = jax.tree.leaves(x), jax.tree.leaves(y)
    if len(xs) != len(ys):
        raise ValueError(f"rel_error: pytrees differ in structure ({len(xs)} vs {len(ys)} leaves)")
    worst = 0.0
    for a, b in zip(xs, ys):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if a.shape != b.shape:
            raise ValueError(f"rel_error: shapes differ, {a.shape} vs {b.shape}")
        if a.size:
            worst = max(
                worst, float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))
            )
    return worst


def numerical_gradient(f: Callable[[Any], Array], x: Any, *, h: float = 1e-5) -> Any:
    """Central-difference gradient of a scalar function of one pytree, (f(x+h) - f(x-h)) / 2h.

    Every coordinate is perturbed in one vectorised batch, so keep `x` small (this is a check,
    not a training method). Run it in float64.
    """
    flat, unravel = ravel_pytree(x)
    if flat.dtype != jnp.float64:
        raise TypeError(
            f"numerical_gradient needs float64 inputs (got {flat.dtype}); enable it with "
            'jax.config.update("jax_enable_x64", True) and cast the inputs'
        )
    eye = jnp.eye(flat.size, dtype=flat.dtype) * h
    scalar = jax.jit(lambda v: jnp.asarray(f(unravel(v)), jnp.float64))
    plus = jax.lax.map(lambda e: scalar(flat + e), eye, batch_size=256)
    minus = jax.lax.map(lambda e: scalar(flat - e), eye, batch_size=256)
    return unravel((plus - minus) / (2 * h))


@dataclasses.dataclass(frozen=True)
class GradCheck:
    """The outcome of checking one layer or model on one set of inputs."""

    name: str
    shapes: str
    manual_vs_autodiff: float
    manual_vs_numerical: float
    custom_vjp_vs_manual: float
    autodiff_threshold: float
    numerical_threshold: float

    @property
    def passed(self) -> bool:
        return (
            self.manual_vs_autodiff <= self.autodiff_threshold
            and self.custom_vjp_vs_manual <= self.autodiff_threshold
            and self.manual_vs_numerical <= self.numerical_threshold
        )

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "passed": self.passed}


def _describe(args: Sequence[Any]) -> str:
    """Shapes of the differentiated inputs, compactly: '4x3x2 w:12x5 b:5'."""
    parts = []
    for a in args:
        if isinstance(a, dict) and all(not isinstance(v, dict) for v in a.values()):
            parts += [f"{k}:{'x'.join(map(str, jnp.shape(v)))}" for k, v in a.items()]
        elif isinstance(a, dict):
            leaves = jax.tree.leaves(a)
            parts.append(f"{len(leaves)} arrays, {sum(jnp.size(v) for v in leaves)} values")
        else:
            parts.append("x".join(map(str, jnp.shape(a))) or "scalar")
    return " ".join(parts)


def check_layer(
    name: str,
    forward: Callable,
    backward: Callable,
    args: Sequence[Any],
    config: dict[str, Any] | None = None,
    *,
    has_aux: bool = False,
    seed: int = 0,
    h: float = 1e-5,
    autodiff_threshold: float = 1e-8,
    numerical_threshold: float = 1e-6,
) -> GradCheck:
    """Compare a layer's hand-derived backward with `jax.vjp` of its forward and with central
    differences of <forward(args), dout> for a random `dout`.

    `backward` returns grads for the leading arguments; the rest (labels, keys, state) are held
    fixed. The `manual_vjp` form is checked too: its VJP must be the hand-derived one.
    """
    config = config or {}
    args = tuple(args)

    def value(out: Any) -> Any:
        return out[0] if has_aux else out

    out, cache = forward(*args, **config)
    y = value(out)
    dout = np.random.default_rng(seed).standard_normal(jnp.shape(y))
    dout = jnp.asarray(dout, jnp.result_type(y))
    manual = backward(dout, cache)
    manual = manual if isinstance(manual, tuple) else (manual,)
    n = len(manual)
    fixed = args[n:]

    def plain(*diff_args):
        return value(forward(*diff_args, *fixed, **config)[0])

    _, vjp = jax.vjp(plain, *args[:n])
    autodiff = vjp(dout)

    bound = manual_vjp(forward, backward, has_aux=has_aux)
    _, bound_vjp = jax.vjp(lambda *d: value(bound(*d, *fixed, **config)), *args[:n])
    through_custom_vjp = bound_vjp(dout)

    def inner_product(diff_args: tuple) -> Array:
        return jnp.vdot(plain(*diff_args), dout)

    numerical = numerical_gradient(inner_product, args[:n], h=h)

    return GradCheck(
        name=name,
        shapes=_describe(args[:n]),
        manual_vs_autodiff=rel_error(manual, autodiff),
        manual_vs_numerical=rel_error(manual, numerical),
        custom_vjp_vs_manual=rel_error(through_custom_vjp, manual),
        autodiff_threshold=autodiff_threshold,
        numerical_threshold=numerical_threshold,
    )


def check_model(
    name: str,
    loss_and_manual_grads: Callable[[Any], tuple[Array, Any]],
    plain_loss: Callable[[Any], Array],
    custom_vjp_loss: Callable[[Any], Array],
    params: Any,
    *,
    h: float = 1e-5,
    autodiff_threshold: float = 1e-8,
    numerical_threshold: float = 1e-6,
) -> GradCheck:
    """Check a whole network: its hand-chained parameter gradients against `jax.grad` of the
    plain loss, against central differences of it, and against `jax.grad` of the loss built
    from `manual_vjp` layers (which must reproduce the hand-chained backward)."""
    _, manual = loss_and_manual_grads(params)
    autodiff = jax.grad(plain_loss)(params)
    numerical = numerical_gradient(plain_loss, params, h=h)
    return GradCheck(
        name=name,
        shapes=_describe([params]),
        manual_vs_autodiff=rel_error(manual, autodiff),
        manual_vs_numerical=rel_error(manual, numerical),
        custom_vjp_vs_manual=rel_error(jax.grad(custom_vjp_loss)(params), manual),
        autodiff_threshold=autodiff_threshold,
        numerical_threshold=numerical_threshold,
    )
