"""What one entry of the gradient audit is."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.gradcheck.core import GradCheck, check_layer


def _rng(key: jax.Array) -> np.random.Generator:
    return np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())


def normal(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Standard-normal float64 test inputs drawn on the host.

    `jax.random.normal` would do, but in float64 it compiles anew for every shape (seconds each
    on a small CPU), which dominated the audit's running time.
    """
    return jnp.asarray(_rng(key).standard_normal(shape), jnp.float64)


def randint(key: jax.Array, shape: tuple[int, ...], low: int, high: int) -> jax.Array:
    return jnp.asarray(_rng(key).integers(low, high, shape), jnp.int32)


@dataclasses.dataclass(frozen=True)
class LayerCase:
    """A layer's forward/backward pair and a recipe for float64 inputs to check it on.

    `make_args(key)` returns the positional arguments (differentiable ones first); `config` is
    the layer's static keyword configuration.
    """

    name: str
    forward: Callable
    backward: Callable
    make_args: Callable[[jax.Array], tuple]
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    has_aux: bool = False
    numerical_threshold: float = 1e-6
    autodiff_threshold: float = 1e-8

    def run(self, seed: int = 0) -> GradCheck:
        args = self.make_args(jax.random.key(seed))
        return check_layer(
            self.name,
            self.forward,
            self.backward,
            args,
            self.config,
            has_aux=self.has_aux,
            seed=seed,
            autodiff_threshold=self.autodiff_threshold,
            numerical_threshold=self.numerical_threshold,
        )


@dataclasses.dataclass(frozen=True)
class ModelCase:
    """A whole network: `run()` returns its check against `jax.grad` and central differences."""

    name: str
    run_check: Callable[[int], GradCheck]

    def run(self, seed: int = 0) -> GradCheck:
        return self.run_check(seed)
