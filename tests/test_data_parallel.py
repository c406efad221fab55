"""Data parallelism: a run sharded over 8 simulated CPU devices gives the losses of the
single-device run, to float32 tolerance (only the order of the gradient sums differs).

XLA reads the device count when JAX starts, so each run is its own Python process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import SHARED_DATA

SCRIPT = """
import sys, jax
assert jax.device_count() == int(sys.argv[1]), jax.devices()
from jaxnets.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _run(devices: int, argv: list[str], extra_env: dict[str, str] | None = None) -> None:
    env = {**os.environ, **(extra_env or {})}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(devices), *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _records(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _assert_same_losses(single, sharded, keys, rtol: float = 2e-4) -> None:
    assert len(single) == len(sharded)
    for a, b in zip(single, sharded):
        for key in keys:
            np.testing.assert_allclose(a[key], b[key], rtol=rtol, atol=1e-5, err_msg=key)


def test_cnn_sharded_over_8_devices_matches_one_device(tmp_path):
    argv = [
        "train",
        "digits",
        "--epochs",
        "2",
        "--batch-size",
        "64",
        "--limit-train",
        "512",
        "--no-progress",
    ]
    _run(1, [*argv, "--out", str(tmp_path / "one")])
    _run(8, [*argv, "--out", str(tmp_path / "eight")])
    keys = ["train_loss", "val_loss", "val_accuracy"]
    _assert_same_losses(_records(tmp_path / "one"), _records(tmp_path / "eight"), keys)


@pytest.mark.slow
def test_bert_pretraining_sharded_over_8_devices_matches_one_device(tmp_path):
    if not (SHARED_DATA / "imdb").is_dir():
        pytest.skip(f"needs {SHARED_DATA / 'imdb'}")
    argv = [
        "pretrain",
        "bert",
        "--preset",
        "smoke",
        "--data-dir",
        str(SHARED_DATA / "imdb"),
        "--batch-size",
        "16",
        "--no-progress",
    ]
    # Sharded, the BERT runs draw their masks with JAX's partitionable PRNG, whose bits do not
    # depend on the sharding; the single-device run then has to use it too. The second run
    # reads the first one's tokenizer: WordPiece training can break ties differently.
    env = {"JAX_THREEFRY_PARTITIONABLE": "1"}
    _run(1, [*argv, "--out", str(tmp_path / "one")], env)
    vocab = ["--vocab", str(tmp_path / "one" / "tokenizer.json")]
    _run(8, [*argv, *vocab, "--out", str(tmp_path / "eight")], env)
    single, sharded = _records(tmp_path / "one"), _records(tmp_path / "eight")
    keys = [k for k in single[0] if k.endswith("loss")]
    assert keys
    _assert_same_losses(single, sharded, keys)


@pytest.mark.parametrize(
    ("dataset", "batchnorm", "eval_rtol"),
    [
        pytest.param("cora", False, 2e-4, id="cora"),  # its recipe has none
        # 30-45 s each; the default tier is near its 10-minute budget (cora stays in it).
        pytest.param("enzymes", False, 2e-4, id="enzymes", marks=pytest.mark.slow),
        pytest.param("enzymes", True, 2e-3, id="enzymes-batchnorm", marks=pytest.mark.slow),
    ],
)
def test_gcn_sharded_over_8_devices_matches_one_device(tmp_path, dataset, batchnorm, eval_rtol):
    """Full-batch node classification (Cora) and padded graph batches (ENZYMES). Dropout off:
    padding to a multiple of 8 changes the shapes its random masks are drawn for.

    The training loss of each step agrees to float32 tolerance (measured 1.4e-7 relative on
    ENZYMES with batch norm, whose masked batch statistics sum over the real nodes of every
    shard). The bias of a conv before a batch norm has an exactly-zero gradient, so Adam
    scales the rounding noise of its gradient (which depends on the summation order) to
    full-size steps; the loss does not see them, but the running means, and so the evaluation
    losses, do: with batch norm they agree to 1.1e-4 relative after 2 epochs (2.1e-3 by epoch
    3, so the run stays at 2 epochs), and `eval_rtol` 2e-3 is 18x that."""
    folder = "planetoid" if dataset == "cora" else dataset
    if not (SHARED_DATA / folder).is_dir():
        pytest.skip(f"needs {SHARED_DATA / folder}")
    argv = ["train", "gcn", "--dataset", dataset, "--data-dir", str(SHARED_DATA)]
    argv += ["--epochs", "2", "--dropout", "0", "--seeds", "1"]
    argv += [] if batchnorm else ["--no-batchnorm"]
    _run(1, [*argv, "--out", str(tmp_path / "one")])
    _run(8, [*argv, "--out", str(tmp_path / "eight")])
    single = _records(tmp_path / "one" / "seed_0")
    sharded = _records(tmp_path / "eight" / "seed_0")
    keys = ["train_step_loss", "val_loss", "test_loss"]
    assert all(k in single[0] for k in keys), single[0]
    _assert_same_losses(single, sharded, keys[:1])
    _assert_same_losses(single, sharded, keys[1:], rtol=eval_rtol)
