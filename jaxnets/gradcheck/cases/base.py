"""What one entry of the gradient audit is."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

from jaxnets.gradcheck.core import GradCheck, check_layer


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
