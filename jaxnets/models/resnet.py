"""ResNet-18/34/50/101/152 as torchvision builds them, in Flax NNX on NHWC images.

The module tree mirrors `torchvision.models.resnet`: conv1, bn1, layer1..layer4 (lists of
BasicBlock or Bottleneck, each with conv1, bn1, conv2, bn2[, conv3, bn3] and an optional
`downsample` list [1x1 conv, batch norm]) and fc. So `layer2.0.downsample.1.running_var` of a
PyTorch state_dict lives at `layer2/0/downsample/1/var` here, and
`jaxnets.models.torch_import` maps one onto the other by name alone. Bottleneck is torchvision's
"v1.5": the stride sits on the 3x3 conv.

Parameter counts equal torchvision's: resnet18 11,689,512 and resnet50 25,557,032 (1000 classes).
Every layer is a `jaxnets.nn` module. Batch norm keeps running statistics (`nnx.BatchStat`),
PyTorch's eps 1e-5 and momentum 0.1 (flax's 0.9). One difference in training only: PyTorch feeds
the unbiased batch variance into the running variance, jaxnets the biased one (a factor n/(n-1),
n = N*H*W per channel).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

from jaxnets import nn

Array = jax.Array

# torchvision initialises convs with kaiming_normal_(mode="fan_out", nonlinearity="relu").
_KAIMING_FAN_OUT = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


# PyTorch's nn.BatchNorm2d defaults (eps 1e-5, its momentum 0.1 = flax's 0.9) are
# jaxnets.nn.BatchNorm's; `frozen_stats` keeps a frozen backbone's statistics fixed.
BatchNorm2d = nn.BatchNorm


def _conv(c_in: int, c_out: int, kernel: int, stride: int, rngs: nnx.Rngs) -> nn.Conv2d:
    return nn.Conv2d(
        c_in,
        c_out,
        kernel,
        stride=stride,
        padding=kernel // 2,
        use_bias=False,
        kernel_init=_KAIMING_FAN_OUT,
        rngs=rngs,
    )


def _downsample(c_in: int, c_out: int, stride: int, rngs: nnx.Rngs) -> nnx.List | None:
    """torchvision's shortcut projection [conv1x1, bn] when the shape changes, else None."""
    if stride == 1 and c_in == c_out:
        return None
    return nnx.List([_conv(c_in, c_out, 1, stride, rngs), BatchNorm2d(c_out)])


class BasicBlock(nnx.Module):
    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1, *, rngs: nnx.Rngs):
        self.conv1 = _conv(c_in, planes, 3, stride, rngs)
        self.bn1 = BatchNorm2d(planes)
        self.conv2 = _conv(planes, planes, 3, 1, rngs)
        self.bn2 = BatchNorm2d(planes)
        self.downsample = _downsample(c_in, planes, stride, rngs)
        self.relu = nn.ReLU()

    def __call__(self, x: Array) -> Array:
        identity = x if self.downsample is None else self.downsample[1](self.downsample[0](x))
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nnx.Module):
    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1, *, rngs: nnx.Rngs):
        c_out = planes * self.expansion
        self.conv1 = _conv(c_in, planes, 1, 1, rngs)
        self.bn1 = BatchNorm2d(planes)
        self.conv2 = _conv(planes, planes, 3, stride, rngs)  # v1.5: stride on the 3x3 conv
        self.bn2 = BatchNorm2d(planes)
        self.conv3 = _conv(planes, c_out, 1, 1, rngs)
        self.bn3 = BatchNorm2d(c_out)
        self.downsample = _downsample(c_in, c_out, stride, rngs)
        self.relu = nn.ReLU()

    def __call__(self, x: Array) -> Array:
        identity = x if self.downsample is None else self.downsample[1](self.downsample[0](x))
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}
DEPTHS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}


class ResNet(nnx.Module):
    """torchvision's ResNet: 7x7/2 conv - bn - relu - 3x3/2 max pool - layer1..4 - global average
    pool - fc. `block` is "basic" or "bottleneck", `layers` the blocks per stage.

    Inputs of 32x32 pixels and up work (the last stage is then 1x1).
    """

    head_path = "fc"  # what transfer learning replaces and trains when frozen

    def __init__(
        self,
        block: str,
        layers: Sequence[int],
        num_classes: int = 1000,
        *,
        in_channels: int = 3,
        rngs: nnx.Rngs,
    ):
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {sorted(BLOCKS)}, got {block!r}")
        if len(layers) != 4:
            raise ValueError(f"layers must give the blocks of 4 stages, got {tuple(layers)}")
        cls = BLOCKS[block]
        self.conv1 = nn.Conv2d(
            in_channels,
            64,
            7,
            stride=2,
            padding=3,
            use_bias=False,
            kernel_init=_KAIMING_FAN_OUT,
            rngs=rngs,
        )
        self.bn1 = BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        c_in = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers), start=1):
            blocks = []
            for j in range(n):
                stride = 2 if (j == 0 and i > 1) else 1
                blocks.append(cls(c_in, planes, stride, rngs=rngs))
                c_in = planes * cls.expansion
            setattr(self, f"layer{i}", nnx.List(blocks))
        self.fc = nn.Linear(c_in, num_classes, rngs=rngs)

    @property
    def num_features(self) -> int:
        return self.fc.in_features

    def features(self, x: Array) -> Array:
        """(N, H, W, C) images -> (N, num_features) pooled features (everything but fc)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in stage:
                x = block(x)
        return x.mean(axis=(1, 2))  # AdaptiveAvgPool2d((1, 1)) + flatten

    def __call__(self, x: Array) -> Array:
        return self.fc(self.features(x))


def resnet(name: str, num_classes: int = 1000, *, rngs: nnx.Rngs, **options) -> ResNet:
    """torchvision's `name` ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")."""
    if name not in DEPTHS:
        raise ValueError(f"unknown ResNet {name!r}; known: {', '.join(DEPTHS)}")
    block, layers = DEPTHS[name]
    return ResNet(block, layers, num_classes, rngs=rngs, **options)


def resnet18(num_classes: int = 1000, *, rngs: nnx.Rngs, **options) -> ResNet:
    return resnet("resnet18", num_classes, rngs=rngs, **options)


def resnet50(num_classes: int = 1000, *, rngs: nnx.Rngs, **options) -> ResNet:
    return resnet("resnet50", num_classes, rngs=rngs, **options)
