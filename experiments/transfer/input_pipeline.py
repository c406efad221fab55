"""The transfer experiment's data: CIFAR-10 in train / val / test splits, normalised with
ImageNet's channel statistics (torchvision's), split into source and target classes, and
resized on the device to the size the backbone expects."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import numpy as np

from jaxnets.data.image_data import ImageData, load_image_data
from jaxnets.errors import ConfigError
from jaxnets.experiments.transfer.config import TransferConfig

# torchvision's ImageNet normalisation, in 0..255 pixel units.
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32) * 255


def resize_images(x: jax.Array, size: int) -> jax.Array:
    """Bilinear resize of NHWC images to size x size (inside jit, on the device)."""
    if x.shape[1:3] == (size, size):
        return x
    return jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), method="bilinear")


def select_classes(data: ImageData, classes: Sequence[int]) -> ImageData:
    """Only the images of `classes`, relabelled 0..len(classes)-1 in that order."""
    classes = list(classes)
    if len(set(classes)) != len(classes) or not all(0 <= c < data.num_classes for c in classes):
        raise ConfigError(f"classes must be distinct ids in [0, {data.num_classes}): {classes}")
    remap = np.full(data.num_classes, -1, np.int32)
    remap[classes] = np.arange(len(classes))
    parts = {}
    for split in ("train", "val", "test"):
        images, labels = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
        keep = np.isin(labels, classes)
        parts[f"{split}_images"], parts[f"{split}_labels"] = images[keep], remap[labels[keep]]
    names = [data.class_names[c] for c in classes]
    return dataclasses.replace(data, class_names=names, **parts)


def load_transfer_data(config: TransferConfig) -> ImageData:
    """CIFAR-10 in train / val / test splits, ImageNet-normalised."""
    data = load_image_data(
        "cifar10",
        config.data_dir,
        source=config.source,
        limit_train=config.limit_train,
        limit_test=config.limit_test,
        val_fraction=config.val_fraction,
        seed=config.seed,
    )
    return dataclasses.replace(data, mean=IMAGENET_MEAN, std=IMAGENET_STD)


def describe_classes(data: ImageData, classes: Sequence[int]) -> str:
    ids = ", ".join(map(str, classes))
    return f"classes {ids} ({', '.join(data.class_names)})"


def full_test_images(config: TransferConfig) -> np.ndarray:
    from jaxnets.data.images import load_image_dataset

    return load_image_dataset("cifar10", config.data_dir, config.source).test_images
