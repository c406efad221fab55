"""Conv2d (plain, and fused with relu and a 2x2 max pool) and the pools, over `jaxnets.layers`.

NHWC images and HWIO kernels, as `nnx.Conv`; padding is the functional layer's: "same"
((k-1)//2 on every side), "valid", an int or (ph, pw), always symmetric as PyTorch's.
"""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx

from jaxnets.layers import conv, pool
from jaxnets.nn.layer import Layer
from jaxnets.nn.linear import LECUN_NORMAL, ZEROS

Array = jax.Array
Initializer = Any


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


class Conv2d(Layer):
    """Cross-correlation of NHWC x with an HWIO `kernel`, plus `bias`.

    impl: the functional layer's kernel choice ("auto": native CPU kernels where they apply,
    XLA's elsewhere; see `jaxnets.layers.conv.default_impl`). With gradients="autodiff" "auto"
    becomes "xla", so autodiff differentiates XLA's own ops.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | tuple[int, int],
        *,
        stride: int | tuple[int, int] = 1,
        padding: str | int | tuple[int, int] = "same",
        use_bias: bool = True,
        kernel_init: Initializer = LECUN_NORMAL,
        bias_init: Initializer = ZEROS,
        impl: str = "auto",
        rngs: nnx.Rngs,
    ):
        self.in_features, self.out_features = in_features, out_features
        self.kernel_size, self.stride, self.padding = _pair(kernel_size), stride, padding
        self.impl = impl
        shape = (*self.kernel_size, in_features, out_features)
        self.init_kernel_and_bias(shape, use_bias, kernel_init, bias_init, rngs)

    def _config(self) -> dict[str, Any]:
        impl = "xla" if self.gradients == "autodiff" and self.impl == "auto" else self.impl
        return {"stride": self.stride, "padding": self.padding, "impl": impl}

    def __call__(self, x: Array) -> Array:
        x, params = self.cast((x, self.layer_params()))
        return self.apply(conv.conv2d, x, params, **self._config())


class Conv2dReluPool(Conv2d):
    """max_pool(relu(conv(x)), pool, pool), fused (course B's sandwich): on the native CPU
    kernel the pool is done in registers and the conv output is never stored."""

    def __init__(self, *args: Any, pool: int = 2, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.pool = pool

    def __call__(self, x: Array) -> Array:
        x, params = self.cast((x, self.layer_params()))
        return self.apply(conv.conv2d_relu_pool, x, params, pool=self.pool, **self._config())


class _Pool(Layer):
    layer: Any = None  # the functional pool

    def __init__(self, window: int, stride: int | None = None, padding: int = 0):
        self.window, self.stride, self.padding = window, stride or window, padding

    def __call__(self, x: Array) -> Array:
        config = {"window": self.window, "stride": self.stride, "padding": self.padding}
        return self.apply(type(self).layer, x, **config)


class MaxPool2d(_Pool):
    """PyTorch's `nn.MaxPool2d(window, stride, padding)`: floor mode, -inf padding."""

    layer = pool.max_pool


class AvgPool2d(_Pool):
    """PyTorch's `nn.AvgPool2d(window, stride, padding)` (zero padding counted)."""

    layer = pool.avg_pool
