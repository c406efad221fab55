"""submission.csv: the Kaggle format (Id from 1, integer Category), and predictions from a run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from flax import nnx

from jaxnets import cli
from jaxnets.submission import predict_labels, read_submission, write_submission


def test_csv_format(tmp_path):
    path = write_submission(np.array([3, 8, 8, 0, 6], np.int64), tmp_path / "sub" / "a.csv")
    assert path.read_text() == "Id,Category\n1,3\n2,8\n3,8\n4,0\n5,6\n"
    # Whole-number floats (e.g. from a float array) are written as integers.
    write_submission(np.array([1.0, 2.0]), tmp_path / "b.csv")
    assert (tmp_path / "b.csv").read_text().splitlines() == ["Id,Category", "1,1", "2,2"]
    np.testing.assert_array_equal(read_submission(tmp_path / "b.csv"), [1, 2])
    with pytest.raises(ValueError, match="whole numbers"):
        write_submission(np.array([0.5]), tmp_path / "c.csv")
    with pytest.raises(ValueError, match="1-D"):
        write_submission(np.zeros((2, 2), int), tmp_path / "c.csv")
    (tmp_path / "d.csv").write_text("Id,Category\n2,1\n")
    with pytest.raises(ValueError, match="Ids must run"):
        read_submission(tmp_path / "d.csv")


class ChannelMeans(nnx.Module):
    """Logits = the per-channel means of the image: the predicted class is the brightest
    (normalised) channel, computable by hand."""

    def __call__(self, x):
        return x.mean(axis=(1, 2))


def test_predict_labels_in_order_over_padded_batches():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 4, 4, 3), dtype=np.uint8)
    mean, std = np.array([100.0, 120.0, 140.0]), np.array([50.0, 60.0, 70.0])
    want = [np.argmax((img.reshape(-1, 3).mean(0) - mean) / std) for img in images]
    # Batches of 3: the last one holds 1 image and 2 masked padding rows.
    got = predict_labels(ChannelMeans(), images, mean=mean, std=std, batch_size=3)
    np.testing.assert_array_equal(got, want)
    negated = predict_labels(ChannelMeans(), images, transform=lambda x: -x, batch_size=3)
    np.testing.assert_array_equal(
        negated, [np.argmin(img.reshape(-1, 3).mean(0)) for img in images]
    )


def test_submit_command_from_a_trained_checkpoint(tmp_path, capsys):
    """`jaxnets submit` rebuilds a digits run's CNN from its checkpoint: its predictions are
    those the run made, so their accuracy is the run's own test accuracy."""
    from jaxnets.experiments.images.config import get_config
    from jaxnets.experiments.images.train import train_and_evaluate

    config = get_config("digits", epochs=1, batch_size=32, limit_train=80)
    results = train_and_evaluate(config, tmp_path / "run", progress=False)
    code = cli.main(["submit", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "s.csv")])
    assert code == 0
    categories = read_submission(tmp_path / "s.csv")
    assert len(categories) == results["num_test"]  # digits' whole test split
    assert categories.dtype.kind == "i" and set(categories) <= set(range(10))
    output = capsys.readouterr().out
    assert f"accuracy on those labelled test images: {results['test_accuracy']:.4f}" in output
    # The confusion matrix of the run has the same predicted-class counts.
    matrix = np.array(
        json.loads((tmp_path / "run" / "results.json").read_text())["confusion_matrix"]
    )
    np.testing.assert_array_equal(np.bincount(categories, minlength=10), matrix.sum(axis=0))

    assert cli.main(["submit", "--run", str(tmp_path)]) == 2  # no results.json there
