"""Gradient checks of a user's own layers: `check_pair` and `jaxnets gradcheck FILE.py`.

The course's convention, which is how layer pairs are found in a file or module:

    NAME_forward(x, *params, **options) -> (out, cache)
    NAME_backward(dout, cache)          -> (dx, *dparams)

- The backward returns one gradient per positional input of the forward, in the forward's order
  (`affine_forward(x, w, b)` -> `(dx, dw, db)`); a forward with a single input may return just
  `dx`, not a tuple. A backward that returns gradients for fewer inputs holds the rest fixed
  (labels, masks): only the leading ones are checked.
- jaxnets' own dict form works too: `affine_forward(x, params)` with `params = {"w": .., "b": ..}`
  and a backward returning `(dx, {"w": dw, "b": db})`.
- Input shapes, one per positional input, come from the file,
  `SHAPES = {"affine": ((4, 5), (5, 3), (3,))}` (a dict of shapes for a dict input,
  `{"affine": ((4, 5), {"w": (5, 3), "b": (3,)})}`; an array for an input to use as it is, e.g.
  integer labels; just `(4, 5)` for a forward with a single input), or from the command line,
  `--shape affine=4x5,5x3,3` (`--shape affine=4x5,w:5x3,b:3` for the dict form). Keyword options
  of the forward may be set with `OPTIONS = {"leaky_relu": {"slope": 0.1}}`; otherwise their
  defaults are used.
- A pair counts when both functions are defined in that file, or when SHAPES (or --shape)
  names it (so pairs imported from elsewhere can be checked too).

Inputs are standard-normal float64 numpy arrays. Each pair is checked as the built-in audit
checks jaxnets' layers (`core.check_layer`): against `jax.grad` of the forward when JAX can trace
it (jax.numpy code; n/a for numpy code) and against central differences always.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import inspect
import os
import pathlib
import re
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import jax
import numpy as np

from jaxnets.errors import JaxnetsError, UserCodeError
from jaxnets.gradcheck.core import GradCheck, argument_names, check_layer

_SALT = 0x75736572  # "user": the inputs' stream is not the one check_layer draws `dout` from

Spec = Any  # a shape tuple, a dict of shapes (a dict-of-params input), or an array used as is


# ----------------------------------------------------------------------------- the Python API
def check_pair(
    forward: Callable,
    backward: Callable,
    *inputs: Any,
    name: str | None = None,
    seed: int = 0,
    **options: Any,
) -> GradCheck:
    """Check a hand-written `forward(*inputs, **options) -> (out, cache)` and its
    `backward(dout, cache) -> (dx, *dparams)`: the returned GradCheck has the largest relative
    error against `jax.grad` (None, n/a, when JAX cannot trace the forward, as for numpy code)
    and against central differences, one entry per gradient array in `.arrays`, `.passed`,
    `.failures`, and prints as the audit's table.

    Float inputs (numpy or JAX arrays, or dicts of them) are cast to float64; integer ones
    (labels) are passed as they are. `name` labels the result (default: the forward's name less
    `_forward`); `seed` draws the upstream gradient. Runs in float64 whatever the JAX setting.
    """
    forward_name = getattr(forward, "__name__", "forward")
    name = name or forward_name.removesuffix("_forward")
    inputs = tuple(_map(_float64, x) for x in inputs)
    with jax.enable_x64(True):
        grads = _first_call(forward, backward, inputs, options)
        try:
            result = check_layer(
                name, _on_copies(forward), backward, inputs, options, seed=seed, jax_optional=True
            )
        except Exception as exc:
            raise UserCodeError(f"checking {name} failed: {_one_line(exc)}") from exc
    if grads < len(inputs):
        names = argument_names(forward, len(inputs))
        held = (
            f"{', '.join(names[grads:])} held fixed (the backward returns {grads} gradient"
            f"{'s' if grads != 1 else ''} for {len(inputs)} inputs)"
        )
        result = dataclasses.replace(result, note="; ".join(filter(None, [result.note, held])))
    return result


def _on_copies(forward: Callable) -> Callable:
    """The forward called on copies of its numpy inputs: course code that writes into its
    input (`x[x < 0] = 0`) must not change the inputs the next evaluation sees."""

    def copy(v: Any) -> Any:
        return np.array(v) if isinstance(v, np.ndarray) else v

    @functools.wraps(forward)
    def call(*args: Any, **options: Any) -> Any:
        return forward(*(_map(copy, a) for a in args), **options)

    return call


def _map(fn: Callable, x: Any) -> Any:
    # jax.tree.map would sort a dict's keys: keep the user's order for the table.
    return {k: _map(fn, v) for k, v in x.items()} if isinstance(x, dict) else fn(x)


def _float64(a: Any) -> Any:
    array = np.asarray(a)
    return array.astype(np.float64) if np.issubdtype(array.dtype, np.floating) else array


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _copies(inputs: tuple) -> tuple:
    return tuple(_map(np.array, x) for x in inputs)


def _first_call(forward: Callable, backward: Callable, inputs: tuple, options: dict) -> int:
    """Call the pair once so that an error in it reads as one line; return how many gradients
    the backward returns."""
    f_name = getattr(forward, "__name__", "forward")
    b_name = getattr(backward, "__name__", "backward")
    try:
        result = forward(*_copies(inputs), **options)
    except Exception as exc:
        raise UserCodeError(f"{f_name} raised {_one_line(exc)}") from exc
    if not (isinstance(result, tuple) and len(result) == 2):
        raise UserCodeError(f"{f_name} must return (out, cache); it returned {_kind(result)}")
    out, cache = result
    try:
        grads = backward(np.ones(np.shape(out)), cache)
    except Exception as exc:
        raise UserCodeError(f"{b_name} raised {_one_line(exc)}") from exc
    count = len(grads) if isinstance(grads, tuple) else 1
    if count > len(inputs):
        raise UserCodeError(
            f"{b_name} returns {count} gradients but {f_name} was given {len(inputs)} inputs "
            "(it returns one per positional input of the forward, in order)"
        )
    names = argument_names(forward, len(inputs))
    for i in range(count):
        leaves = jax.tree.leaves(inputs[i])
        if not all(np.issubdtype(np.asarray(v).dtype, np.floating) for v in leaves):
            raise UserCodeError(
                f"{b_name} returns a gradient for {names[i]}, which is not a float input"
            )
    return count


def _kind(value: Any) -> str:
    if isinstance(value, tuple):
        return f"a tuple of {len(value)}"
    return f"a value of type {type(value).__name__}"


# ----------------------------------------------------------------------------- shapes
def _positional_counts(forward: Callable) -> tuple[int, float]:
    """(required, most) positional inputs of a forward; most is inf with *args."""
    try:
        params = inspect.signature(forward).parameters.values()
    except (TypeError, ValueError):
        return 0, float("inf")
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = sum(p.default is p.empty for p in positional)
    most = float("inf") if any(p.kind is p.VAR_POSITIONAL for p in params) else len(positional)
    return required, most


def _shape(value: Any, where: str) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return (value,)  # `(3)` is 3 in Python: read it as the 1-D shape it was meant as
    if isinstance(value, (tuple, list)) and all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value
    ):
        return tuple(value)
    raise JaxnetsError(f"{where}: {value!r} is not a shape (a tuple of non-negative integers)")


def _is_array(value: Any) -> bool:
    return isinstance(value, (np.ndarray, jax.Array))


def validate_specs(name: str, raw: Any, forward: Callable, where: str) -> tuple:
    """The input specs for one pair, checked against its forward's positional parameters."""
    required, most = _positional_counts(forward)
    one_shape = isinstance(raw, (tuple, list)) and raw and all(isinstance(d, int) for d in raw)
    if one_shape and most == 1:
        raw = (raw,)  # a single input's shape given bare: {"relu": (4, 10)}
    if not isinstance(raw, (tuple, list)):
        raise JaxnetsError(
            f"{where} must be a tuple with one shape per input of {name}_forward, "
            "like ((4, 5), (5, 3), (3,))"
        )
    specs = []
    for i, item in enumerate(raw):
        at = f"{where}, input {i}"
        if isinstance(item, dict):
            specs.append({str(k): _shape(v, f"{at}[{k!r}]") for k, v in item.items()})
        elif _is_array(item):
            specs.append(np.asarray(item))
        else:
            specs.append(_shape(item, at))
    if not required <= len(specs) <= most:
        if most == float("inf"):
            takes, names = f"at least {required}", argument_names(forward, required)
        else:
            takes = f"{required}" if required == most else f"{required} to {int(most)}"
            names = argument_names(forward, int(most))
        raise JaxnetsError(
            f"{where} gives {len(specs)} input shape{'s' if len(specs) != 1 else ''}, but "
            f"{name}_forward takes {takes} positional input{'s' if most != 1 else ''} "
            f"({', '.join(names)})"
        )
    return tuple(specs)


