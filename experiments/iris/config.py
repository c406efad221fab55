"""Settings for the Iris experiment (course B: SGD momentum 0.9, batch 25, 100 epochs)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class IrisConfig:
    # (learning rate, hidden size) pairs swept; the best by validation accuracy is reported.
    settings: tuple[tuple[float, int], ...] = ((0.01, 16), (0.01, 64), (0.05, 32), (0.1, 8))
    epochs: int = 100
    batch_size: int = 25
    momentum: float = 0.9
    clip_norm: float | None = 1.0  # course B clips each parameter's gradient at norm 1
    reg: float = 0.0
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    seed: int = 0
    gradients: str = "auto"  # "manual" (hand-derived backward), "autodiff", "auto": the faster


def get_config(**overrides) -> IrisConfig:
    return dataclasses.replace(IrisConfig(), **overrides)
