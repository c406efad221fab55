"""Kaggle-style `submission.csv` for a test set of images: columns `Id` (from 1) and `Category`.

`write_submission(labels, path)` writes the file; `predict_labels(model, images, ...)` runs any NNX
classifier over uint8 NHWC images; `make_submission(classifier, ...)` predicts a test set with a
`Classifier` and writes the file. Rebuilding a run's classifier from its checkpoint is each
experiment's business: `jaxnets submit --run DIR --data-dir DIR` (`jaxnets.experiments.submit`)
asks the experiment that made the run, then comes here:

    Id,Category
    1,3
    2,8
    ...
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def write_submission(labels: Sequence[int] | np.ndarray, path: str | os.PathLike) -> pathlib.Path:
    """`Id,Category` with Id = 1..N in the order of `labels` and Category the integer label."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D (one per test image), got shape {labels.shape}")
    if labels.size and not np.all(np.equal(np.mod(labels, 1), 0)):
        raise ValueError("labels must be whole numbers (class indices)")
    path = pathlib.Path(path)
    if path.is_dir():
        raise ValueError(f"--out {path} is a folder: name the file, e.g. {path / 'submission.csv'}")
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{i},{int(c)}\n" for i, c in enumerate(labels, start=1))
    path.write_text("Id,Category\n" + rows)
    return path


def read_submission(path: str | os.PathLike) -> np.ndarray:
    """The Category column of a submission file, checking its header and its Ids 1..N."""
    lines = pathlib.Path(path).read_text().splitlines()
    if not lines or lines[0] != "Id,Category":
        raise ValueError(f"{path}: the header must be 'Id,Category'")
    rows = [line.split(",") for line in lines[1:]]
    ids = [int(i) for i, _ in rows]
    if ids != list(range(1, len(rows) + 1)):
        raise ValueError(f"{path}: Ids must run 1..{len(rows)}")
    return np.array([int(c) for _, c in rows], np.int64)


def predict_labels(
    model: Any,
    images: np.ndarray,
    *,
    mean: Any = None,
    std: Any = None,
    transform: Callable | None = None,
    batch_size: int = 256,
) -> np.ndarray:
    """argmax of `model`'s logits for uint8 NHWC `images`, in evaluation mode (no dropout, batch
    norm with running averages).

    mean, std: per-channel normalisation as in training (None: scale by 1/255).
    transform: a jittable function of the normalised batch applied before the model (a resize).
    """
    import jax
    from flax import nnx

    from jaxnets.data.pipeline import iterate_batches

    view = nnx.view(model, deterministic=True, use_running_average=True, raise_if_not_found=False)

    @nnx.jit
    def step(m, x):
        return m(transform(x) if transform is not None else x).argmax(-1)

    batch_size = max(1, min(batch_size, len(images)))
    outs = []
    dummy = np.zeros(len(images), np.int32)
    for batch in iterate_batches(
        images, dummy, batch_size, shuffle=False, drop_remainder=False, mean=mean, std=std
    ):
        out = np.asarray(jax.device_get(step(view, batch["image"])))
        outs.append(out[batch["mask"]])
    return np.concatenate(outs) if outs else np.zeros(0, np.int64)


# ----------------------------------------------------------------------------- run folders
@dataclasses.dataclass
class Classifier:
    """A trained classifier: `predict(uint8 NHWC images) -> dataset label ids`."""

    predict: Callable[[np.ndarray], np.ndarray]
    dataset: str  # the jaxnets.data.images name of the dataset it was trained on
    description: str


def _load_images(path: pathlib.Path) -> np.ndarray:
    """uint8 NHWC images from a .npy, or a .npz's `images` (or only) array."""
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            key = "images" if "images" in z.files else z.files[0]
            images = z[key]
    else:
        images = np.load(path, allow_pickle=False)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"{path}: expected uint8 NHWC images, got {images.dtype} {images.shape}")
    return images


def make_submission(
    classifier: Classifier,
    out: str | os.PathLike,
    *,
    data_dir: str | None = None,
    images: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Predict the test images and write the submission to `out`; returns {path, count,
    accuracy, classifier, images}.

    The images are those of `images` (a .npy/.npz of uint8 NHWC), or else the test split of the
    classifier's dataset found in `data_dir` (accuracy is reported, since their labels are
    known).
    """
    from jaxnets.data.images import load_image_dataset

    labels = None
    if images is not None:
        test_images = _load_images(pathlib.Path(images))
        source = str(images)
    else:
        splits = load_image_dataset(classifier.dataset, data_dir)
        test_images, labels, source = splits.test_images, splits.test_labels, splits.source
    predictions = classifier.predict(test_images)
    path = write_submission(predictions, out)
    accuracy = None if labels is None else float(np.mean(predictions == labels))
    return {
        "path": str(path),
        "count": len(predictions),
        "accuracy": accuracy,
        "classifier": classifier.description,
        "images": source,
    }


# ----------------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--run", required=True, help="a finished run folder (e.g. runs/transfer)")
    add(
        "--data-dir",
        help="the dataset's folder: its test split is what gets predicted (default: the run's)",
    )
    add("--images", help="instead: a .npy/.npz of uint8 NHWC test images")
    add("--out", help="output file (default: RUN/submission.csv)")
    add("--checkpoint", choices=("best", "last"), help="default: the one the run evaluated")


def run(args: argparse.Namespace, submission_from_run: Callable[..., dict[str, Any]]) -> int:
    """`jaxnets submit`, given the experiments' `submission_from_run`."""
    import sys

    from jaxnets.data.images import DatasetFormatError, DatasetNotFoundError

    try:
        info = submission_from_run(
            args.run,
            data_dir=args.data_dir,
            images=args.images,
            out=args.out,
            checkpoint=args.checkpoint,
        )
    except (FileNotFoundError, ValueError, DatasetNotFoundError, DatasetFormatError) as exc:
        print(f"jaxnets submit: {exc}", file=sys.stderr)
        return 2
    print(f"{info['classifier']}: predicted {info['count']} images ({info['images']})")
    if info["accuracy"] is not None:
        print(f"accuracy on those labelled test images: {info['accuracy']:.4f}")
    print(f"wrote {info['path']}")
    return 0
