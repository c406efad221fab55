"""Linear and Embedding over `jaxnets.layers.core.affine` and `jaxnets.layers.attention.embedding`.

Parameter names follow `nnx.Linear` / `nnx.Embed` (kernel (in, out), bias; embedding (V, E)),
so PyTorch / Hugging Face import and parameter paths are those of the NNX layers they replace.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxnets.layers import attention, core
from jaxnets.nn.layer import Layer

Array = jax.Array
Initializer = Any

LECUN_NORMAL = nnx.initializers.lecun_normal()  # nnx.Linear's and nnx.Conv's default
ZEROS = nnx.initializers.zeros_init()
NORMAL = nnx.initializers.normal(1.0)  # torch's nn.Embedding
# torch's nn.Linear weight, U(+-1/sqrt(fan_in)): variance 1/(3 fan_in).
TORCH_LINEAR = nnx.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


def torch_linear_bias(fan_in: int) -> Initializer:
    """torch's nn.Linear bias, U(+-1/sqrt(fan_in)) of the kernel's fan-in (which a bias
    initialiser is not given, hence the argument)."""
    bound = 1 / fan_in**0.5

    def init(key: Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class Linear(Layer):
    """y = x @ kernel + bias over the last axis of x (..., in_features)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        use_bias: bool = True,
        kernel_init: Initializer = LECUN_NORMAL,
        bias_init: Initializer = ZEROS,
        rngs: nnx.Rngs,
    ):
        self.in_features, self.out_features = in_features, out_features
        shape = (in_features, out_features)
        self.init_kernel_and_bias(shape, use_bias, kernel_init, bias_init, rngs)

    def __call__(self, x: Array) -> Array:
        x, params = self.cast((x, self.layer_params()))
        rows = x.reshape(-1, x.shape[-1])  # affine takes (N, D): every leading index is a row
        out = self.apply(core.affine, rows, params)
        return out.reshape(*x.shape[:-1], self.out_features)


class Embedding(Layer):
    """Rows of `embedding` (V, E) picked by integer ids. Lookups stay in the table's dtype
    (`set_compute_dtype` leaves embeddings alone: a lookup does no arithmetic)."""

    def __init__(
        self,
        num_embeddings: int,
        features: int,
        *,
        embedding_init: Initializer = NORMAL,
        rngs: nnx.Rngs,
    ):
        self.num_embeddings, self.features = num_embeddings, features
        shape = (num_embeddings, features)
        self.embedding = nnx.Param(embedding_init(rngs.params(), shape, self.param_dtype))

    def __call__(self, ids: Array) -> Array:
        return self.apply(attention.embedding, {"table": self.embedding[...]}, ids)
