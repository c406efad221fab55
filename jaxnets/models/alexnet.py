"""AlexNet as torchvision builds it, in Flax NNX on NHWC images, with torchvision's parameter names.

The module tree mirrors `torchvision.models.alexnet`: `features` and `classifier` are lists whose
indices are those of torchvision's `nn.Sequential`s (features.0 conv, 1 relu, 2 max pool, 3 conv,
...; classifier.0 dropout, 1 linear, ...), so the parameter `features.3.weight` of a PyTorch
state_dict lives at `features/3/kernel` here and `jaxnets.models.torch_import` maps one onto the
other by name alone.

Parameter counts (torchvision's numbers): features 2,469,696; the ImageNet classifier
9216-4096-4096-1000 58,631,144 (61,100,840 in all); the course's transfer head 9216-4096-1024-10
41,958,410 (44,428,106 in all): `AlexNet(10, hidden=(4096, 1024))`.

Every layer is a `jaxnets.nn` module (hand-derived backward by default, autodiff's with
`jaxnets.nn.set_gradients`). Every conv pads explicitly and symmetrically, as PyTorch's
`nn.Conv2d(c_in, c_out, kernel, stride, padding)` does (XLA's "SAME" would pad stride-2 layers
less on top).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxnets import nn

Array = jax.Array


# ----------------------------------------------------------------------------- building blocks
def _pool_matrix(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) averaging matrix of PyTorch's adaptive pooling: output i averages
    inputs floor(i * n / m) .. ceil((i + 1) * n / m) - 1 (windows may overlap)."""
    m = np.zeros((size_out, size_in), np.float32)
    for i in range(size_out):
        start = (i * size_in) // size_out
        end = -((-(i + 1) * size_in) // size_out)
        m[i, start:end] = 1.0 / (end - start)
    return m


def adaptive_avg_pool(x: Array, output_size: int | tuple[int, int]) -> Array:
    """PyTorch's `nn.AdaptiveAvgPool2d(output_size)` on NHWC `x`.

    Separable: one averaging matrix per spatial axis, applied with an einsum. An input already of
    the output size (AlexNet at 224x224 pixels) passes through unchanged.
    """
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else output_size
    _, h, w, _ = x.shape
    if (h, w) == (oh, ow):
        return x
    ph = jnp.asarray(_pool_matrix(h, oh), x.dtype)
    pw = jnp.asarray(_pool_matrix(w, ow), x.dtype)
    return jnp.einsum("ih,nhwc,jw->nijc", ph, x, pw)


def flatten_chw(x: Array) -> Array:
    """NHWC -> (N, C*H*W) in PyTorch's NCHW order, so imported Linear weights apply unchanged."""
    return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)


# ----------------------------------------------------------------------------- AlexNet
class AlexNet(nnx.Module):
    """torchvision's AlexNet (the "one weird trick" variant: 64-192-384-256-256 channels).

    num_classes, hidden: the classifier is dropout - linear(9216, hidden[0]) - relu - dropout -
        linear(hidden[0], hidden[1]) - relu - linear(hidden[1], num_classes), torchvision's with
        hidden=(4096, 4096); the course's CIFAR-10 head is hidden=(4096, 1024), num_classes=10.
    Any input of at least 63x63 pixels works: the adaptive average pool makes the feature map 6x6.
    """

    head_path = "classifier"  # what transfer learning replaces and trains when frozen

    def __init__(
        self,
        num_classes: int = 1000,
        *,
        hidden: tuple[int, int] = (4096, 4096),
        dropout: float = 0.5,
        in_channels: int = 3,
        rngs: nnx.Rngs,
    ):
        self.features = nnx.List(
            [
                nn.Conv2d(in_channels, 64, 11, stride=4, padding=2, rngs=rngs),
                nn.ReLU(),
                nn.MaxPool2d(3, 2),
                nn.Conv2d(64, 192, 5, padding=2, rngs=rngs),
                nn.ReLU(),
                nn.MaxPool2d(3, 2),
                nn.Conv2d(192, 384, 3, padding=1, rngs=rngs),
                nn.ReLU(),
                nn.Conv2d(384, 256, 3, padding=1, rngs=rngs),
                nn.ReLU(),
                nn.Conv2d(256, 256, 3, padding=1, rngs=rngs),
                nn.ReLU(),
                nn.MaxPool2d(3, 2),
            ]
        )
        self.classifier = alexnet_classifier(num_classes, hidden=hidden, dropout=dropout, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        for layer in self.features:
            x = layer(x)
        x = flatten_chw(adaptive_avg_pool(x, 6))
        for layer in self.classifier:
            x = layer(x)
        return x


def alexnet_classifier(
    num_classes: int,
    *,
    hidden: tuple[int, int] = (4096, 4096),
    dropout: float = 0.5,
    rngs: nnx.Rngs,
) -> nnx.List:
    """torchvision's classifier list (indices 0..6) on the 256*6*6 = 9216 pooled features."""
    h1, h2 = hidden
    return nnx.List(
        [
            nn.Dropout(dropout, rngs=rngs),
            nn.Linear(256 * 6 * 6, h1, rngs=rngs),
            nn.ReLU(),
            nn.Dropout(dropout, rngs=rngs),
            nn.Linear(h1, h2, rngs=rngs),
            nn.ReLU(),
            nn.Linear(h2, num_classes, rngs=rngs),
        ]
    )
