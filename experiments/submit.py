"""`jaxnets submit`: a Kaggle submission.csv from a finished image-classifier run.

Each experiment that trains an image classifier says here how to rebuild it from its run
folder (`CLASSIFIER_LOADERS`); predicting, the file format and the command line are
`jaxnets.submission`'s, which knows no experiment.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pathlib
from typing import Any

from jaxnets import submission
from jaxnets.submission import Classifier, add_arguments
from jaxnets.training.run_dir import read_results

__all__ = ["CLASSIFIER_LOADERS", "add_arguments", "load_classifier", "run", "submission_from_run"]

# results.json's "experiment" -> the module whose load_classifier(run_dir, *, checkpoint,
# data_dir) rebuilds the run's classifier (imported on use: `jaxnets submit --help` loads no JAX).
CLASSIFIER_LOADERS: dict[str, str] = {
    "transfer": "jaxnets.experiments.transfer.train",
    **dict.fromkeys(
        ("digits", "fashion-mnist", "cifar10", "images"), "jaxnets.experiments.images.train"
    ),
}


def load_classifier(
    run_dir: str | os.PathLike, *, checkpoint: str | None = None, data_dir: str | None = None
) -> Classifier:
    """The trained classifier of a run folder, from its checkpoint ("best"/"last"; default: the
    one the run's test numbers came from)."""
    experiment = read_results(run_dir).get("experiment")
    if experiment not in CLASSIFIER_LOADERS:
        raise ValueError(
            f"{run_dir}: a {experiment!r} run; submissions are made from image classifier runs "
            f"({', '.join(CLASSIFIER_LOADERS)})"
        )
    module = importlib.import_module(CLASSIFIER_LOADERS[experiment])
    return module.load_classifier(run_dir, checkpoint=checkpoint, data_dir=data_dir)


def submission_from_run(
    run_dir: str | os.PathLike,
    *,
    data_dir: str | None = None,
    images: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    checkpoint: str | None = None,
) -> dict[str, Any]:
    """Predict the test images with a run's classifier and write the submission (default:
    RUN/submission.csv); see `jaxnets.submission.make_submission`."""
    if data_dir is None:  # where the run found its data
        data_dir = read_results(run_dir).get("config", {}).get("data_dir")
    classifier = load_classifier(run_dir, checkpoint=checkpoint, data_dir=data_dir)
    out = out or pathlib.Path(run_dir) / "submission.csv"
    return submission.make_submission(classifier, out, data_dir=data_dir, images=images)


def run(args: argparse.Namespace) -> int:
    return submission.run(args, submission_from_run)
