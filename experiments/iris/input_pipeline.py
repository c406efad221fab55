"""Iris from scikit-learn: stratified train/val/test split, standardised on the train split."""

from __future__ import annotations

import dataclasses

import numpy as np
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split


@dataclasses.dataclass(frozen=True)
class IrisSplits:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]


def load_splits(val_fraction: float, test_fraction: float, seed: int) -> IrisSplits:
    iris = load_iris()
    x, y = iris.data.astype(np.float32), iris.target.astype(np.int32)
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=seed
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest,
        y_rest,
        test_size=val_fraction / (1 - test_fraction),
        stratify=y_rest,
        random_state=seed,
    )
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    scale = lambda a: (a - mean) / std  # noqa: E731
    return IrisSplits(
        scale(x_train),
        y_train,
        scale(x_val),
        y_val,
        scale(x_test),
        y_test,
        tuple(iris.target_names),
    )
