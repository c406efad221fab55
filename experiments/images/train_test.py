"""Smoke test beside the code, as in the Flax examples: one training step, end to end."""

from __future__ import annotations

import json

from experiments.images.config import get_config
from experiments.images.train import train_and_evaluate


def test_train_and_evaluate_one_step(tmp_path):
    # 40 images: 34 train (one batch of 32, so one optimizer step), 6 validation.
    config = get_config("digits", epochs=1, batch_size=32, limit_train=40, limit_test=50)
    results = train_and_evaluate(config, tmp_path, progress=False)

    assert results["epochs"] == 1 and results["num_train"] == 34 and results["num_test"] == 50
    assert 0.0 <= results["test_accuracy"] <= 1.0 and results["test_loss"] > 0
    assert results["data_source"].startswith("scikit-learn")
    (record,) = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert record["step"] == 1
    assert json.loads((tmp_path / "results.json").read_text())["model"] == "fashion_cnn"
    for name in ("curves.png", "filters.png", "predictions.png", "confusion_matrix.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert (tmp_path / "checkpoints" / "last" / "1").is_dir()
