"""The shared trainer: exact masked metrics, schedules, checkpoints, and resume after a crash."""

from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from jaxnets.data.images import load_digits
from jaxnets.data.pipeline import iterate_batches, train_val_split
from jaxnets.training.metrics import Mean, classification_metrics, reduce_means
from jaxnets.training.schedules import make_schedule
from jaxnets.training.trainer import Trainer, count_params

EPOCHS, BATCH = 4, 64


# ----------------------------------------------------------------------------- metrics
def _numpy_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -log_p[np.arange(len(labels)), labels]


def test_masked_metrics_ignore_padding_and_add_up_exactly():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(10, 4)).astype(np.float32)
    labels = rng.integers(0, 4, size=10).astype(np.int32)
    ce = _numpy_cross_entropy(logits, labels)
    correct = logits.argmax(1) == labels

    # Batches of 4, the last one padded with 2 garbage rows that the mask switches off.
    batches = []
    for start in range(0, 10, 4):
        x, y = logits[start : start + 4], labels[start : start + 4]
        mask = np.arange(4) < len(x)
        x = np.concatenate([x, np.full((4 - len(x), 4), 1e3, np.float32)])
        y = np.concatenate([y, np.zeros(4 - len(y), np.int32)])
        loss, metrics = jax.jit(classification_metrics)(x, y, mask)
        np.testing.assert_allclose(loss, ce[start : start + 4].mean(), rtol=1e-5)
        batches.append(metrics)
    totals = reduce_means(batches)
    # The epoch value is the mean over the 10 real rows, not the mean of the 3 batch means.
    np.testing.assert_allclose(totals["loss"], ce.mean(), rtol=1e-5)
    assert totals["accuracy"] == pytest.approx(correct.mean())
    assert reduce_means([{"x": 1.0}, {"x": 3.0}]) == {"x": 2.0}  # plain scalars: batch means
    np.testing.assert_allclose(Mean.of(np.array([1.0, 5.0]), np.array([3.0, 1.0])), (8.0, 4.0))


def test_label_smoothing_changes_the_objective_not_the_reported_loss():
    logits = np.array([[2.0, 0.0, -1.0]], np.float32)
    labels = np.array([0], np.int32)
    metrics = jax.jit(classification_metrics, static_argnames="label_smoothing")
    plain, m_plain = metrics(logits, labels)
    smooth, m_smooth = metrics(logits, labels, label_smoothing=0.3)
    # Smoothed targets: 0.8 on the label, 0.1 elsewhere (optax.smooth_labels: (1-a) y + a/K).
    log_p = logits[0] - np.log(np.exp(logits[0].astype(np.float64)).sum())
    np.testing.assert_allclose(smooth, -(0.8 * log_p[0] + 0.1 * log_p[1] + 0.1 * log_p[2]), 1e-5)
    np.testing.assert_allclose(plain, -log_p[0], rtol=1e-5)
    np.testing.assert_allclose(m_smooth["loss"].total, m_plain["loss"].total)


# ----------------------------------------------------------------------------- schedules
def _values(schedule, total):
    """schedule(0..total) in one jitted call (eager calls would compile op by op)."""
    return np.asarray(jax.jit(jax.vmap(schedule))(np.arange(total + 1)))


def test_schedules():
    total = 100
    const = _values(make_schedule("constant", 0.1, total), total)
    np.testing.assert_allclose(const, 0.1)

    cos = _values(make_schedule("cosine", 0.1, total, warmup_steps=10), total)
    assert cos[0] == 0.0 and cos[5] == pytest.approx(0.05) and cos[10] == pytest.approx(0.1)
    # Cosine decay from the warmup's end: 0.1 * (1 + cos(pi * t / 90)) / 2, t = step - 10.
    t = np.arange(10, total + 1) - 10
    np.testing.assert_allclose(cos[10:], 0.05 * (1 + np.cos(np.pi * t / 90)), atol=1e-7)

    step = _values(make_schedule("step", 0.1, total), total)
    assert step[[49, 50, 74, 75]] == pytest.approx([0.1, 0.01, 0.01, 0.001])

    one = _values(make_schedule("onecycle", 0.4, total), total)
    assert one.argmax() == 25 and one.max() == pytest.approx(0.4)
    assert one[0] == pytest.approx(0.4 / 25) and one[-1] < 1e-4

    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        make_schedule("linear", 0.1, total)


# ----------------------------------------------------------------------------- training runs
class TinyNet(nnx.Module):
    """Dense - batch norm - relu - dropout - dense: every kind of state resume must restore."""

    def __init__(self, rngs: nnx.Rngs):
        self.fc1 = nnx.Linear(64, 32, rngs=rngs)
        self.bn = nnx.BatchNorm(32, momentum=0.9, rngs=rngs)
        self.drop = nnx.Dropout(0.3, rngs=rngs)
        self.fc2 = nnx.Linear(32, 10, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.bn(self.fc1(x.reshape(x.shape[0], -1))))
        return self.fc2(self.drop(x))


def loss_fn(model, batch, *, train):
    return classification_metrics(model(batch["image"]), batch["label"], batch["mask"])


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    return train_val_split(d.train_images, d.train_labels, 0.2, seed=0)


