"""The three-way gradient check: hand-derived backward vs `jax.grad` vs central differences.

All three are meant to run in float64 (`jax.config.update("jax_enable_x64", True)`); in float32
the numerical gradient alone is only good to about 1e-3.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
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
            err = float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))
            if math.isnan(err):  # max() would drop it: a NaN gradient must not pass
                return math.nan
            worst = max(worst, err)
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


def numerical_gradient_host(f: Callable[[Any], Any], x: Any, *, h: float = 1e-5) -> Any:
    """`numerical_gradient` for functions JAX cannot trace (plain numpy course code): the same
    central differences, one coordinate at a time, calling `f` on fresh float64 numpy copies."""
    leaves, treedef = jax.tree.flatten(x)
    leaves = [np.array(leaf, np.float64) for leaf in leaves]

    def at(flat_index: int, i: int, value: float) -> float:
        copies = [leaf.copy() for leaf in leaves]
        copies[flat_index].reshape(-1)[i] = value
        return float(np.asarray(f(treedef.unflatten(copies)), np.float64))

    grads = []
    for k, leaf in enumerate(leaves):
        flat = leaf.reshape(-1)
        grad = np.array([(at(k, i, v + h) - at(k, i, v - h)) / (2 * h) for i, v in enumerate(flat)])
        grads.append(grad.reshape(leaf.shape))
    return treedef.unflatten(grads)


@dataclasses.dataclass(frozen=True)
class ArrayCheck:
    """One gradient array of a check: `d<name>`'s errors against each reference.

    None means that reference was not available (`jax.grad` of a numpy-only forward); `problem`
    says why an array could not be compared at all (a wrong shape), its errors then being inf.
    """

    name: str
    shape: str
    manual_vs_autodiff: float | None
    manual_vs_numerical: float
    custom_vjp_vs_manual: float | None
    problem: str = ""

    @property
    def grad_name(self) -> str:
        return f"d{self.name}"


@dataclasses.dataclass(frozen=True)
class GradCheck:
    """The outcome of checking one layer or model on one set of inputs.

    The three errors are each the largest over `arrays` (one entry per gradient array); None
    where that comparison was not possible (reported as n/a, with the reason in `note`).
    `print(check)` shows it as the audit's table.
    """

    name: str
    shapes: str
    manual_vs_autodiff: float | None
    manual_vs_numerical: float
    custom_vjp_vs_manual: float | None
    autodiff_threshold: float
    numerical_threshold: float
    arrays: tuple[ArrayCheck, ...] = ()
    note: str = ""

    def _within(self, a: ArrayCheck | GradCheck) -> bool:
        def ok(value: float | None, threshold: float) -> bool:
            return value is None or value <= threshold  # NaN compares False: it fails

        return (
            ok(a.manual_vs_autodiff, self.autodiff_threshold)
            and ok(a.custom_vjp_vs_manual, self.autodiff_threshold)
            and ok(a.manual_vs_numerical, self.numerical_threshold)
        )

    @property
    def passed(self) -> bool:
        return self._within(self)

    @property
    def failures(self) -> list[ArrayCheck]:
        """The gradient arrays outside the thresholds (or that could not be compared)."""
        return [a for a in self.arrays if not self._within(a)]

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "passed": self.passed}

    def __str__(self) -> str:
        from jaxnets.gradcheck.report import render_text

        return render_text([self])

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython and Jupyter
        printer.text(str(self))


def _dims(a: Any) -> str:
    return "x".join(map(str, np.shape(a))) or "scalar"


def _describe(args: Sequence[Any], names: Sequence[str] | None = None) -> str:
    """Shapes of the differentiated inputs, compactly: 'x:4x3x2 w:12x5 b:5' (with `names`) or
    '4x3x2 w:12x5 b:5'."""
    parts = []
    for i, a in enumerate(args):
        if isinstance(a, dict) and all(not isinstance(v, dict) for v in a.values()):
            parts += [f"{k}:{_dims(v)}" for k, v in a.items()]
        elif isinstance(a, dict):
            leaves = jax.tree.leaves(a)
            parts.append(f"{len(leaves)} arrays, {sum(np.size(v) for v in leaves)} values")
        else:
            parts.append(f"{names[i]}:{_dims(a)}" if names else _dims(a))
    return " ".join(parts)


def argument_names(forward: Callable, count: int) -> list[str]:
    """The names of a function's first `count` positional parameters ('arg3' past a *args)."""
    try:
        params = list(inspect.signature(forward).parameters.values())
    except (TypeError, ValueError):
        params = []
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return [positional[i] if i < len(positional) else f"arg{i}" for i in range(count)]


