"""The attention-map heatmap of one sentence: one panel per (layer, head)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from jaxnets.training.plots import plt


def plot_attention(
    tokens: Sequence[str],
    attentions: Sequence[np.ndarray],
    path: str | os.PathLike,
    *,
    title: str = "",
    max_layers: int = 4,
    max_heads: int = 4,
) -> None:
    """attentions: per layer, the weights (heads, T, T) of one sentence; rows are queries,
    columns the keys they attend to. The last `max_layers` layers and first `max_heads` heads."""
    layers = list(attentions)[-max_layers:]
    heads = min(max_heads, layers[0].shape[0])
    n = len(tokens)
    size = 0.9 + 0.16 * n
    fig, axes = plt.subplots(
        len(layers), heads, figsize=(size * heads, size * len(layers)), squeeze=False
    )
    first = len(attentions) - len(layers)
    for r, layer in enumerate(layers):
        for h in range(heads):
            ax = axes[r, h]
            ax.imshow(layer[h], cmap="viridis", vmin=0.0, vmax=1.0)
            ax.set_xticks(range(n), tokens, rotation=90, fontsize=6)
            ax.set_yticks(range(n), tokens, fontsize=6)
            ax.set_title(f"layer {first + r + 1}, head {h + 1}", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