def _run(digits, out, *, stop_after=None, resume=False):
    x_train, y_train, x_val, y_val = digits
    schedule = make_schedule("cosine", 1e-2, EPOCHS * (len(x_train) // BATCH))
    model = TinyNet(nnx.Rngs(params=0, dropout=1))
    trainer = Trainer(
        model, optax.adam(schedule), loss_fn, out, learning_rate_fn=schedule, progress=False
    )

    def interrupt(epoch, record):
        if epoch == stop_after:
            raise Interrupted(f"killed after epoch {epoch}")

    try:
        records = trainer.fit(
            lambda epoch: iterate_batches(
                x_train, y_train, BATCH, shuffle=True, seed=0, epoch=epoch, drop_remainder=True
            ),
            EPOCHS,
            val_batches=lambda: iterate_batches(
                x_val, y_val, 100, shuffle=False, drop_remainder=False
            ),
            resume=resume,
            meta={"config": {"lr": 1e-2}},
            on_epoch_end=interrupt,
        )
    finally:
        trainer.close()
    return records, trainer


def _deterministic(records):
    return [{k: v for k, v in r.items() if "seconds" not in k} for r in records]


@pytest.fixture(scope="module")
def uninterrupted(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    records, trainer = _run(digits, out)
    return out, records, trainer


def test_a_run_learns_and_writes_its_log_and_checkpoints(digits, uninterrupted):
    out, records, trainer = uninterrupted
    assert [r["epoch"] for r in records] == list(range(1, EPOCHS + 1))
    assert records[-1]["val_accuracy"] > 0.9
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert records[-1]["step"] == trainer.step == EPOCHS * (len(digits[0]) // BATCH)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == list(range(1, EPOCHS + 1))
    assert (out / "checkpoints" / "last" / str(EPOCHS)).is_dir()
    assert count_params(trainer.model) == 64 * 32 + 32 + 2 * 32 + 32 * 10 + 10  # BN: scale, bias
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"} <= set(records[0])


def test_resume_after_a_crash_reproduces_the_uninterrupted_run(digits, uninterrupted, tmp_path):
    a_dir, a_records, a_trainer = uninterrupted
    # A stale run in the same folder (its checkpoints and log) must not leak into a fresh run.
    shutil.copytree(a_dir / "checkpoints", tmp_path / "checkpoints")
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"epoch": 7, "stale": True}) + "\n")

    with pytest.raises(Interrupted):
        _run(digits, tmp_path, stop_after=2)
    assert [r["epoch"] for r in map(json.loads, (tmp_path / "metrics.jsonl").open())] == [1, 2]
    # A crash after logging epoch 3 but before its checkpoint: resume must redo epoch 3.
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"epoch": 3, "train_loss": -1.0}) + "\n")

    records, trainer = _run(digits, tmp_path, resume=True)
    assert trainer.resumed_meta["epoch"] == 2
    assert _deterministic(records) == _deterministic(a_records)
    assert trainer.step == a_trainer.step
    # Bit for bit: parameters, batch-norm statistics, dropout RNG counters, optimizer moments.
    for ours, theirs in zip(
        jax.tree.leaves(trainer.state()), jax.tree.leaves(a_trainer.state()), strict=True
    ):
        if jax.dtypes.issubdtype(ours.dtype, jax.dtypes.prng_key):
            ours, theirs = jax.random.key_data(ours), jax.random.key_data(theirs)
        np.testing.assert_array_equal(ours, theirs)


def test_evaluate_is_exact_over_a_padded_final_batch(digits, uninterrupted):
    _, _, trainer = uninterrupted
    _, _, x_val, y_val = digits
    assert len(x_val) % 7 != 0
    got = trainer.evaluate(iterate_batches(x_val, y_val, 7, shuffle=False, drop_remainder=False))
    # Reference: all images in one call of the eval view, cross-entropy in float64 numpy.
    images = next(iterate_batches(x_val, y_val, len(x_val), shuffle=False, drop_remainder=False))
    logits = np.asarray(trainer.eval_model(images["image"]))
    np.testing.assert_allclose(got["loss"], _numpy_cross_entropy(logits, y_val).mean(), rtol=1e-5)
    assert got["accuracy"] == pytest.approx((logits.argmax(1) == y_val).mean())
    # predict drops the padded rows.
    labels = trainer.predict(
        iterate_batches(x_val, y_val, 7, shuffle=False, drop_remainder=False),
        lambda model, batch: model(batch["image"]).argmax(-1),
    )
    np.testing.assert_array_equal(labels, logits.argmax(1))


def test_restore_best_loads_the_best_validation_epoch(digits, uninterrupted):
    _, records, trainer = uninterrupted
    accuracies = [r["val_accuracy"] for r in records]
    best = int(np.argmax(accuracies)) + 1  # the first epoch reaching the maximum
    assert trainer.best_epoch == best
    assert trainer.restore("best") == best
    _, _, x_val, y_val = digits
    got = trainer.evaluate(iterate_batches(x_val, y_val, 100, shuffle=False, drop_remainder=False))
    assert got["accuracy"] == pytest.approx(accuracies[best - 1])


def test_wrt_trains_only_the_selected_variables(tmp_path):
    """A frozen body and a trained head, as when fine-tuning on a pretrained encoder."""
    model = TinyNet(nnx.Rngs(params=0, dropout=1))
    head = nnx.All(nnx.Param, nnx.PathContains("fc2"))
    trainer = Trainer(model, optax.sgd(0.1), loss_fn, tmp_path, progress=False, wrt=head)
    before = jax.tree.map(np.asarray, nnx.state(model, nnx.Param))
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.normal(size=(16, 8, 8, 1)).astype(np.float32),
        "label": rng.integers(0, 10, 16).astype(np.int32),
        "mask": np.ones(16, bool),
    }
    trainer._train_step(batch)
    after = nnx.state(model, nnx.Param)
    np.testing.assert_array_equal(after["fc1"]["kernel"][...], before["fc1"]["kernel"])
    np.testing.assert_array_equal(after["bn"]["scale"][...], before["bn"]["scale"])
    assert np.abs(after["fc2"]["kernel"][...] - before["fc2"]["kernel"]).max() > 0
    assert count_params(model, head) == 32 * 10 + 10
