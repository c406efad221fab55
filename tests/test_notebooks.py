"""The Colab notebooks run top to bottom on CPU with tiny settings, so they cannot rot.

Each notebook's cell tagged "parameters" is replaced by the settings below (no install, tiny
runs, local data) and the notebook is executed in a fresh kernel with nbclient.
"""

from __future__ import annotations

import pathlib

import pytest

from tests.conftest import SHARED_DATA

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

COLAB = pathlib.Path(__file__).resolve().parents[1] / "colab"


def _params(out: pathlib.Path, **values: object) -> str:
    values = {"INSTALL": False, "REPO": "", "OUT": str(out), **values}
    return "\n".join(f"{k} = {v!r}" for k, v in values.items())


CASES = {
    "01_layers_and_gradient_audit.ipynb": (
        None,
        {"AUDIT_ONLY": "softmax", "EPOCHS": 3, "COMPARE_EPOCHS": 1},
    ),
    "02_cnn_fashion_mnist_cifar10.ipynb": (
        None,
        {
            "DATASET": "digits",
            "PREPARE_TFDS": False,
            "DATA_DIR": "",
            "EPOCHS": 1,
            "EXTRA": ["--limit-train", "256", "--batch-size", "64"],
        },
    ),
    "03_transfer_learning.ipynb": (
        "cifar10",
        {
            "BACKBONE": "resnet18",
            "WEIGHTS": "",
            "PREPARE_TFDS": False,
            "EPOCHS": 1,
            "EXTRA": [
                "--image-size",
                "32",
                "--pretrain-epochs",
                "1",
                "--limit-train",
                "128",
                "--limit-test",
                "64",
                "--batch-size",
                "32",
            ],
        },
    ),
    "04_bert.ipynb": (
        "imdb",
        {
            "PRESET": "smoke",
            "PRETRAIN_EXTRA": ["--limit-documents", "500"],
            "FINETUNE_EXTRA": ["--limit-train", "256", "--limit-eval", "128"],
        },
    ),
    "05_gcn.ipynb": ("planetoid", {"DATASET": "cora", "DOWNLOAD": False, "SEEDS": 1, "EPOCHS": 5}),
}


def test_every_notebook_is_covered():
    assert sorted(p.name for p in COLAB.glob("*.ipynb")) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_notebook_runs(name, tmp_path):
    data, values = CASES[name]
    if data is not None:
        if not (SHARED_DATA / data).is_dir():
            pytest.skip(f"needs {SHARED_DATA / data}")
        key = "DATA_DIR"
        values = {**values, key: str(SHARED_DATA / data)}
    extra_out = {}
    if name == "04_bert.ipynb":
        extra_out = {"PRETRAIN_OUT": str(tmp_path / "pretrain")}
    nb = nbformat.read(COLAB / name, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "each notebook has exactly one parameters cell"
    tagged[0].source = _params(tmp_path / "run", **values, **extra_out)

    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()

    assert (tmp_path / "run" / "results.json").exists()
    shown = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in shown), "plots are shown inline"
