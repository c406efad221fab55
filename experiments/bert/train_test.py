"""End to end on a tiny synthetic IMDB, through the CLI: pretrain, fine-tune, predict."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jaxnets import cli
from jaxnets.data.text import read_imdb_folder
from jaxnets.experiments.bert.predict import predict

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
    assert results["epochs"] == 2
    for name in ("curves.png", "attention.png", "model", "tokenizer.json"):
        assert (fine / name).exists(), name
    # The saved model, read back by `predict`, gives the run's own test figures: its accuracy
    # exactly, its mean cross-entropy to float32 rounding (8 steps do not learn this toy set,
    # so a learning threshold would be noise; the two code paths agreeing is the check).
    texts, labels = read_imdb_folder(data / "imdb" / "aclImdb")["test"]
    p = predict(fine, texts)
    assert results["test_accuracy"] == np.mean((p > 0.5) == labels)
    cross_entropy = -np.mean(np.where(labels == 1, np.log(p), np.log1p(-p)))
    np.testing.assert_allclose(results["test_loss"], cross_entropy, rtol=1e-5)

    capsys.readouterr()
    assert cli.main(["predict", "sentiment", POSITIVE, NEGATIVE, "--run", str(fine)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    # The command prints each probability (4 decimals) and its label, as `predict` computes them.
    expected = predict(fine, [POSITIVE, NEGATIVE])
    assert [float(line.split()[0]) for line in lines] == pytest.approx(expected, abs=5e-5)
    assert [line.split()[1] for line in lines] == [
        "positive" if q > 0.5 else "negative" for q in expected
    ]


def test_pretraining_batches_depend_on_the_step_only():
    from jaxnets.experiments.bert.config import get_pretrain_config
    from jaxnets.experiments.bert.input_pipeline import eval_batches, pretrain_batches

    config = get_pretrain_config("smoke", steps=5, steps_per_epoch=2, batch_size=4)
    seqs = np.arange(10)[:, None] * np.ones((1, 3), np.int32)  # row i is all i
    epochs = [pretrain_batches(seqs, config, e) for e in (1, 2, 3)]
    assert [len(b) for b in epochs] == [2, 2, 1]  # 5 steps, the last epoch is short
    assert [int(b["seed"]) for bs in epochs for b in bs] == [0, 1, 2, 3, 4]
    first_pass = np.concatenate([b["ids"][:, 0] for b in epochs[0]])
    assert len(set(first_pass.tolist())) == 8  # two batches of a pass never repeat a row
    again = pretrain_batches(seqs, config, 2)
    assert all((a["ids"] == b["ids"]).all() for a, b in zip(again, epochs[1]))
    padded = eval_batches({"ids": seqs}, 4)
    assert len(padded) == 3 and padded[-1]["mask"].tolist() == [True, True, False, False]


def test_review_batches_are_cut_to_their_longest_review_and_cover_every_row():
    from jaxnets.experiments.bert.input_pipeline import (
        BUCKET_MULTIPLE,
        review_batches,
        review_eval_batches,
    )

    rng = np.random.default_rng(0)
    n, width = 700, 4 * BUCKET_MULTIPLE
    lengths = rng.integers(3, width + 1, n)
    pad = (np.arange(width)[None] >= lengths[:, None]).astype(np.int32)
    ids = np.where(pad == 0, 1 + np.arange(n)[:, None], 0).astype(np.int32)  # row id in ids
    arrays = {"ids": ids, "pad": pad, "label": (np.arange(n) % 2).astype(np.int32)}

    def rows(batch):
        return batch["ids"][batch["mask"].astype(bool), 0] - 1

    for bucketed in (False, True):
        epoch = review_batches(arrays, 32, seed=0, epoch=1, bucketed=bucketed)
        seen = np.concatenate([rows(b) for b in epoch])
        assert len(epoch) == n // 32 and len(set(seen.tolist())) == len(seen) == 32 * (n // 32)
        for b in epoch:
            longest = lengths[rows(b)].max()
            assert b["ids"].shape[1] == (
                -(-longest // BUCKET_MULTIPLE) * BUCKET_MULTIPLE if bucketed else width
            )
            # a cut never drops a real token
            assert (b["pad"] == 0).sum() == lengths[rows(b)].sum()
        again = review_batches(arrays, 32, seed=0, epoch=1, bucketed=bucketed)
        assert all((a["ids"] == b["ids"]).all() for a, b in zip(again, epoch))
        evaluation = review_eval_batches(arrays, 64, bucketed)
        assert sorted(np.concatenate([rows(b) for b in evaluation]).tolist()) == list(range(n))
    bucketed_widths = {b["ids"].shape[1] for b in review_batches(arrays, 32, 0, 1, True)}
    assert len(bucketed_widths) > 1  # pools sorted by length give batches of several widths


def test_presets():
    from jaxnets.experiments.bert.config import get_finetune_config, get_pretrain_config

    course = get_finetune_config("course")
    assert (course.head, course.freeze_encoder, course.optimizer) == ("gru", True, "adam")
    assert (course.learning_rate, course.epochs, course.gru_hidden) == (1e-3, 3, 16)
    assert get_finetune_config(pretrained="none").pretrained is None
    assert get_pretrain_config().max_len == 128
    with pytest.raises(ValueError, match="unknown preset"):
        get_pretrain_config("tpu")


def test_mixed_precision_pretraining_keeps_float32_parameters(tmp_path):
    import jax
    import orbax.checkpoint as ocp

    from jaxnets.experiments.bert.config import get_pretrain_config
    from jaxnets.experiments.bert.train import pretrain

    data = _fake_data(tmp_path / "data")
    config = get_pretrain_config("smoke", data_dir=str(data), compute_dtype="bfloat16")
    results = pretrain(config, tmp_path / "pre", progress=False)
    assert np.isfinite(results["val_mlm_loss"])
    assert results["val_mlm_loss"] < results["initial_val_mlm_loss"]
    with ocp.StandardCheckpointer() as checkpointer:  # no target: arrays as saved
        saved = checkpointer.restore((tmp_path / "pre" / "model").absolute())
    assert {x.dtype for x in jax.tree.leaves(saved)} == {np.dtype("float32")}
