"""Image datasets (uint8 NHWC, from local files or prepared TFDS) and the host-side pipeline."""

from jaxnets.data.images import (
    DATASETS,
    DatasetFormatError,
    DatasetNotFoundError,
    ImageSplits,
    load_image_dataset,
    read_idx,
)
from jaxnets.data.pipeline import (
    channel_stats,
    crop_flip,
    epoch_permutation,
    iterate_batches,
    normalize,
    num_batches,
    pad_batch,
    prefetch_to_device,
    random_crop_flip,
    train_val_split,
)

__all__ = [
    "DATASETS",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "ImageSplits",
    "channel_stats",
    "crop_flip",
    "epoch_permutation",
    "iterate_batches",
    "load_image_dataset",
    "normalize",
    "num_batches",
    "pad_batch",
    "prefetch_to_device",
    "random_crop_flip",
    "read_idx",
    "train_val_split",
]
