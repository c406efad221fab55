"""Settings of the CIFAR-10 transfer experiment (`jaxnets train transfer`).

Two regimes, chosen by `weights`:

- a PyTorch state_dict of torchvision's ImageNet weights (`.pth`/`.pt`/`.safetensors`): images are
  resized to 224x224 as the backbone expects, and all 10 classes are the target (the course's
  setting, for an accelerator);
- no weights (the CPU default): the experiment first pretrains its own backbone on a source task,
  CIFAR-10 classes 0-4 (airplane, automobile, bird, cat, deer), saves it with orbax, and transfers
  it to the other five classes (dog, frog, horse, ship, truck), at 64x64 pixels: 224x224 on a CPU
  costs ~12x the compute for no information (the images have 32x32 pixels).

`weights` may also be the orbax backbone folder an earlier run saved (`OUT/pretrain/backbone`):
then, as when pretraining here, the target is the classes outside `source_classes`, at the size
the backbone was pretrained at.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxnets.errors import ConfigError

BACKBONES = ("alexnet", "resnet18", "resnet50")
MODES = ("frozen", "unfrozen")
IMAGENET_SIZE, CPU_SIZE = 224, 64


@dataclasses.dataclass(frozen=True)
class TransferConfig:
    backbone: str = "alexnet"
    weights: str | None = None  # state_dict file or orbax backbone folder; None: pretrain here
    image_size: int | None = None  # None: 224 with a state_dict file, 64 otherwise
    modes: tuple[str, ...] = MODES
    head_hidden: tuple[int, int] = (4096, 1024)  # AlexNet's new classifier: 9216-4096-1024-N
    epochs: int = 5
    batch_size: int = 64
    optimizer: str = "optax:adam"  # a jaxnets.optim.get_optimizer name
    learning_rate: float = 3e-4  # the frozen run (a new head only)
    finetune_learning_rate: float = 1e-4  # the unfrozen run: small steps keep the features
    schedule: str = "cosine"
    augment: bool = True  # random crop (4 px) + horizontal flip at 32x32, before resizing
    freeze_batch_stats: bool = True  # frozen run: batch norm keeps the source statistics
    # Source task of the self-pretrained backbone, and the target classes (None: see above).
    source_classes: tuple[int, ...] = (0, 1, 2, 3, 4)
    target_classes: tuple[int, ...] | None = None
    pretrain_epochs: int = 8
    pretrain_learning_rate: float = 3e-4
    val_fraction: float = 0.1
    limit_train: int | None = None
    limit_test: int | None = None
    eval_batch_size: int = 256
    eval_checkpoint: str = "best"  # "best" (by validation accuracy) or "last" for the test
    data_dir: str | None = None
    source: str = "auto"
    seed: int = 0
    gradients: str = "auto"  # "manual" (hand-derived backward), "autodiff", "auto": the faster

    @property
    def pretrain_here(self) -> bool:
        return self.weights is None

    @property
    def resolved_image_size(self) -> int:
        if self.image_size is not None:
            return self.image_size
        from_torch = self.weights is not None and not _is_dir(self.weights)
        return IMAGENET_SIZE if from_torch else CPU_SIZE

    def resolved_target_classes(self, num_classes: int) -> tuple[int, ...]:
        if self.target_classes is not None:
            return tuple(self.target_classes)
        if self.pretrain_here or _is_dir(self.weights):  # our own backbone: new classes only
            return tuple(c for c in range(num_classes) if c not in self.source_classes)
        return tuple(range(num_classes))

    def validate(self) -> None:
        if self.backbone not in BACKBONES:
            raise ConfigError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if not self.modes or any(m not in MODES for m in self.modes):
            raise ConfigError(f"modes must be a non-empty subset of {MODES}, got {self.modes}")
        if self.epochs < 1 or (self.pretrain_here and self.pretrain_epochs < 1):
            raise ConfigError("epochs and pretrain_epochs must be >= 1")
        if self.eval_checkpoint not in ("last", "best"):
            raise ConfigError(f"eval_checkpoint must be 'last' or 'best': {self.eval_checkpoint!r}")
        if self.resolved_image_size < 32:
            raise ConfigError(f"image_size must be >= 32, got {self.resolved_image_size}")
        if self.backbone == "alexnet" and self.resolved_image_size < 63:
            raise ConfigError("AlexNet needs images of at least 63x63 pixels (--image-size)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _is_dir(path: str) -> bool:
    import pathlib

    return pathlib.Path(path).is_dir()


def get_config(**overrides: Any) -> TransferConfig:
    config = dataclasses.replace(TransferConfig(), **overrides)
    config.validate()
    return config
