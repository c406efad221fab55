"""One config dataclass for the image experiments, with each experiment's defaults.

`get_config(name, **overrides)` gives the defaults of "digits", "fashion-mnist", "cifar10" or
"images" (any image folder) with any field replaced; the command-line flags map one to one onto
fields.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxnets.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class ImageConfig:
    dataset: str
    model: str
    epochs: int
    batch_size: int
    optimizer: str = "adam"  # a jaxnets.optim.get_optimizer name, or "optax:<name>"
    learning_rate: float = 1e-3
    schedule: str = "cosine"  # jaxnets.training.schedules: constant, cosine, onecycle, step
    warmup_epochs: float = 0.0
    momentum: float | None = None  # passed to sgd_momentum / optax:sgd when set
    nesterov: bool = False  # optax:sgd only
    weight_decay: float = 0.0  # L2 on conv/dense kernels (decoupled for adamw)
    label_smoothing: float = 0.0
    augment: bool = False  # random crop (after zero padding) and horizontal flip
    crop_padding: int = 4  # pixels of padding for the random crop; 0: flips only
    val_fraction: float = 0.1
    limit_train: int | None = None  # use only this many training images (before the val split)
    limit_test: int | None = None
    eval_batch_size: int = 1000
    model_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    eval_checkpoint: str = "last"  # "last" or "best" (by validation accuracy) for the test
    data_dir: str | None = None
    image_size: int | None = None  # "images" only: resize every image to image_size^2
    source: str = "auto"  # auto, files, tfds
    seed: int = 0
    compute_dtype: str = "float32"  # "bfloat16": mixed precision, float32 parameters
    gradients: str = "auto"  # "manual" (hand-derived backward), "autodiff", "auto": the faster

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


DEFAULTS: dict[str, ImageConfig] = {
    # Runs anywhere: 1,437 8x8 training images, the Fashion-MNIST CNN at "same" padding.
    "digits": ImageConfig(
        dataset="digits",
        model="fashion_cnn",
        epochs=15,
        batch_size=32,
        learning_rate=2e-3,
        val_fraction=0.15,
    ),
    # The course's net and optimizer (Adam 1e-3 reached 0.919 in 10 epochs at batch 32); a
    # cosine decay over 12 epochs adds the last point of accuracy.
    "fashion-mnist": ImageConfig(
        dataset="fashion-mnist",
        model="fashion_cnn",
        epochs=12,
        batch_size=64,
        learning_rate=1e-3,
    ),
    # Page's DAWNBench ResNet-9 recipe (94% in 24 epochs on a GPU): SGD Nesterov momentum 0.9,
    # batch 512, peak lr 0.4 on a one-cycle schedule, L2 5e-4, crop + flip augmentation.
    "cifar10": ImageConfig(
        dataset="cifar10",
        model="resnet9",
        epochs=30,
        batch_size=512,
        optimizer="optax:sgd",
        learning_rate=0.4,
        schedule="onecycle",
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
        label_smoothing=0.1,
        augment=True,
    ),
    # Any image folder (train/<class>/*, test/<class>/*; `jaxnets.data.image_folder`), any
    # number of classes and any image size: a narrow ResNet-9, whose global max pool takes any
    # size of 8x8 or more, with Adam (no learning rate to tune per dataset) and crop + flip.
    "images": ImageConfig(
        dataset="images",
        model="resnet9",
        epochs=10,
        batch_size=64,
        learning_rate=1e-3,
        label_smoothing=0.1,
        augment=True,
        model_options={"width": 16},
    ),
}


def get_config(name: str, **overrides: Any) -> ImageConfig:
    if name not in DEFAULTS:
        raise ConfigError(f"no image experiment {name!r}; known: {', '.join(DEFAULTS)}")
    return dataclasses.replace(DEFAULTS[name], **overrides)
