"""Flax NNX layers over the hand-derived functional layers of `jaxnets.layers`.

Each module holds its parameters and calls one functional layer: with `gradients="manual"`
(the default) through its `custom_vjp`, so training runs the hand-derived backward; with
`gradients="autodiff"` through the plain forward, which `jax.grad` differentiates. See
`jaxnets.nn.layer`. Every model of `jaxnets.models` is built from these.
"""

from jaxnets.nn.activations import GELU, LogSoftmax, ReLU, Tanh
from jaxnets.nn.attention import FeedForward, MultiHeadAttention, TransformerBlock
from jaxnets.nn.conv import AvgPool2d, Conv2d, Conv2dReluPool, MaxPool2d
from jaxnets.nn.dropout import Dropout
from jaxnets.nn.graph import BondGCNConv, GCNConv
from jaxnets.nn.layer import (
    GRADIENTS,
    Layer,
    check_gradients,
    default_gradients,
    gradients_of,
    set_gradients,
)
from jaxnets.nn.linear import TORCH_LINEAR, Embedding, Linear, torch_linear_bias
from jaxnets.nn.norm import BatchNorm, GroupNorm, LayerNorm

__all__ = [
    "GELU",
    "GRADIENTS",
    "TORCH_LINEAR",
    "AvgPool2d",
    "BatchNorm",
    "BondGCNConv",
    "Conv2d",
    "Conv2dReluPool",
    "Dropout",
    "Embedding",
    "FeedForward",
    "GCNConv",
    "GroupNorm",
    "Layer",
    "LayerNorm",
    "Linear",
    "LogSoftmax",
    "MaxPool2d",
    "MultiHeadAttention",
    "ReLU",
    "Tanh",
    "TransformerBlock",
    "check_gradients",
    "default_gradients",
    "gradients_of",
    "set_gradients",
    "torch_linear_bias",
]
