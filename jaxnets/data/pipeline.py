"""Host-side input pipeline: splits, normalisation, deterministic batches, augmentation, prefetch.

Everything here is numpy on the host. The datasets fit in memory as one uint8 array, so a batch is
a single vectorised gather (`images[idx]`), then augmentation on uint8, then normalisation to
float32. Randomness comes from `np.random.default_rng([seed, epoch, ...])`: the batches of an epoch
depend only on (seed, epoch), so a resumed run (even mid-epoch, via `start_batch`) sees exactly the
batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]
Batch = dict[str, np.ndarray]

# Stream tags, so the shuffle, split and augmentation generators never share a random stream.
_SHUFFLE, _AUGMENT, _SPLIT = 0, 1, 2


# ----------------------------------------------------------------------------- splits
def stratified_split_indices(
    labels: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val), both sorted, with every class split in proportion `val_fraction`.

    The validation size is round(val_fraction * N); it is shared out over the classes by largest
    remainder, so each class gets floor or ceil of its exact share.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n = len(labels)
    classes, counts = np.unique(labels, return_counts=True)
    share = counts * (round(val_fraction * n) / max(n, 1))
    take = np.floor(share).astype(np.int64)
    leftover = round(val_fraction * n) - int(take.sum())
    # Stable sort: ties in the remainder go to the lower class, so the split is reproducible.
    take[np.argsort(-(share - take), kind="stable")[:leftover]] += 1

    rng = np.random.default_rng([seed, _SPLIT])
    val = [
        rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take, strict=True)
    ]
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, np.int64)
    is_val = np.zeros(n, bool)
    is_val[val_idx] = True
    return np.flatnonzero(~is_val), val_idx


def train_val_split(
    images: np.ndarray,
    labels: np.ndarray,
    val_fraction: float,
    seed: int,
    *,
    stratify: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train_images, train_labels, val_images, val_labels), deterministic in `seed`.

    Stratified by label by default; `stratify=False` takes a plain shuffled subset of the same size.
    Examples keep their original order within each part.
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if stratify:
        tr, va = stratified_split_indices(labels, val_fraction, seed)
    else:
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        perm = np.random.default_rng([seed, _SPLIT]).permutation(len(labels))
        n_val = round(val_fraction * len(labels))
        tr, va = np.sort(perm[n_val:]), np.sort(perm[:n_val])
    return images[tr], labels[tr], images[va], labels[va]


# ----------------------------------------------------------------------------- normalisation
def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (mean, std) over N, H, W of NHWC images, in the images' own units (0..255).

    Accumulates in float64 chunk by chunk, so 50,000 CIFAR images never become one float64 copy.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be NHWC (4-D), got shape {images.shape}")
    total = np.zeros(images.shape[-1], np.float64)
    total_sq = np.zeros_like(total)
    for i in range(0, len(images), chunk):
        x = images[i : i + chunk].astype(np.float64)
        total += x.sum(axis=(0, 1, 2))
        total_sq += np.square(x).sum(axis=(0, 1, 2))
    count = images.shape[0] * images.shape[1] * images.shape[2]
    if count == 0:
        raise ValueError("channel_stats of an empty image array")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return mean.astype(np.float32), std.astype(np.float32)


def normalize(images: np.ndarray, mean: Any, std: Any) -> np.ndarray:
    """(images - mean) / std per channel, as float32. `mean`, `std` broadcast over the last axis."""
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    if np.any(std <= 0):
        raise ValueError(f"std must be positive, got {std}")
    # x * (1/std) + (-mean/std): the multiply converts uint8 straight into the float32 output and
    # the add runs in place, so there is one output array and no temporaries.
    scale = (1.0 / std).astype(np.float32)
    out = np.multiply(images, scale, dtype=np.float32)
    return np.add(out, -mean * scale, out=out)


# ----------------------------------------------------------------------------- batching
def num_batches(num_examples: int, batch_size: int, drop_remainder: bool) -> int:
    """How many batches `iterate_batches` yields per epoch."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return num_examples // batch_size if drop_remainder else -(-num_examples // batch_size)


def epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The example order of one epoch: a function of (seed, epoch) only."""
    return np.random.default_rng([seed, epoch, _SHUFFLE]).permutation(num_examples)


def pad_batch(batch: Batch, batch_size: int) -> Batch:
    """Pad every array of `batch` along axis 0 to `batch_size` and add a boolean "mask".

    Padded rows are zeros (label 0, a valid class, so gathers in the loss stay in range) with
    mask False. Summing per-example metrics times mask gives exact totals over the real examples,
    and every batch keeps one fixed shape, so a jitted eval step compiles once.
    """
    n = len(next(iter(batch.values())))
    if n > batch_size:
        raise ValueError(f"batch of {n} examples does not fit batch_size {batch_size}")
    out = {}
    for key, value in batch.items():
        pad = np.zeros((batch_size - n, *value.shape[1:]), value.dtype)
        out[key] = np.concatenate([value, pad]) if n < batch_size else value
    mask = np.zeros(batch_size, bool)
    mask[:n] = batch.get("mask", np.ones(n, bool))
    out["mask"] = mask
    return out


def iterate_batches(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    epoch: int = 0,
    drop_remainder: bool,
    augment: Augment | None = None,
    mean: Any = None,
    std: Any = None,
    start_batch: int = 0,
) -> Iterator[Batch]:
    """Yield {"image": float32 NHWC, "label": int32, "mask": bool} batches for one epoch.

    shuffle: order by `epoch_permutation(N, seed, epoch)`, else the stored order.
    drop_remainder: True drops the final partial batch (training); False pads it to `batch_size`
        with mask False (evaluation: exact over every example, one fixed shape). Every batch
        carries "mask" so the batch pytree never changes (a change would recompile a jitted step).
    augment: `augment(uint8_batch, rng) -> uint8_batch`, applied before normalisation with an rng
        seeded by (seed, epoch, batch index), so augmented batches are reproducible too.
    mean, std: per-channel statistics for `normalize`; if None, images are scaled by 1/255.
    start_batch: skip the first batches of the epoch (resume mid-epoch) without computing them.
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if images.ndim != 4:
        raise ValueError(f"images must be NHWC (4-D), got shape {images.shape}")
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std, or neither")
    n = len(images)
    order = epoch_permutation(n, seed, epoch) if shuffle else np.arange(n)
    for b in range(start_batch, num_batches(n, batch_size, drop_remainder)):
        idx = order[b * batch_size : (b + 1) * batch_size]
        x = images[idx]
        if augment is not None:
            x = augment(x, np.random.default_rng([seed, epoch, _AUGMENT, b]))
        x = normalize(x, mean, std) if mean is not None else normalize(x, 0.0, 255.0)
        batch = {"image": x, "label": labels[idx].astype(np.int32)}
        yield pad_batch(batch, batch_size)


# ----------------------------------------------------------------------------- augmentation
def crop_flip(
    images: np.ndarray,
    offset_y: np.ndarray,
    offset_x: np.ndarray,
    flip: np.ndarray,
    *,
    pad: int = 4,
    mode: str = "constant",
) -> np.ndarray:
    """Pad each NHWC image by `pad` pixels, crop HxW at (offset_y, offset_x), mirror where `flip`.

    Offsets index the padded image, in [0, 2 * pad]; offset `pad` is the un-shifted image.
    mode: "constant" (zero padding) or "reflect" (mirror without repeating the edge, as np.pad).
    """
    if mode not in ("constant", "reflect"):
        raise ValueError(f"mode must be 'constant' or 'reflect', got {mode!r}")
    n, h, w, _ = images.shape
    oy, ox = np.asarray(offset_y), np.asarray(offset_x)
    if len(oy) != n or len(ox) != n or len(flip) != n:
        raise ValueError(f"need one offset_y, offset_x and flip per image ({n})")
    if (
        min(oy.min(initial=0), ox.min(initial=0)) < 0
        or max(oy.max(initial=0), ox.max(initial=0)) > 2 * pad
    ):
        raise ValueError(f"offsets must lie in [0, {2 * pad}]")
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode=mode)
    out = np.empty_like(images)
    # One block copy per image (a flip is a negative-stride view, free until the copy): faster
    # than a single fancy-index gather over all N*H*W pixels, whose 3-byte elements and index
    # arrays cost more than a batch of slice copies.
    for i in range(n):
        window = padded[i, oy[i] : oy[i] + h, ox[i] : ox[i] + w]
        out[i] = window[:, ::-1] if flip[i] else window
    return out


def random_crop_flip(
    images: np.ndarray, rng: np.random.Generator, pad: int = 4, mode: str = "constant"
) -> np.ndarray:
    """CIFAR augmentation: random crop after `pad`-pixel padding, and a horizontal flip w.p. 1/2."""
    n = len(images)
    oy = rng.integers(0, 2 * pad + 1, size=n)
    ox = rng.integers(0, 2 * pad + 1, size=n)
    flip = rng.random(n) < 0.5
    return crop_flip(images, oy, ox, flip, pad=pad, mode=mode)


# ----------------------------------------------------------------------------- prefetch
class _Raised:
    def __init__(self, exc: BaseException):
        self.exc = exc


_END = object()


def prefetch_to_device(batches: Iterable[Any], size: int = 2, device: Any = None) -> Iterator[Any]:
    """Iterate `batches` from a background thread that keeps `size` batches already on the device.

    The thread runs the host work (gather, augmentation, normalisation) and `jax.device_put` while
    the training step computes. Exceptions in the producer re-raise in the consumer; closing the
    iterator early stops the thread.
    """
    import jax  # The readers and the batcher work without JAX; only the prefetch needs it.

    q: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not put(jax.device_put(batch, device)):
                    return
            put(_END)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(_Raised(exc))

    thread = threading.Thread(target=produce, name="prefetch_to_device", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join(timeout=5.0)
