"""Convolutional classifiers as Flax NNX modules, on NHWC images, returning logits.

- FashionCNN: the course's Fashion-MNIST net, conv32 3x3 - relu - pool - conv64 3x3 - relu - pool -
  dense 128 - relu - dropout 0.5 - dense 10 ("same" convolutions, so 8x8 digits fit too).
- LeNet5: conv6 5x5 "same" - relu - pool - conv16 5x5 "valid" - relu - pool - fc120 - fc84 - fc10.
- ResNet9: the batch-norm residual net of Page's DAWNBench CIFAR-10 runs (94% in 24 epochs):
  prep conv - [conv, pool, residual] - [conv, pool] - [conv, pool, residual] - global max pool -
  linear, logits scaled by 1/8. `width` (64 there, 6.5M parameters) scales every layer.

Every layer is a `jaxnets.nn` module over the hand-derived functional layers, so a model trains
on the hand-derived backward (`gradients="manual"`, the default) or on autodiff's
(`jaxnets.nn.set_gradients(model, "autodiff")`). FashionCNN's and LeNet5's conv - relu - pool
blocks are the fused `Conv2dReluPool`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from flax import nnx

from jaxnets import nn
from jaxnets.models.three_layer_convnet import ThreeLayerConvNet

Array = jax.Array


class FashionCNN(nnx.Module):
    first_conv_path = "conv1"

    def __init__(
        self,
        input_shape: tuple[int, int, int] = (28, 28, 1),
        num_classes: int = 10,
        *,
        channels: tuple[int, int] = (32, 64),
        hidden_dim: int = 128,
        dropout: float = 0.5,
        rngs: nnx.Rngs,
    ):
        h, w, c = input_shape
        c1, c2 = channels
        self.conv1 = nn.Conv2dReluPool(c, c1, 3, padding="same", rngs=rngs)
        self.conv2 = nn.Conv2dReluPool(c1, c2, 3, padding="same", rngs=rngs)
        self.fc1 = nn.Linear((h // 4) * (w // 4) * c2, hidden_dim, rngs=rngs)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(dropout, rngs=rngs)
        self.fc2 = nn.Linear(hidden_dim, num_classes, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        x = self.conv2(self.conv1(x))
        x = self.relu(self.fc1(x.reshape(x.shape[0], -1)))
        return self.fc2(self.dropout(x))


class LeNet5(nnx.Module):
    first_conv_path = "conv1"

    def __init__(
        self,
        input_shape: tuple[int, int, int] = (28, 28, 1),
        num_classes: int = 10,
        *,
        rngs: nnx.Rngs,
    ):
        h, w, c = input_shape
        if min(h, w) // 2 < 5:
            raise ValueError(
                f"LeNet5 needs images of at least 10x10 (its second conv is 5x5 'valid' after a "
                f"2x2 pool), got {h}x{w}"
            )
        self.conv1 = nn.Conv2dReluPool(c, 6, 5, padding="same", rngs=rngs)
        self.conv2 = nn.Conv2dReluPool(6, 16, 5, padding="valid", rngs=rngs)
        flat = ((h // 2 - 4) // 2) * ((w // 2 - 4) // 2) * 16
        self.fc1 = nn.Linear(flat, 120, rngs=rngs)
        self.fc2 = nn.Linear(120, 84, rngs=rngs)
        self.fc3 = nn.Linear(84, num_classes, rngs=rngs)
        self.relu = nn.ReLU()

    def __call__(self, x: Array) -> Array:
        x = self.conv2(self.conv1(x))
        x = self.relu(self.fc1(x.reshape(x.shape[0], -1)))
        return self.fc3(self.relu(self.fc2(x)))


class ConvBN(nnx.Module):
    """3x3 conv (no bias: batch norm's shift replaces it) - batch norm - relu."""

    def __init__(self, c_in: int, c_out: int, *, rngs: nnx.Rngs):
        self.conv = nn.Conv2d(c_in, c_out, 3, padding="same", use_bias=False, rngs=rngs)
        # momentum 0.9 (PyTorch's 0.1): running statistics keep up within a short run.
        self.bn = nn.BatchNorm(c_out, momentum=0.9)
        self.relu = nn.ReLU()

    def __call__(self, x: Array) -> Array:
        return self.relu(self.bn(self.conv(x)))


class Residual(nnx.Module):
    def __init__(self, channels: int, *, rngs: nnx.Rngs):
        self.a = ConvBN(channels, channels, rngs=rngs)
        self.b = ConvBN(channels, channels, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        return x + self.b(self.a(x))


class ResNet9(nnx.Module):
    first_conv_path = "prep.conv"

    def __init__(
        self,
        input_shape: tuple[int, int, int] = (32, 32, 3),
        num_classes: int = 10,
        *,
        width: int = 64,
        logit_scale: float = 0.125,
        rngs: nnx.Rngs,
    ):
        c, w = input_shape[-1], width
        self.prep = ConvBN(c, w, rngs=rngs)
        self.layer1 = ConvBN(w, 2 * w, rngs=rngs)
        self.res1 = Residual(2 * w, rngs=rngs)
        self.layer2 = ConvBN(2 * w, 4 * w, rngs=rngs)
        self.layer3 = ConvBN(4 * w, 8 * w, rngs=rngs)
        self.res3 = Residual(8 * w, rngs=rngs)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(8 * w, num_classes, use_bias=False, rngs=rngs)
        self.logit_scale = logit_scale

    def __call__(self, x: Array) -> Array:
        x = self.prep(x)
        x = self.res1(self.pool(self.layer1(x)))
        x = self.pool(self.layer2(x))
        x = self.res3(self.pool(self.layer3(x)))
        return self.head(x.max(axis=(1, 2))) * self.logit_scale  # global max pool


MODELS: dict[str, Callable[..., nnx.Module]] = {
    "fashion_cnn": FashionCNN,
    "lenet5": LeNet5,
    "resnet9": ResNet9,
    "three_layer": ThreeLayerConvNet,
}


def create_model(
    name: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    rngs: nnx.Rngs,
    **options: Any,
) -> nnx.Module:
    """A model of MODELS by name; `options` go to its constructor (e.g. width=32 for resnet9)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    return MODELS[name](tuple(input_shape), num_classes=num_classes, rngs=rngs, **options)


def first_conv(model: nnx.Module) -> nn.Conv2d:
    """The conv layer that sees the input: the one at the class's `first_conv_path`, else the
    model's only `Conv2d` (attribute order is no guide: NNX rebuilds modules in sorted order)."""
    path = getattr(type(model), "first_conv_path", None)
    if path is not None:
        node = model
        for name in path.split("."):
            node = getattr(node, name)
        return node
    convs = [node for _, node in nnx.iter_graph(model) if isinstance(node, nn.Conv2d)]
    if len(convs) != 1:
        raise ValueError(
            f"{type(model).__name__} has {len(convs)} Conv2d layers; give the class a "
            "`first_conv_path` naming the first one"
        )
    return convs[0]


def first_layer_filters(model: nnx.Module) -> np.ndarray:
    """The first conv layer's HWIO kernel, for a filter grid."""
    return np.asarray(first_conv(model).kernel[...])