def make_inputs(specs: tuple, rng: np.random.Generator) -> tuple:
    """Standard-normal float64 arrays of the given shapes (arrays in `specs` pass as they are)."""

    def make(spec: Spec) -> Any:
        if isinstance(spec, dict):
            return {k: make(v) for k, v in spec.items()}
        if _is_array(spec):
            return np.array(spec)
        return rng.standard_normal(spec)

    return tuple(make(s) for s in specs)


# ----------------------------------------------------------------------------- files and modules
def load_target(target: str) -> ModuleType:
    """Import a .py file or a dotted module name: this runs the user's code (except for its
    `if __name__ == "__main__":` block)."""
    path = pathlib.Path(target)
    if target.endswith(".py") or os.sep in target or path.is_file():
        if not path.is_file():
            raise JaxnetsError(f"{target}: no such file")
        return _import_file(path)
    return _import_module(target)


def _import_file(path: pathlib.Path) -> ModuleType:
    # A private name: the file's own (e.g. random.py) could shadow a real module.
    stem = re.sub(r"\W", "_", path.stem)
    name = f"_jaxnets_gradcheck_{stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise JaxnetsError(f"{path}: cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)  # its sibling files import as they would for the user
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise UserCodeError(f"importing {path} raised {_one_line(exc)}") from exc
    finally:
        sys.path.remove(folder)
    return module


