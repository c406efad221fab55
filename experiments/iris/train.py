"""Train the two-layer net on Iris for several (learning rate, hidden size) settings.

The network is built from `manual_vjp` layers, so `jax.grad` runs the hand-derived backward;
the optimizer is the hand-written SGD with momentum from `jaxnets.optim`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnets import nn, optim
from jaxnets.errors import TrainingDiverged
from jaxnets.experiments.iris.config import IrisConfig
from jaxnets.experiments.iris.input_pipeline import IrisSplits, load_splits
from jaxnets.models.two_layer import (
    init_two_layer,
    two_layer_loss,
    two_layer_plain_loss,
    two_layer_scores,
)
from jaxnets.training.metrics import loss_diverged
from jaxnets.training.plots import plot_curves
from jaxnets.training.run_dir import RunDir


@jax.jit
def _loss_and_accuracy(params, x, y) -> tuple[jax.Array, jax.Array]:
    scores = two_layer_scores(params, x)
    loss = optax.softmax_cross_entropy_with_integer_labels(scores, y).mean()
    return loss, (scores.argmax(-1) == y).mean()


def _evaluate(params, x, y) -> tuple[float, float]:
    return tuple(float(v) for v in _loss_and_accuracy(params, x, y))


def train_one_setting(
    splits: IrisSplits, config: IrisConfig, learning_rate: float, hidden: int
) -> tuple[Any, list[dict[str, float]]]:
    """Train one setting; returns the final parameters and per-epoch metrics.

    All epochs run inside one jitted `lax.scan`, so a setting costs one compilation.
    """
    num_classes = len(splits.class_names)
    init_key, shuffle_key = jax.random.split(jax.random.key(config.seed))
    params = init_two_layer(init_key, splits.x_train.shape[1], hidden, num_classes)
    tx = optim.sgd_momentum(learning_rate, config.momentum, clip_norm=config.clip_norm)

    # The hand-derived backward (manual_vjp layers), or jax.grad of the same plain forwards.
    manual = nn.default_gradients(config.gradients) == "manual"
    loss = two_layer_loss if manual else two_layer_plain_loss
    n, bs = len(splits.x_train), config.batch_size
    num_batches = -(-n // bs)
    x_train, y_train = jnp.asarray(splits.x_train), jnp.asarray(splits.y_train)

    def batch_step(carry, batch_index):
        params, opt_state, order = carry
        slots = batch_index * bs + jnp.arange(bs)
        valid = slots < n  # the last batch is partial: its padding slots get zero weight
        idx = order[jnp.minimum(slots, n - 1)]
        # Target rows one_hot * valid * bs / n_valid make the loss the mean over real rows
        # only; the hand-derived cross-entropy backward takes such soft targets as they are.
        weight = valid * bs / valid.sum()
        targets = jax.nn.one_hot(y_train[idx], num_classes) * weight[:, None]
        grads = jax.grad(loss)(params, x_train[idx], targets, config.reg)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, order), None

    def epoch_step(carry, epoch):
        params, opt_state = carry
        order = jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), n)
        (params, opt_state, _), _ = jax.lax.scan(
            batch_step, (params, opt_state, order), jnp.arange(num_batches)
        )
        metrics = (
            *_loss_and_accuracy(params, x_train, y_train),
            *_loss_and_accuracy(params, splits.x_val, splits.y_val),
        )
        return (params, opt_state), metrics

    @jax.jit
    def run(params):
        carry = (params, tx.init(params))
        (params, _), metrics = jax.lax.scan(epoch_step, carry, jnp.arange(1, config.epochs + 1))
        return params, metrics

    params, metrics = run(params)
    names = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
    columns = [np.asarray(m).tolist() for m in metrics]
    history = [
        {"epoch": epoch, **{k: col[epoch - 1] for k, col in zip(names, columns)}}
        for epoch in range(1, config.epochs + 1)
    ]
    return params, history


def train_and_evaluate(
    config: IrisConfig, out_dir: str | os.PathLike, *, overwrite: bool = False
) -> dict[str, Any]:
    """Run every setting, write metrics, plots and results.json, return the results.

    overwrite: replace an Iris run already in out_dir (else such a folder is refused)."""
    run = RunDir(out_dir).claim(
        "train iris", dataclasses.asdict(config), overwrite=overwrite, resumable=False
    )
    splits = load_splits(config.val_fraction, config.test_fraction, config.seed)
    # All settings train before anything is written: a diverging one leaves no folder behind.
    trained = []
    for learning_rate, hidden in config.settings:
        start = time.perf_counter()
        params, history = train_one_setting(splits, config, learning_rate, hidden)
        for record in history:
            if loss_diverged(record["train_loss"]):
                raise TrainingDiverged(
                    f"setting lr={learning_rate:g} hidden={hidden} diverged in epoch "
                    f"{record['epoch']}: the training loss is {record['train_loss']:.3g}. Try a "
                    "lower learning rate (--setting LR:HIDDEN)"
                )
        trained.append((learning_rate, hidden, params, history, time.perf_counter() - start))
    run.start()
    rows, curves = [], {}
    for learning_rate, hidden, params, history, seconds in trained:
        name = f"lr={learning_rate:g} hidden={hidden}"
        for record in history:
            run.log({"setting": name, **record})
        test_loss, test_acc = _evaluate(params, splits.x_test, splits.y_test)
        rows.append(
            {
                "setting": name,
                "learning_rate": learning_rate,
                "hidden_dim": hidden,
                "val_loss": history[-1]["val_loss"],
                "val_accuracy": history[-1]["val_accuracy"],
                "test_loss": test_loss,
                "test_accuracy": test_acc,
                "seconds": seconds,
            }
        )
        curves[name] = history

    # Model selection on validation only (accuracy, then loss); the test set just reports.
    best = max(rows, key=lambda r: (r["val_accuracy"], -r["val_loss"]))
    results = {
        "experiment": "iris",
        "gradients": nn.default_gradients(config.gradients),
        "test_accuracy": best["test_accuracy"],
        "test_loss": best["test_loss"],
        "val_accuracy": best["val_accuracy"],
        "val_loss": best["val_loss"],
        "best_setting": best["setting"],
        "settings": rows,
        "num_train": len(splits.x_train),
        "num_val": len(splits.x_val),
        "num_test": len(splits.x_test),
        "config": dataclasses.asdict(config),
    }
    _plot(curves, run)
    run.finish(results)
    return results


def _plot(curves: dict[str, list[dict[str, float]]], run: RunDir) -> None:
    """Every setting's training and validation curves, one panel per metric."""
    by_epoch: dict[int, dict[str, float]] = {}
    for name, history in curves.items():
        for record in history:
            row = by_epoch.setdefault(record["epoch"], {"epoch": record["epoch"]})
            row.update({f"{name} {k}": v for k, v in record.items() if k != "epoch"})
    panels = {
        metric: [f"{name} {split}_{metric}" for name in curves for split in ("train", "val")]
        for metric in ("loss", "accuracy")
    }
    plot_curves(
        [by_epoch[e] for e in sorted(by_epoch)],
        run.file("curves.png"),
        panels=panels,
        title="Two-layer net on Iris (hand-derived gradients, SGD momentum)",
    )
