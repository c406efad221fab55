"""Mixed precision: `set_compute_dtype` switches the layers' compute dtype, keeps float32
parameters, leaves embedding tables in float32, and names a bad dtype."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from jaxnets.training.precision import set_compute_dtype


class Tiny(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.embed = nnx.Embed(11, 8, rngs=rngs)
        self.norm = nnx.LayerNorm(8, rngs=rngs)
        self.dense = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, ids):
        return self.dense(self.norm(self.embed(ids)))


def test_bfloat16_compute_float32_parameters_and_embeddings():
    model = set_compute_dtype(Tiny(nnx.Rngs(0)), "bfloat16")
    assert model.dense.dtype == jnp.bfloat16 and model.norm.dtype == jnp.bfloat16
    assert model.embed.dtype != jnp.bfloat16  # lookups stay in the table's float32
    ids = jnp.array([[1, 2, 3]])
    assert model.embed(ids).dtype == jnp.float32
    assert model(ids).dtype == jnp.bfloat16
    grads = nnx.grad(lambda m: m(ids).astype(jnp.float32).sum())(model)
    assert {x.dtype for x in jax.tree.leaves(grads)} == {jnp.dtype("float32")}
    assert {x.dtype for x in jax.tree.leaves(nnx.state(model, nnx.Param))} == {jnp.dtype("float32")}


def test_unknown_compute_dtype_is_named():
    with pytest.raises(ValueError, match="float16"):
        set_compute_dtype(Tiny(nnx.Rngs(0)), "float16")
