"""Stateless activation layers over `jaxnets.layers.core`, so their backward follows the
model's `gradients` mode too (and a layer list can hold them at PyTorch's indices)."""

from __future__ import annotations

import jax

from jaxnets.layers import core, losses
from jaxnets.nn.layer import Layer

Array = jax.Array


class ReLU(Layer):
    def __call__(self, x: Array) -> Array:
        return self.apply(core.relu, x)


class GELU(Layer):
    def __init__(self, approximate: bool = False):
        self.approximate = approximate

    def __call__(self, x: Array) -> Array:
        return self.apply(core.gelu, x, approximate=self.approximate)


class Tanh(Layer):
    def __call__(self, x: Array) -> Array:
        return self.apply(core.tanh, x)


class LogSoftmax(Layer):
    """log softmax over the last axis (log-probabilities for an NLL loss)."""

    def __call__(self, x: Array) -> Array:
        return self.apply(losses.log_softmax, x)
