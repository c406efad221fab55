"""What every jaxnets NNX layer shares: who computes its backward, and its compute dtype.

A module of `jaxnets.nn` holds its parameters as `nnx.Param`s and, when called, hands them as
plain arrays to one functional layer of `jaxnets.layers` (a forward returning `(out, cache)`
and a hand-derived backward, bound by `manual_vjp`). Its `gradients` attribute picks which of
the two functions runs:

- "manual": the `custom_vjp` form, so `jax.grad` / `nnx.grad` run the hand-derived backward;
- "autodiff": the plain forward (`forward(...)[0]`), which `jax.grad` differentiates by itself.
  Convolutions then also use XLA's kernels only (`impl="xla"`): the native CPU kernels are
  opaque to autodiff and carry their own hand-derived VJP.

Both modes share one forward and one parameter layout, so a model can switch mode at any time
(`set_gradients(model, "autodiff")`, or `nnx.view(model, gradients=...)`); only the backward
differs. State updates (batch norm's running statistics) come back as outputs of the functional
forward and are assigned to the module's variables after the call, outside the differentiated
function, as NNX requires.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxnets.flags import GRADIENTS

# The faster mode per backend, measured with `jaxnets bench train` (benchmarks/README.md). CPU:
# the hand-derived backward runs the native conv kernels, autodiff XLA's. GPUs and TPUs run
# XLA's kernels either way and have not been measured yet: autodiff, XLA's own path.
FASTER_GRADIENTS = {"cpu": "manual"}


def check_gradients(gradients: str) -> str:
    if gradients not in GRADIENTS:
        raise ValueError(f"unknown gradients {gradients!r}; use one of {list(GRADIENTS)}")
    return gradients


def default_gradients(gradients: str | None = "auto") -> str:
    """`gradients`, or for "auto" / None the faster mode on JAX's default backend."""
    if gradients in (None, "auto"):
        return FASTER_GRADIENTS.get(jax.default_backend(), "autodiff")
    return check_gradients(gradients)


class Layer(nnx.Module):
    """Base of the jaxnets layers: `gradients`, `dtype` (compute) and `param_dtype`."""

    gradients: str = "manual"
    dtype: Any = None  # None: compute in the inputs' and parameters' own dtype
    param_dtype: Any = jnp.float32

    def set_view(
        self,
        gradients: str | None = None,
        deterministic: bool | None = None,
        use_running_average: bool | None = None,
    ) -> None:
        """For `nnx.view(model, gradients=..., deterministic=..., use_running_average=...)`:
        each is set on the layers that have it (dropout, batch norm)."""
        if gradients is not None:
            self.gradients = check_gradients(gradients)
        if deterministic is not None and hasattr(self, "deterministic"):
            self.deterministic = deterministic
        if use_running_average is not None and hasattr(self, "use_running_average"):
            self.use_running_average = use_running_average

    def init_kernel_and_bias(
        self,
        shape: tuple[int, ...],
        use_bias: bool,
        kernel_init: Callable,
        bias_init: Callable,
        rngs: nnx.Rngs,
    ) -> None:
        """`kernel` of `shape` and, with `use_bias`, `bias` of its last dimension."""
        self.kernel = nnx.Param(kernel_init(rngs.params(), shape, self.param_dtype))
        self.bias = (
            nnx.Param(bias_init(rngs.params(), shape[-1:], self.param_dtype))
            if use_bias
            else nnx.data(None)
        )

    def layer_params(self) -> dict[str, Any]:
        """The functional layer's {"w", "b"} (a zero bias when the layer has none)."""
        w = self.kernel[...]
        b = self.bias[...] if self.bias is not None else jnp.zeros(w.shape[-1], w.dtype)
        return {"w": w, "b": b}

    def apply(self, layer: Callable, *args: Any, **config: Any) -> Any:
        """`layer(*args, **config)` with the backward this module's `gradients` asks for."""
        if self.gradients == "manual":
            return layer(*args, **config)
        return layer.forward(*args, **config)[0]

    def cast(self, tree: Any) -> Any:
        """Floating arrays of `tree` in the compute dtype (unchanged when it is None)."""
        if self.dtype is None:
            return tree
        dtype = self.dtype

        def cast(a: Any) -> Any:
            return a.astype(dtype) if jnp.issubdtype(jnp.result_type(a), jnp.floating) else a

        return jax.tree.map(cast, tree)


def set_gradients(model: nnx.Module, gradients: str) -> nnx.Module:
    """Set who computes the backward of every jaxnets layer of `model`, in place; returns it."""
    check_gradients(gradients)
    for _, node in nnx.iter_graph(model):
        if isinstance(node, Layer):
            node.gradients = gradients
    return model


def gradients_of(model: nnx.Module) -> str | None:
    """The mode of `model`'s jaxnets layers: "manual", "autodiff", "mixed", or None if it has
    no jaxnets layer."""
    modes = {node.gradients for _, node in nnx.iter_graph(model) if isinstance(node, Layer)}
    if not modes:
        return None
    return modes.pop() if len(modes) == 1 else "mixed"
