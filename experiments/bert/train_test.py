"""End to end on a tiny synthetic IMDB, through the CLI: pretrain, fine-tune, predict."""

from __future__ import annotations

import json

import numpy as np

from jaxnets import cli

POSITIVE = "a wonderful film with great acting and a moving story that i loved"
NEGATIVE = "a terrible film with awful acting and a boring story that i hated"


def _fake_data(root, per_class: int = 12):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label, text in (("pos", POSITIVE), ("neg", NEGATIVE)):
            folder = root / "imdb" / "aclImdb" / split / label
            folder.mkdir(parents=True)
            for i in range(per_class):
                words = text.split()
                rng.shuffle(words)
                (folder / f"{i}_{9 if label == 'pos' else 1}.txt").write_text(
                    f"{text}.<br />{' '.join(words)}"
                )
    return root


def test_pretrain_finetune_predict(tmp_path, capsys):
    data = _fake_data(tmp_path / "data")
    pre, fine = tmp_path / "pre", tmp_path / "fine"
    common = ["--preset", "smoke", "--data-dir", str(data), "--no-progress"]
    assert cli.main(["pretrain", "bert", "--out", str(pre), *common]) == 0
    results = json.loads((pre / "results.json").read_text())
    assert results["steps"] == 4 and np.isfinite(results["val_mlm_loss"])
    for name in ("tokenizer.json", "config.json", "mlm_loss.png", "attention.png", "model"):
        assert (pre / name).exists(), name

    args = ["finetune", "bert", "--out", str(fine), "--pretrained", str(pre), *common]
    assert cli.main([*args, "--epochs", "2"]) == 0
    results = json.loads((fine / "results.json").read_text())
    assert results["num_train"] == 17 and results["num_val"] == 7 and results["num_test"] == 24
    assert 0.0 <= results["test_accuracy"] <= 1.0 and results["epochs"] == 2
    for name in ("curves.png", "attention.png", "model", "tokenizer.json"):
        assert (fine / name).exists(), name

    capsys.readouterr()
    assert cli.main(["predict", "sentiment", POSITIVE, NEGATIVE, "--run", str(fine)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(0.0 <= float(line.split()[0]) <= 1.0 for line in lines)
