"""Image data for the images experiments: the config's dataset in train / val / test splits
(`jaxnets.data.image_data`)."""

from __future__ import annotations

from jaxnets.data.image_data import ImageData, load_image_data
from jaxnets.experiments.images.config import ImageConfig

__all__ = ["ImageData", "load_data"]


def load_data(config: ImageConfig) -> ImageData:
    """Load `config.dataset` (raises jaxnets.data.images.DatasetNotFoundError when absent)."""
    return load_image_data(
        config.dataset,
        config.data_dir,
        source=config.source,
        image_size=config.image_size,
        limit_train=config.limit_train,
        limit_test=config.limit_test,
        val_fraction=config.val_fraction,
        seed=config.seed,
    )
