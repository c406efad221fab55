"""Figures the experiments write: learning curves, image grids, confusion matrices."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: runs happen on headless machines and in CI
import matplotlib.pyplot as plt
import numpy as np


def plot_curves(
    records: Sequence[dict[str, Any]],
    path: str | os.PathLike,
    *,
    panels: dict[str, Sequence[str]] | None = None,
    x: str = "epoch",
    title: str | None = None,
) -> None:
    """One panel per metric family (default: loss and accuracy), one line per series."""
    panels = panels or {
        "loss": ["train_loss", "val_loss"],
        "accuracy": ["train_accuracy", "val_accuracy"],
    }
    panels = {k: [s for s in v if any(s in r for r in records)] for k, v in panels.items()}
    panels = {k: v for k, v in panels.items() if v}
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(5 * max(len(panels), 1), 3.6))
    axes = np.atleast_1d(axes)
    for ax, (ylabel, series) in zip(axes, panels.items()):
        for name in series:
            points = [(r[x], r[name]) for r in records if name in r and x in r]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, label=name)
        ax.set_xlabel(x)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7 if len(series) > 6 else None)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_confusion_matrix(
    matrix: np.ndarray, class_names: Sequence[str], path: str | os.PathLike, *, title: str = ""
) -> None:
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * n, 0.8 + 0.5 * n))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(n):
        for j in range(n):
            color = "white" if matrix[i, j] > threshold else "black"
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color=color, fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def filter_grid(filters: np.ndarray, padding: int = 1) -> np.ndarray:
    """HWIO filters -> one uint8 image, each filter min-max scaled to [0, 255] with padding
    between them (the course's visualize_grid)."""
    kh, kw, cin, cout = filters.shape
    tiles = np.transpose(filters, (3, 0, 1, 2))  # (cout, kh, kw, cin)
    cols = int(np.ceil(np.sqrt(cout)))
    rows = int(np.ceil(cout / cols))
    grid = np.zeros((rows * (kh + padding) + padding, cols * (kw + padding) + padding, cin))
    for idx, tile in enumerate(tiles):
        lo, hi = tile.min(), tile.max()
        scaled = 255.0 * (tile - lo) / (hi - lo) if hi > lo else np.zeros_like(tile)
        r, c = divmod(idx, cols)
        y0, x0 = padding + r * (kh + padding), padding + c * (kw + padding)
        grid[y0 : y0 + kh, x0 : x0 + kw] = scaled
    grid = grid.astype(np.uint8)
    return grid[..., 0] if cin == 1 else grid


def save_filter_grid(filters: np.ndarray, path: str | os.PathLike, *, title: str = "") -> None:
    grid = filter_grid(np.asarray(filters))
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_prediction_grid(
    images: np.ndarray,
    true_labels: Sequence[int],
    predicted: Sequence[int],
    class_names: Sequence[str],
    path: str | os.PathLike,
    *,
    columns: int = 8,
) -> None:
    """Sample images with 'true / predicted' captions, mistakes in red. Images are NHWC uint8
    or floats in [0, 1]."""
    n = len(images)
    rows = int(np.ceil(n / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.9 * rows))
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, img, t, p in zip(np.ravel(axes), images, true_labels, predicted):
        img = np.asarray(img)
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray")
        ax.set_title(
            f"{class_names[t]}\n{class_names[p]}", fontsize=7, color="black" if t == p else "red"
        )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