def _import_module(target: str) -> ModuleType:
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` would: modules in the current folder
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name and (target == exc.name or target.startswith(exc.name + ".")):
            raise JaxnetsError(
                f"no module named {target!r} (nor a file of that name; a file's path ends in .py)"
            ) from None
        raise UserCodeError(f"importing {target} raised {_one_line(exc)}") from exc
    except Exception as exc:
        raise UserCodeError(f"importing {target} raised {_one_line(exc)}") from exc


@dataclasses.dataclass(frozen=True)
class Pair:
    name: str
    forward: Callable
    backward: Callable


def find_pairs(module: ModuleType, named: set[str] = frozenset()) -> list[Pair]:
    """The module's NAME_forward / NAME_backward pairs in the order they are defined: those
    defined in it, and any others it holds that `named` lists."""
    space = vars(module)
    pairs = []
    for attr, forward in space.items():
        if not attr.endswith("_forward") or not callable(forward):
            continue
        name = attr.removesuffix("_forward")
        backward = space.get(f"{name}_backward")
        if not callable(backward):
            continue
        own = all(getattr(f, "__module__", None) == module.__name__ for f in (forward, backward))
        if own or name in named:
            pairs.append(Pair(name, forward, backward))
    return pairs


def _declared(module: ModuleType, attr: str, target: str) -> dict[str, Any]:
    value = getattr(module, attr, {})
    if not isinstance(value, dict):
        raise JaxnetsError(f"{target}: {attr} must be a dict keyed by layer name")
    return value


def user_checks(
    target: str,
    shapes: list[tuple[str, tuple]] | None = None,
    only: str | None = None,
    seed: int = 0,
) -> tuple[list[Pair], Callable[[Pair], GradCheck]]:
    """The pairs `jaxnets gradcheck TARGET` checks, and the function that checks one.

    Everything a user can get wrong (the file, SHAPES, --shape) is reported here, as
    JaxnetsError, before any check runs.
    """
    module = load_target(target)
    file_shapes = _declared(module, "SHAPES", target)
    options = _declared(module, "OPTIONS", target)
    given = dict(shapes or [])
    named = set(file_shapes) | set(options) | set(given)
    pairs = find_pairs(module, named)
    found = {p.name for p in pairs}
    for source, names in (("SHAPES", file_shapes), ("OPTIONS", options), ("--shape", given)):
        unknown = sorted(set(names) - found)
        if unknown:
            raise JaxnetsError(
                f"{source} names {', '.join(map(repr, unknown))}, but {target} has no "
                + " / ".join(f"{n}_forward and {n}_backward" for n in unknown)
                + (f" (its pairs: {', '.join(sorted(found))})" if found else "")
            )
    if not pairs:
        raise JaxnetsError(
            f"{target}: no layer pairs found (the convention: NAME_forward(x, ...) -> "
            "(out, cache) with NAME_backward(dout, cache) -> (dx, ...))"
        )
    if only:
        pairs = [p for p in pairs if only.lower() in p.name.lower()]
        if not pairs:
            raise JaxnetsError(
                f"no pair in {target} matches --only {only!r} (its pairs: {', '.join(found)})"
            )
    missing = [p.name for p in pairs if p.name not in given and p.name not in file_shapes]
    if missing:
        first = missing[0]
        raise JaxnetsError(
            f"no input shapes for {', '.join(missing)}: add SHAPES = "
            f'{{"{first}": ((4, 5), ...)}} to {target} (one shape per input of '
            f"{first}_forward) or pass --shape {first}=4x5,..."
        )
    specs = {}
    for p in pairs:
        where = f"--shape {p.name}" if p.name in given else f"SHAPES[{p.name!r}]"
        raw = given.get(p.name, file_shapes.get(p.name))
        specs[p.name] = validate_specs(p.name, raw, p.forward, where)
        if not isinstance(options.get(p.name, {}), dict):
            raise JaxnetsError(f"OPTIONS[{p.name!r}] must be a dict of keyword arguments")

    def check(pair: Pair) -> GradCheck:
        inputs = make_inputs(specs[pair.name], np.random.default_rng([_SALT, seed]))
        return check_pair(
            pair.forward,
            pair.backward,
            *inputs,
            name=pair.name,
            seed=seed,
            **options.get(pair.name, {}),
        )

    return pairs, check


def run_user_checks(
    target: str,
    shapes: list[tuple[str, tuple]] | None = None,
    only: str | None = None,
    seed: int = 0,
) -> Iterator[GradCheck]:
    """Check every pair `jaxnets gradcheck TARGET` would, yielding one result per pair."""
    pairs, check = user_checks(target, shapes, only, seed)
    for pair in pairs:
        yield check(pair)