def _path_name(path: tuple) -> str:
    keys = [getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))) for k in path]
    return ".".join(map(str, keys))


def _named_leaves(tree: Any, name: str) -> list[tuple[str, Any]]:
    """('x', x) for an array; ('w', w), ('b', b) for a dict of params; dotted paths deeper."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [(_path_name(path) or name, leaf) for path, leaf in flat]


def _structure(tree: Any) -> str:
    if isinstance(tree, dict):
        return "a dict with keys " + ", ".join(map(str, tree))
    if isinstance(tree, (tuple, list)):
        return f"a {type(tree).__name__} of {len(tree)}"
    return "None" if tree is None else f"an array of shape {_dims(tree)}"


def compare_arrays(
    manual: Sequence[Any],
    numerical: Sequence[Any],
    autodiff: Sequence[Any] | None,
    through_custom_vjp: Sequence[Any] | None,
    names: Sequence[str],
) -> list[ArrayCheck]:
    """One ArrayCheck per gradient array, by the structure of the inputs (`numerical`'s)."""
    checks = []
    for i, (m, num, name) in enumerate(zip(manual, numerical, names)):
        leaves = _named_leaves(num, name)
        problem = ""
        if jax.tree.structure(m) != jax.tree.structure(num):
            problem = f"d{name} is {_structure(m)}, expected {_structure(num)}"
        m_leaves = [] if problem else jax.tree.leaves(m)
        auto = jax.tree.leaves(autodiff[i]) if autodiff is not None else None
        custom = jax.tree.leaves(through_custom_vjp[i]) if through_custom_vjp is not None else None
        for j, (leaf_name, ref) in enumerate(leaves):
            leaf_problem = problem
            if not problem and np.shape(m_leaves[j]) != np.shape(ref):
                leaf_problem = f"shape {_dims(m_leaves[j])}, expected {_dims(ref)}"
            if leaf_problem:
                worst = math.inf
                checks.append(
                    ArrayCheck(
                        leaf_name,
                        _dims(ref),
                        None if auto is None else worst,
                        worst,
                        None if custom is None else worst,
                        leaf_problem,
                    )
                )
                continue
            checks.append(
                ArrayCheck(
                    leaf_name,
                    _dims(ref),
                    None if auto is None else rel_error(m_leaves[j], auto[j]),
                    rel_error(m_leaves[j], ref),
                    None if custom is None else rel_error(custom[j], m_leaves[j]),
                )
            )
    return checks


def _worst(values: list[float | None]) -> float | None:
    if any(v is None for v in values):
        return None
    values = [v for v in values if v is not None]
    if any(math.isnan(v) for v in values):
        return math.nan
    return max(values, default=0.0)


def _summarise(
    name: str, shapes: str, arrays: list[ArrayCheck], note: str, **thresholds: float
) -> GradCheck:
    return GradCheck(
        name=name,
        shapes=shapes,
        manual_vs_autodiff=_worst([a.manual_vs_autodiff for a in arrays]),
        manual_vs_numerical=_worst([a.manual_vs_numerical for a in arrays]),
        custom_vjp_vs_manual=_worst([a.custom_vjp_vs_manual for a in arrays]),
        arrays=tuple(arrays),
        note=note,
        **thresholds,
    )


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
    jax_optional: bool = False,
) -> GradCheck:
    """Compare a layer's hand-derived backward with `jax.vjp` of its forward and with central
    differences of <forward(args), dout> for a random `dout`.

    `backward` returns grads for the leading arguments; the rest (labels, keys, state) are held
    fixed. The `manual_vjp` form is checked too: its VJP must be the hand-derived one.

    With `jax_optional` (a user's own code, maybe plain numpy) `dout` is a numpy array, a
    forward JAX cannot trace gets n/a (None) against `jax.grad` and through `custom_vjp`, with
    the reason in the result's `note`, and its central differences run on the host.
    """
    config = config or {}
    args = tuple(args)

    def value(out: Any) -> Any:
        return out[0] if has_aux else out

    out, cache = forward(*args, **config)
    y = value(out)
    dout = np.random.default_rng(seed).standard_normal(np.shape(y))
    if jax_optional:
        dout = np.asarray(dout, np.float64)
    else:
        dout = jnp.asarray(dout, jnp.result_type(y))
    manual = backward(dout, cache)
    manual = manual if isinstance(manual, tuple) else (manual,)
    n = len(manual)
    if n > len(args):
        raise ValueError(f"{name}: the backward returns {n} gradients for {len(args)} inputs")
    fixed = args[n:]

    def plain(*diff_args):
        return value(forward(*diff_args, *fixed, **config)[0])

    def attempt(compute: Callable[[], Any]) -> tuple[Any, str]:
        """(result, "") or, where JAX may fail to trace user code, (None, the exception type)."""
        if not jax_optional:
            return compute(), ""
        try:
            return compute(), ""
        except Exception as exc:  # numpy code under a JAX trace fails in several ways
            return None, type(exc).__name__

    def through_autodiff():
        _, vjp = jax.vjp(plain, *args[:n])
        return vjp(dout)

    def through_custom_vjp():
        bound = manual_vjp(forward, backward, has_aux=has_aux)
        _, bound_vjp = jax.vjp(lambda *d: value(bound(*d, *fixed, **config)), *args[:n])
        return bound_vjp(jnp.asarray(dout))

    def inner_product(diff_args: tuple) -> Array:
        return jnp.vdot(plain(*diff_args), dout)

    note, custom_note = "", ""
    autodiff, why = attempt(through_autodiff)
    if autodiff is None:
        custom, numerical = None, None
        note = f"jax.grad and custom_vjp n/a: JAX cannot trace the forward ({why})"
    else:
        custom, why = attempt(through_custom_vjp)
        if custom is None:
            custom_note = f"custom_vjp n/a: jax.vjp through it raised {why}"
        # jit can fail where jax.vjp did not: then the host loop below does the differences.
        numerical, _ = attempt(lambda: numerical_gradient(inner_product, args[:n], h=h))
    if numerical is None:
        host_args = tuple(jax.tree.map(lambda a: np.array(a, np.float64), args[:n]))

        def host_inner_product(diff_args: tuple) -> float:
            return np.vdot(np.asarray(plain(*diff_args), np.float64), dout)

        numerical = numerical_gradient_host(host_inner_product, host_args, h=h)

    names = argument_names(forward, len(args))
    arrays = compare_arrays(manual, numerical, autodiff, custom, names[:n])
    if not any(a.problem for a in arrays):  # a gradient of the wrong shape: that is why
        note = note or custom_note
    return _summarise(
        name,
        _describe(args[:n], names[:n]),
        arrays,
        note,
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
    custom = jax.grad(custom_vjp_loss)(params)
    arrays = compare_arrays((manual,), (numerical,), (autodiff,), (custom,), ["params"])
    return _summarise(
        name,
        _describe([params]),
        arrays,
        "",
        autodiff_threshold=autodiff_threshold,
        numerical_threshold=numerical_threshold,
    )
