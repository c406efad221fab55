"""BatchNorm (1-D, spatial, masked), LayerNorm and GroupNorm over `jaxnets.layers`.

Parameter names follow `nnx.BatchNorm` / `nnx.LayerNorm` (scale, bias; running mean and var as
`nnx.BatchStat`), so PyTorch import maps weight, bias, running_mean and running_var onto them.
The functional layers call the same two vectors gamma and beta.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxnets.layers import graph, norm
from jaxnets.nn.layer import Layer

Array = jax.Array


class BatchNorm(Layer):
    """Batch norm with running statistics, for (N, D) features, NHWC images (per channel), or
    graph nodes with a mask (padding nodes left out of the statistics).

    Training (`use_running_average=False`, the trainer's train view) normalises with the batch
    statistics and updates running = momentum * running + (1 - momentum) * batch (flax's
    convention; PyTorch's momentum 0.1 is 0.9 here). Running statistics start at mean 0, var 1
    (PyTorch's). `frozen_stats=True` always uses and keeps the running statistics, in training
    too: a frozen backbone's features must not drift (`jaxnets.training.freeze`).
    """

    def __init__(
        self,
        num_features: int,
        *,
        momentum: float = 0.9,
        eps: float = 1e-5,
        rngs: nnx.Rngs | None = None,
    ):
        del rngs  # no random initialisation; accepted so it drops in for nnx.BatchNorm
        self.num_features, self.momentum, self.eps = num_features, momentum, eps
        self.scale = nnx.Param(jnp.ones(num_features, self.param_dtype))
        self.bias = nnx.Param(jnp.zeros(num_features, self.param_dtype))
        self.mean = nnx.BatchStat(jnp.zeros(num_features, self.param_dtype))
        self.var = nnx.BatchStat(jnp.ones(num_features, self.param_dtype))
        self.use_running_average = False
        self.frozen_stats = False

    def __call__(self, x: Array, mask: Array | None = None) -> Array:
        train = not (self.use_running_average or self.frozen_stats)
        params = self.cast({"gamma": self.scale[...], "beta": self.bias[...]})
        state = {"mean": self.mean[...], "var": self.var[...]}
        config = {"train": train, "eps": self.eps, "momentum": self.momentum}
        x = self.cast(x)
        if mask is not None:
            out, new_state = self.apply(graph.masked_batchnorm, x, params, state, mask, **config)
        elif x.ndim == 4:
            out, new_state = self.apply(norm.spatial_batchnorm, x, params, state, **config)
        else:
            out, new_state = self.apply(norm.batchnorm, x, params, state, **config)
        if train:
            # Outside the differentiated function: NNX refuses a Variable update from inside it.
            self.mean[...], self.var[...] = new_state["mean"], new_state["var"]
        return out


class LayerNorm(Layer):
    """Normalises each position over the last axis; scale and bias of that size."""

    def __init__(self, num_features: int, *, eps: float = 1e-5, rngs: nnx.Rngs | None = None):
        del rngs
        self.num_features, self.eps = num_features, eps
        self.scale = nnx.Param(jnp.ones(num_features, self.param_dtype))
        self.bias = nnx.Param(jnp.zeros(num_features, self.param_dtype))

    def layer_params(self) -> dict[str, Array]:
        return {"gamma": self.scale[...], "beta": self.bias[...]}

    def __call__(self, x: Array) -> Array:
        x, params = self.cast((x, self.layer_params()))
        return self.apply(norm.layernorm, x, params, eps=self.eps)


class GroupNorm(Layer):
    """Group norm of NHWC x: statistics per sample over (H, W) and each group of channels."""

    def __init__(
        self, num_groups: int, num_features: int, *, eps: float = 1e-5, rngs: nnx.Rngs | None = None
    ):
        del rngs
        self.num_groups, self.num_features, self.eps = num_groups, num_features, eps
        self.scale = nnx.Param(jnp.ones(num_features, self.param_dtype))
        self.bias = nnx.Param(jnp.zeros(num_features, self.param_dtype))

    def __call__(self, x: Array) -> Array:
        x, params = self.cast((x, {"gamma": self.scale[...], "beta": self.bias[...]}))
        return self.apply(norm.groupnorm, x, params, groups=self.num_groups, eps=self.eps)
