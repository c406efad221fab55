"""Splits of an image dataset ready for training: uint8 NHWC train / val / test arrays (optionally
stratified subsets), the training split's per-channel statistics, and their batches."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator

import numpy as np

from jaxnets.data.images import load_image_dataset
from jaxnets.data.pipeline import (
    Batch,
    channel_stats,
    iterate_batches,
    num_batches,
    prefetch_to_device,
    random_crop_flip,
    stratified_split_indices,
    train_val_split,
)
from jaxnets.errors import ConfigError


@dataclasses.dataclass
class ImageData:
    """uint8 NHWC splits with the training split's per-channel statistics."""

    name: str
    source: str
    class_names: list[str]
    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def describe(self) -> str:
        h, w, c = self.image_shape
        return (
            f"{self.name}: {len(self.train_images)} train / {len(self.val_images)} val / "
            f"{len(self.test_images)} test images {h}x{w}x{c}, {self.num_classes} classes"
        )

    def steps_per_epoch(self, batch_size: int) -> int:
        return num_batches(len(self.train_images), batch_size, drop_remainder=True)

    def train_batches(
        self, batch_size: int, *, seed: int, epoch: int, augment: bool, crop_padding: int = 4
    ) -> Iterator[Batch]:
        """Shuffled full batches of one epoch, a function of (seed, epoch) only, prefetched.

        augment: random crops after `crop_padding` pixels of zero padding, and horizontal flips.
        """
        batches = iterate_batches(
            self.train_images,
            self.train_labels,
            batch_size,
            shuffle=True,
            seed=seed,
            epoch=epoch,
            drop_remainder=True,
            augment=functools.partial(random_crop_flip, pad=crop_padding) if augment else None,
            mean=self.mean,
            std=self.std,
        )
        return prefetch_to_device(batches)

    def eval_batch_size(self, batch_size: int) -> int:
        """`batch_size`, or less when both splits are smaller: one size for val and test, so
        the jitted eval step compiles once."""
        return max(1, min(batch_size, max(len(self.val_images), len(self.test_images))))

    def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        """Every image of "val" or "test" in order; the last batch padded and masked."""
        images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
        batches = iterate_batches(
            images,
            labels,
            self.eval_batch_size(batch_size),
            shuffle=False,
            drop_remainder=False,
            mean=self.mean,
            std=self.std,
        )
        return prefetch_to_device(batches)

    def normalized(self, images: np.ndarray) -> np.ndarray:
        return (images.astype(np.float32) - self.mean) / self.std


def _subset(images: np.ndarray, labels: np.ndarray, limit: int | None, seed: int):
    """A stratified subset of `limit` examples (all of them when limit is None or larger)."""
    if limit is None or limit >= len(labels):
        return images, labels
    if limit <= 0:
        raise ConfigError(f"limit must be positive, got {limit}")
    # The complement of a stratified "validation" part of size N - limit keeps class balance.
    keep, _ = stratified_split_indices(labels, 1 - limit / len(labels), seed)
    return images[keep], labels[keep]


def load_image_data(
    dataset: str,
    data_dir: str | None,
    *,
    source: str = "auto",
    image_size: int | None = None,
    limit_train: int | None = None,
    limit_test: int | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> ImageData:
    """`dataset` (a `jaxnets.data.images` name) in train / val / test splits: stratified subsets
    of `limit_*` images, and `val_fraction` of the training images held out, drawn from `seed`.
    Raises jaxnets.data.images.DatasetNotFoundError when the data is absent."""
    # image_size only when set: the other datasets' readers refuse it.
    resize = {} if image_size is None else {"image_size": image_size}
    splits = load_image_dataset(dataset, data_dir, source, **resize)
    train_x, train_y = _subset(splits.train_images, splits.train_labels, limit_train, seed)
    test_x, test_y = _subset(splits.test_images, splits.test_labels, limit_test, seed)
    train_x, train_y, val_x, val_y = train_val_split(train_x, train_y, val_fraction, seed)
    mean, std = channel_stats(train_x)
    return ImageData(
        name=splits.name,
        source=splits.source,
        class_names=list(splits.class_names),
        train_images=train_x,
        train_labels=train_y,
        val_images=val_x,
        val_labels=val_y,
        test_images=test_x,
        test_labels=test_y,
        mean=mean,
        std=np.maximum(std, 1e-3),  # a constant channel must not divide by zero
    )
