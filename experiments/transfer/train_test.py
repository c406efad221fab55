"""Smoke tests beside the code: the transfer experiment on a tiny synthetic CIFAR-10.

AlexNet at 64x64 pixels with a small classifier (9216-64-32-N) so that checkpoints stay small,
one optimizer step per epoch. The default test starts from a weights file (the PyTorch-import
path); the slow one runs the whole CPU default: pretraining on classes 0-4, transfer to 5-9, and
a submission made from the saved checkpoint.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from jaxnets.experiments.submit import submission_from_run
from jaxnets.experiments.transfer.config import get_config
from jaxnets.experiments.transfer.models import create_model
from jaxnets.experiments.transfer.train import train_and_evaluate
from jaxnets.models.torch_import import export_state_dict
from jaxnets.submission import read_submission

HIDDEN = (64, 32)


def _fake_labels(n):
    return np.arange(n) % 10


def _fake_cifar(directory, n_train=100, n_test=30):
    """train.npz / test.npz in the layout jaxnets.data.images reads: uint8 NHWC + labels."""
    directory.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train", n_train), ("test", n_test)):
        labels = _fake_labels(n)
        images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        np.savez(directory / f"{name}.npz", images=images, labels=labels)
    return str(directory)


def _head(num_classes):
    return 9216 * 64 + 64 + 64 * 32 + 32 + 32 * num_classes + num_classes


def _check_runs(out, results, num_classes):
    rows = {row["mode"]: row for row in results["table"]}
    assert set(rows) == {"frozen", "unfrozen"}
    # Trainable: the new classifier when frozen, everything when not.
    assert rows["frozen"]["trainable_params"] == _head(num_classes)
    assert rows["unfrozen"]["trainable_params"] == rows["unfrozen"]["total_params"]
    assert rows["unfrozen"]["total_params"] == 2_469_696 + _head(num_classes)
    # Both runs start from the same model: the same accuracy before training.
    assert rows["frozen"]["val_accuracy_epoch0"] == rows["unfrozen"]["val_accuracy_epoch0"]
    # The run reports the test accuracy of the mode with the better validation accuracy.
    best = max(rows.values(), key=lambda row: row["val_accuracy"])
    assert results["best_mode"] == best["mode"]
    assert results["test_accuracy"] == best["test_accuracy"]
    assert json.loads((out / "results.json").read_text())["best_mode"] in rows
    for row in rows.values():
        assert row["seconds_per_epoch"] > 0
    assert (out / "curves.png").stat().st_size > 10_000
    for mode in rows:
        records = [json.loads(line) for line in (out / mode / "metrics.jsonl").open()]
        assert [r["epoch"] for r in records] == [0, 1] and "train_loss" not in records[0]
        assert json.loads((out / mode / "results.json").read_text())["mode"] == mode


def test_transfer_from_a_weights_file(tmp_path):
    save_file = pytest.importorskip("safetensors.numpy").save_file  # optional, like torch

    data_dir = _fake_cifar(tmp_path / "cifar")
    # "Pretrained" weights: a random AlexNet's state_dict, with a 1000-class head to skip.
    weights = export_state_dict(create_model("alexnet", 1000, seed=5, head_hidden=HIDDEN))
    save_file(weights, str(tmp_path / "alexnet.safetensors"))
    config = get_config(
        weights=str(tmp_path / "alexnet.safetensors"),
        image_size=64,
        head_hidden=HIDDEN,
        epochs=1,
        batch_size=64,
        val_fraction=0.2,
        data_dir=data_dir,
    )
    out = tmp_path / "run"
    results = train_and_evaluate(config, out, progress=False)
    assert not results["pretrained_here"] and "imported 10 tensors" in results["weights"]
    assert results["target_classes"] == list(range(10)) and results["image_size"] == 64
    _check_runs(out, results, 10)
    # The saved best model, read back for a submission, scores what the run reported: random
    # images give chance-level figures, so the two code paths agreeing is the check.
    info = submission_from_run(out, data_dir=data_dir, out=tmp_path / "submission.csv")
    predicted = read_submission(tmp_path / "submission.csv")
    assert info["accuracy"] == np.mean(predicted == _fake_labels(30))
    assert info["accuracy"] == results["test_accuracy"]


@pytest.mark.slow
def test_transfer_pretrains_its_own_backbone_and_submits(tmp_path):
    data_dir = _fake_cifar(tmp_path / "cifar")
    config = get_config(
        head_hidden=HIDDEN,
        epochs=1,
        pretrain_epochs=1,
        batch_size=32,
        val_fraction=0.2,
        data_dir=data_dir,
    )
    out = tmp_path / "run"
    results = train_and_evaluate(config, out, progress=False, submission=True)
    assert results["pretrained_here"] and (out / "pretrain" / "backbone").is_dir()
    assert results["target_classes"] == [5, 6, 7, 8, 9] and results["image_size"] == 64
    _check_runs(out, results, 5)

    # submission.csv: one row per test image (all 30, every class), dataset label ids 5..9.
    categories = read_submission(out / "submission.csv")
    assert len(categories) == 30 and set(categories) <= {5, 6, 7, 8, 9}
    again = submission_from_run(out, data_dir=data_dir, out=tmp_path / "again.csv")
    np.testing.assert_array_equal(read_submission(tmp_path / "again.csv"), categories)
    # Over all 30 test images (classes 0-4 are never predicted, so never right); the run's
    # own accuracy is over the 15 of classes 5-9: the same images right, either way.
    correct = np.sum(categories == _fake_labels(30))
    assert again["count"] == 30 and again["accuracy"] == correct / 30
    assert round(results["test_accuracy"] * results["num_test"]) == correct
