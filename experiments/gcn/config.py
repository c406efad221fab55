"""Settings for `jaxnets train gcn`: one preset per dataset format, then command-line overrides.

- ogbn-* (node property): the course's node model, 3 layers, hidden 256, batch norm, dropout
  0.5, Adam 0.01, 100 epochs, best by validation accuracy.
- ogbg-* (graph property): the course's graph model, 5 layers, hidden 256, dropout 0.5, Adam 1e-3,
  30 epochs, batch 32, best by the validation metric (ROC-AUC for molhiv/molbace).
- Planetoid (Cora): Kipf & Welling's recipe (2 layers, dropout 0.5 on the input and hidden
  features, Adam 0.01 with weight decay 5e-4, row-normalised features, 200 epochs) with hidden 64
  instead of 16, which scored higher on the validation set; no batch norm.
- `model="bond-gcn"` (ogbg-mol* only): OGB's GCN baseline instead of the course's graph model,
  with bond features in every message; OGB trains it with hidden 300 (`--hidden 300`).
- `average_decay=0.999` (`--average-decay`): validation and test score a moving average of the
  weights over about the last 1,000 steps, which moves less from epoch to epoch.
- TU (ENZYMES): the graph model with a smaller hidden size on a stratified 80/10/10 split.
"""

from __future__ import annotations

import dataclasses

from jaxnets.data.graphs import dataset_format


@dataclasses.dataclass(frozen=True)
class GCNConfig:
    dataset: str = "cora"
    model: str = "course"  # "course" | "bond-gcn" (OGB's GCN with bond features; ogbg-mol*)
    hidden: int = 256
    num_layers: int = 3
    dropout: float = 0.5
    input_dropout: float = 0.0  # on the input features (Kipf & Welling); 0 in the course
    batchnorm: bool = True
    learning_rate: float = 0.01
    weight_decay: float = 0.0  # coupled L2 (added to the gradient), as torch's Adam does
    epochs: int = 100
    batch_size: int = 32  # graphs per step (graph datasets)
    eval_batch_size: int = 256
    normalize_features: bool = False  # row-normalise node features (Planetoid)
    use_node_attr: bool = False  # TU: node attributes as features, before the one-hot labels
    split_seed: int = 0  # TU datasets ship no split: a stratified 80/10/10 one from this seed
    seed: int = 0  # first seed; run k uses seed + k
    seeds: int = 1
    gradients: str = "auto"  # "manual" (hand-derived backward), "autodiff", "auto": the faster
    # > 0: score (and keep) an exponential moving average of the weights with this decay per
    # step instead of the last weights (jaxnets/training/averaging.py); 0: the weights themselves.
    average_decay: float = 0.0


MODELS = ("course", "bond-gcn")

# Presets per dataset format; `dataset` is filled in by get_config.
PRESETS: dict[str, GCNConfig] = {
    "planetoid": GCNConfig(
        hidden=64,
        num_layers=2,
        dropout=0.5,
        input_dropout=0.5,
        batchnorm=False,
        learning_rate=0.01,
        weight_decay=5e-4,
        epochs=200,
        normalize_features=True,
    ),
    "ogbn": GCNConfig(
        hidden=256, num_layers=3, dropout=0.5, batchnorm=True, learning_rate=0.01, epochs=100
    ),
    "ogbg": GCNConfig(
        hidden=256,
        num_layers=5,
        dropout=0.5,
        batchnorm=True,
        learning_rate=1e-3,
        epochs=30,
        batch_size=32,
    ),
    "tu": GCNConfig(
        hidden=64,
        num_layers=3,
        dropout=0.5,
        batchnorm=True,
        learning_rate=1e-3,
        epochs=100,
        batch_size=32,
    ),
}


def get_config(dataset: str, **overrides) -> GCNConfig:
    """The preset for the dataset's format, with the `overrides` that are not None."""
    preset = PRESETS[dataset_format(dataset)]
    model = overrides.get("model") or "course"
    if model not in MODELS:
        raise ValueError(f"--model must be one of {', '.join(MODELS)}, got {model!r}")
    if model == "bond-gcn" and not dataset.lower().replace("_", "-").startswith("ogbg-mol"):
        raise ValueError(
            f"--model bond-gcn needs an ogbg-mol* dataset (bond features), not {dataset}"
        )
    given = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(preset, dataset=dataset, **given)
