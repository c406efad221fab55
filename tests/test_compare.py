"""`jaxnets compare`: one experiment trained on hand-derived and on autodiff gradients, overlaid;
and `--gradients` recorded in results.json."""

from __future__ import annotations

import json

import pytest

from jaxnets import cli


def test_compare_digits_runs_both_modes_and_reports_the_difference(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "digits", "--out", str(out), "--epochs", "2", "--limit-train", "200"]
    assert cli.main([*argv, "--no-progress"]) == 0
    report = json.loads((out / "compare.json").read_text())
    for mode in ("manual", "autodiff"):
        results = json.loads((out / mode / "results.json").read_text())
        assert results["gradients"] == mode
    # Same seed, batches and dropout masks: the runs differ only by float32 rounding.
    # 200 images less 15% for validation = 170, batch 32: 5 full steps an epoch (the rest dropped).
    assert report["recorded_losses"] == 2 * 5
    assert report["largest_loss_difference"]["relative"] <= 1e-4
    accuracy = report["final_metrics"]["test_accuracy"]
    assert abs(accuracy["manual"] - accuracy["autodiff"]) <= 1e-2
    assert (out / "compare.png").stat().st_size > 10_000
    assert "largest loss difference over 10 recorded losses" in capsys.readouterr().out
    # A second comparison into the same folder is refused (the runs are finished) ...
    assert cli.main([*argv, "--no-progress"]) == 2
    # ... and compare sets --gradients itself.
    assert cli.main([*argv, "--gradients", "manual"]) == 2
    assert "compare sets --gradients itself" in capsys.readouterr().err


def test_gradients_flag_is_recorded_for_iris(tmp_path):
    out = tmp_path / "iris"
    argv = ["train", "iris", "--out", str(out), "--epochs", "3", "--setting", "0.05:8"]
    assert cli.main([*argv, "--gradients", "autodiff"]) == 0
    assert json.loads((out / "results.json").read_text())["gradients"] == "autodiff"
    with pytest.raises(SystemExit) as refused:  # argparse: one line, exit 2
        cli.main(["train", "iris", "--gradients", "hand"])
    assert refused.value.code == 2
