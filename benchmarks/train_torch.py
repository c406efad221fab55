"""The PyTorch peers of `jaxnets bench train`: plain eager PyTorch scripts of the same recipes.

    python benchmarks/train_torch.py fashion-mnist [--epochs 2]   # standalone: seconds per epoch

Each recipe is what a student would write in PyTorch for the course problem, on the arrays the
jaxnets run trains on (uint8 NHWC images and int labels, the same train split):

- fashion-mnist: the course's CNN (conv32 3x3 - relu - pool - conv64 3x3 - relu - pool - fc128 -
  relu - dropout 0.5 - fc10), batch 64, Adam 1e-3 on a per-step cosine decay, shuffled each
  epoch; each batch gathered and normalised from uint8 as it is needed.
- resnet9: Page's DAWNBench ResNet-9 at a stated width, batch 512, SGD Nesterov momentum 0.9
  on a one-cycle schedule, L2 5e-4 on the kernels, label smoothing 0.1, random crop + flip.

`Runner(recipe, images, labels, **options)` times `.epoch(epoch)`, one epoch's training steps
with the data pipeline (no evaluation), and `.steps(k)`, k steps on one prepared batch (what the
step alone costs).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn


# ----------------------------------------------------------------------------- models
def fashion_cnn(num_classes: int = 10, in_channels: int = 1, size: int = 28) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * (size // 4) ** 2, 128),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(128, num_classes),
    )


def conv_bn(c_in: int, c_out: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()
    )


class Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.a, self.b = conv_bn(channels, channels), conv_bn(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(self.a(x))


class ResNet9(nn.Module):
    """jaxnets.models.cnn.ResNet9: prep - [conv, pool, res] - [conv, pool] - [conv, pool, res] -
    global max pool - linear (no bias), logits x 1/8."""

    def __init__(self, width: int = 64, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            conv_bn(in_channels, w),
            conv_bn(w, 2 * w),
            nn.MaxPool2d(2),
            Residual(2 * w),
            conv_bn(2 * w, 4 * w),
            nn.MaxPool2d(2),
            conv_bn(4 * w, 8 * w),
            nn.MaxPool2d(2),
            Residual(8 * w),
        )
        self.head = nn.Linear(8 * w, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).amax(dim=(2, 3))) * 0.125


# ----------------------------------------------------------------------------- schedules
def cosine(total_steps: int) -> Callable[[int], float]:
    return lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))


# ----------------------------------------------------------------------------- batches
def crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop after zero padding and a horizontal flip w.p. 1/2, per image (NCHW uint8)."""
    n, _, h, w = x.shape
    padded = nn.functional.pad(x, (pad, pad, pad, pad))
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    out = torch.empty_like(x)
    for i in range(n):
        oy, ox = int(offsets[i, 0]), int(offsets[i, 1])
        window = padded[i, :, oy : oy + h, ox : ox + w]
        out[i] = window.flip(-1) if flips[i] else window
    return out


class Runner:
    """One recipe's model, optimizer, schedule and data, ready to time."""

    def __init__(
        self,
        recipe: str,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        epochs: int,
        seed: int = 0,
        width: int = 64,
        threads: int | None = None,
    ):
        """`images`: uint8 NHWC; the schedule spans `epochs` epochs (the bench may run fewer:
        the step count only sets the learning rates)."""
        torch.manual_seed(seed)
        self.generator = torch.Generator().manual_seed(seed)
        num_classes = int(labels.max()) + 1
        n, size, _, channels = images.shape
        self.images = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        self.labels = torch.from_numpy(labels.astype(np.int64))
        as_float = self.images.float()
        self.mean = as_float.mean(dim=(0, 2, 3)).view(1, -1, 1, 1)
        self.std = as_float.std(dim=(0, 2, 3)).clamp_min(1e-3).view(1, -1, 1, 1)
        if recipe == "fashion-mnist":
            self.batch_size, self.augment, self.smoothing = 64, False, 0.0
            self.model = fashion_cnn(num_classes, channels, size)
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        elif recipe == "resnet9":
            self.batch_size, self.augment, self.smoothing = 512, True, 0.1
            self.model = ResNet9(width, num_classes, channels)
            params = list(self.model.parameters())
            self.optimizer = torch.optim.SGD(
                [
                    {"params": [p for p in params if p.ndim > 1], "weight_decay": 5e-4},
                    {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
                ],
                lr=0.4,
                momentum=0.9,
                nesterov=True,
            )
        else:
            raise ValueError(f"unknown recipe {recipe!r}; known: fashion-mnist, resnet9")
        self.batch_size = min(self.batch_size, n)
        self.steps_per_epoch = n // self.batch_size
        total = self.steps_per_epoch * epochs
        if recipe == "resnet9":  # optax's cosine one-cycle: up from lr/25 over 25% of the steps
            self.schedule = torch.optim.lr_scheduler.OneCycleLR(
                self.optimizer, 0.4, total_steps=total, pct_start=0.25, cycle_momentum=False
            )
        else:
            self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, cosine(total))
        self.model.train()
        self.threads = threads or torch.get_num_threads()

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(self.model(x), y, label_smoothing=self.smoothing)
        loss.backward()
        self.optimizer.step()
        self.schedule.step()
        return loss.item()  # the running loss a script prints

    def _batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[idx]
        if self.augment:
            x = crop_flip(x, self.generator)
        return (x.float() - self.mean) / self.std, self.labels[idx]

    def epoch(self, epoch: int) -> float:
        """Seconds of one shuffled epoch, batches made from the uint8 images as they are used."""
        torch.set_num_threads(self.threads)  # a global setting: set it for each contender
        start = time.perf_counter()
        order = torch.randperm(len(self.labels), generator=self.generator)
        for b in range(self.steps_per_epoch):
            self._step(*self._batch(order[b * self.batch_size : (b + 1) * self.batch_size]))
        return time.perf_counter() - start

    def steps(self, k: int) -> float:
        """Seconds of `k` steps on one batch made beforehand: the step without the pipeline."""
        torch.set_num_threads(self.threads)
        x, y = self._batch(torch.arange(self.batch_size))
        start = time.perf_counter()
        for _ in range(k):
            self._step(x, y)
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", choices=("fashion-mnist", "resnet9"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--data-dir", help="as for `jaxnets train` (default: its search)")
    args = parser.parse_args(argv)
    from jaxnets.data.images import load_image_dataset

    dataset = "fashion-mnist" if args.recipe == "fashion-mnist" else "cifar10"
    splits = load_image_dataset(dataset, args.data_dir, "auto")
    runner = Runner(
        args.recipe, splits.train_images, splits.train_labels, epochs=args.epochs, width=args.width
    )
    for epoch in range(1, args.epochs + 1):
        print(f"epoch {epoch}: {runner.epoch(epoch):.2f} s")


if __name__ == "__main__":
    main()
