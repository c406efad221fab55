"""Input checks that turn bad shapes and dtypes into errors naming the problem.

They run on static shapes and dtypes, so they cost nothing under `jit` and fire at trace time,
before XLA ever sees the mistake.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp


def check_float(layer: str, name: str, x: Any) -> None:
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{layer}: {name} must be a floating-point array, got dtype {dtype}")


def check_int(layer: str, name: str, x: Any) -> None:
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(f"{layer}: {name} must hold integer class indices, got dtype {dtype}")


def check_ndim(
    layer: str, name: str, x: Any, ndim: int | tuple[int, ...], meaning: str = ""
) -> None:
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if jnp.ndim(x) not in allowed:
        want = " or ".join(f"{n}-D" for n in allowed)
        hint = f" {meaning}" if meaning else ""
        raise ValueError(f"{layer}: {name} must be {want}{hint}, got shape {jnp.shape(x)}")


def check_shape(layer: str, name: str, x: Any, shape: tuple[int | None, ...]) -> None:
    actual = jnp.shape(x)
    ok = len(actual) == len(shape) and all(s is None or s == a for s, a in zip(shape, actual))
    if not ok:
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{layer}: {name} must have shape {want}, got {actual}")


def check_choice(layer: str, name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{layer}: {name} must be one of {choices}, got {value!r}")
