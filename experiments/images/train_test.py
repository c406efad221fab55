"""Smoke test beside the code, as in the Flax examples: one training step, end to end."""

from __future__ import annotations

import json

import numpy as np

from jaxnets.experiments.images.config import get_config
from jaxnets.experiments.images.input_pipeline import load_data
from jaxnets.experiments.images.train import train_and_evaluate


def test_train_and_evaluate_one_step(tmp_path):
    # 40 images: 34 train (one batch of 32, so one optimizer step), 6 validation.
    config = get_config("digits", epochs=1, batch_size=32, limit_train=40, limit_test=50)
    results = train_and_evaluate(config, tmp_path, progress=False)

    assert results["epochs"] == 1 and results["num_train"] == 34 and results["num_test"] == 50
    # One step from the initialisation leaves the predictions near uniform: the test loss is
    # ln(10) = 2.303 give or take the step (measured 2.43). A loss off by a factor (a sum for a
    # mean, log2 for ln) or not a cross-entropy at all falls outside [2.0, 3.0].
    assert 2.0 < results["test_loss"] < 3.0
    # The accuracy is the confusion matrix's diagonal, and each of its rows holds one label's
    # test images (the pipeline's stratified 50), whatever the model predicts.
    matrix = np.array(results["confusion_matrix"])
    assert results["test_accuracy"] == np.trace(matrix) / 50
    test_labels = load_data(config).test_labels
    np.testing.assert_array_equal(matrix.sum(axis=1), np.bincount(test_labels, minlength=10))
    assert results["data_source"].startswith("scikit-learn")
    (record,) = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert record["step"] == 1
    assert json.loads((tmp_path / "results.json").read_text())["model"] == "fashion_cnn"
    for name in ("curves.png", "filters.png", "predictions.png", "confusion_matrix.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert (tmp_path / "checkpoints" / "last" / "1").is_dir()
