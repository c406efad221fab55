"""Train and evaluate a CNN on an image dataset: the library side of `jaxnets train digits|...`.

`train_and_evaluate(config, out_dir)` loads the data (saying which source it used), trains with
the shared `Trainer`, evaluates on the test split and writes into `out_dir`: results.json,
metrics.jsonl, curves.png, filters.png, predictions.png, confusion_matrix.png and checkpoints/.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import time
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx
from rich.console import Console
from sklearn.metrics import confusion_matrix

from jaxnets import nn
from jaxnets.errors import ConfigError
from jaxnets.experiments.images.config import ImageConfig
from jaxnets.experiments.images.input_pipeline import ImageData, load_data
from jaxnets.init import create_module
from jaxnets.models.cnn import create_model, first_layer_filters
from jaxnets.optim import get_optimizer
from jaxnets.submission import Classifier, predict_labels
from jaxnets.training import plots
from jaxnets.training.metrics import classification_metrics
from jaxnets.training.precision import set_compute_dtype
from jaxnets.training.run_dir import RunDir, read_results, resume_config
from jaxnets.training.schedules import make_schedule
from jaxnets.training.trainer import EpochCallback, Trainer, count_params

# Settings a resumed run may change: they do not touch training (where the files are, which
# checkpoint and how much of the test set is scored).
RESUME_FREE_FIELDS = ("data_dir", "source", "eval_batch_size", "limit_test", "eval_checkpoint")


def classification_loss(
    model: nnx.Module, batch: dict, *, train: bool, label_smoothing: float = 0.0
):
    """The trainer's loss hook: masked cross-entropy and accuracy of the model's logits."""
    logits = model(batch["image"])
    smoothing = label_smoothing if train else 0.0
    return classification_metrics(logits, batch["label"], batch["mask"], label_smoothing=smoothing)


def predicted_labels(model: nnx.Module, batch: dict) -> jax.Array:
    return model(batch["image"]).argmax(-1)


def build_model(config: ImageConfig, data: ImageData) -> nnx.Module:
    """The model, initialised in one jitted call (`jaxnets.init.create_module`)."""

    def create() -> nnx.Module:
        rngs = nnx.Rngs(params=config.seed, dropout=config.seed + 1)
        return create_model(
            config.model, data.image_shape, data.num_classes, rngs=rngs, **config.model_options
        )

    model = create_module(create)
    nn.set_gradients(model, nn.default_gradients(config.gradients))
    return set_compute_dtype(model, config.compute_dtype)


def build_optimizer(config: ImageConfig, schedule: optax.Schedule) -> optax.GradientTransformation:
    """get_optimizer(config.optimizer) on the schedule, with L2 weight decay on kernels."""
    options: dict[str, Any] = {}
    if config.momentum is not None:
        options["momentum"] = config.momentum
    if config.nesterov:
        options["nesterov"] = True
    decoupled = config.optimizer in ("adamw", "optax:adamw")
    if decoupled:
        options["weight_decay"] = config.weight_decay
    tx = get_optimizer(config.optimizer, schedule, **options)
    if config.weight_decay and not decoupled:
        # grad + wd * w before the optimizer, as PyTorch's SGD weight_decay; only on kernels
        # (ndim > 1), not on biases and batch-norm scales.
        kernels = functools.partial(jax.tree.map, lambda p: p.ndim > 1)
        tx = optax.chain(optax.add_decayed_weights(config.weight_decay, mask=kernels), tx)
    return tx


def make_trainer(
    config: ImageConfig,
    data: ImageData,
    run: RunDir | str | os.PathLike,
    *,
    console: Console,
    progress: bool = True,
) -> tuple[Trainer, int]:
    """The run's model, schedule, optimizer and `Trainer` on `data`, and its batch size (the
    config's, or the training set's size when that is smaller). `jaxnets bench train` times
    the epochs of this same trainer."""
    batch_size = min(config.batch_size, len(data.train_images))
    if batch_size < config.batch_size:
        console.print(
            f"batch size {config.batch_size} > {len(data.train_images)} images: using {batch_size}"
        )
    steps = data.steps_per_epoch(batch_size)
    schedule = make_schedule(
        config.schedule,
        config.learning_rate,
        steps * config.epochs,
        warmup_steps=round(config.warmup_epochs * steps),
    )
    model = build_model(config, data)
    console.print(
        f"model {config.model} ({count_params(model):,} trainable parameters), "
        f"{config.optimizer} lr {config.learning_rate:g} {config.schedule}, batch {batch_size}, "
        f"{config.epochs} epochs of {steps} steps, on {jax.devices()[0].platform}, "
        f"{nn.gradients_of(model)} gradients"
    )
    loss_fn = functools.partial(classification_loss, label_smoothing=config.label_smoothing)
    tx = build_optimizer(config, schedule)
    trainer = Trainer(
        model, tx, loss_fn, run, learning_rate_fn=schedule, console=console, progress=progress
    )
    return trainer, batch_size


def train_batches(config: ImageConfig, data: ImageData, batch_size: int, epoch: int):
    """The training batches of `epoch` (shuffled, augmented as the config says, prefetched)."""
    return data.train_batches(
        batch_size,
        seed=config.seed,
        epoch=epoch,
        augment=config.augment,
        crop_padding=config.crop_padding,
    )


def train_and_evaluate(
    config: ImageConfig,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    console: Console | None = None,
    on_epoch_end: EpochCallback | None = None,
) -> dict[str, Any]:
    """Train per `config`, write the run folder, return the results (also in results.json).

    resume: continue out_dir's run from its last checkpoint, with that run's settings (those
        of `config` that would change its training are ignored, and named): the same final
        result as an uninterrupted run.
    overwrite: delete a run already in out_dir first (else such a folder is refused).
    on_epoch_end(epoch, record): a hook after each checkpointed epoch (tests interrupt here).
    """
    if config.epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {config.epochs}")
    if config.eval_checkpoint not in ("last", "best"):
        raise ConfigError(
            f"eval_checkpoint must be 'last' or 'best', got {config.eval_checkpoint!r}"
        )
    console = console or Console()
    started = time.perf_counter()
    run = RunDir(out_dir).claim(
        f"train {config.dataset}", config.to_dict(), resume=resume, overwrite=overwrite
    )
    config = resume_config(config, run.stored, RESUME_FREE_FIELDS, say=console.print)
    data = load_data(config)
    run.start()
    console.print(f"[bold]data source:[/] {data.source}")
    console.print(data.describe())

    trainer, batch_size = make_trainer(config, data, run, console=console, progress=progress)
    model, steps = trainer.model, data.steps_per_epoch(batch_size)
    params = count_params(model)
    with trainer:
        records = trainer.fit(
            lambda epoch: train_batches(config, data, batch_size, epoch),
            config.epochs,
            val_batches=lambda: data.eval_batches("val", config.eval_batch_size),
            steps_per_epoch=steps,
            resume=resume,
            meta={"config": config.to_dict()},
            on_epoch_end=on_epoch_end,
        )
        evaluated = trainer.epoch
        if config.eval_checkpoint == "best":
            evaluated = trainer.restore("best") or evaluated
        test = trainer.evaluate(data.eval_batches("test", config.eval_batch_size))
        predictions = trainer.predict(
            data.eval_batches("test", config.eval_batch_size), predicted_labels
        )
        seconds = trainer.seconds

    record = next(r for r in records if r["epoch"] == evaluated)
    matrix = confusion_matrix(data.test_labels, predictions, labels=range(data.num_classes))
    results = {
        "experiment": config.dataset,
        "model": config.model,
        "gradients": nn.gradients_of(model),
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "val_accuracy": record.get("val_accuracy"),
        "val_loss": record.get("val_loss"),
        "train_accuracy": record["train_accuracy"],
        "train_loss": record["train_loss"],
        "epochs": trainer.epoch,
        "evaluated_epoch": evaluated,
        "best_epoch": trainer.best_epoch,
        "seconds": seconds,
        "wall_seconds": time.perf_counter() - started,
        "data_source": data.source,
        "trainable_params": params,
        "num_train": len(data.train_images),
        "num_val": len(data.val_images),
        "num_test": len(data.test_images),
        "batch_size": batch_size,
        "device": jax.devices()[0].device_kind,
        "resumed": trainer.resumed_meta is not None,
        "confusion_matrix": matrix,
        "class_names": data.class_names,
        "config": config.to_dict(),
    }
    _write_figures(run, config, data, records, model, predictions, matrix)
    run.finish(results)
    return results


def _write_figures(
    run: RunDir,
    config: ImageConfig,
    data: ImageData,
    records: list[dict[str, Any]],
    model: nnx.Module,
    predictions: np.ndarray,
    matrix: np.ndarray,
) -> None:
    title = f"{config.model} on {data.name}"
    plots.plot_curves(records, run.file("curves.png"), title=title)
    plots.save_filter_grid(
        first_layer_filters(model), run.file("filters.png"), title=f"{title}: first-layer filters"
    )
    n = min(16, len(data.test_images))
    plots.save_prediction_grid(
        data.test_images[:n],
        data.test_labels[:n],
        predictions[:n],
        data.class_names,
        run.file("predictions.png"),
    )
    plots.plot_confusion_matrix(
        matrix, data.class_names, run.file("confusion_matrix.png"), title=f"{title} (test)"
    )


# ----------------------------------------------------------------------------- submissions
def load_classifier(
    run_dir: str | os.PathLike, *, checkpoint: str | None = None, data_dir: str | None = None
) -> Classifier:
    """Rebuild a digits / fashion-mnist / cifar10 / images run's classifier from its checkpoint
    ("best"/"last"; default: the one its test numbers came from). The training split's
    statistics normalise the test images, so the data is loaded again (from `data_dir`, else
    where the run found it)."""
    run_dir = pathlib.Path(run_dir)
    config = ImageConfig(**read_results(run_dir)["config"])
    if data_dir is not None:
        config = dataclasses.replace(config, data_dir=data_dir)
    data = load_data(config)
    model = build_model(config, data)
    tx = build_optimizer(config, make_schedule(config.schedule, config.learning_rate, 1))
    with Trainer(model, tx, classification_loss, run_dir, progress=False) as trainer:
        epoch = trainer.restore(checkpoint or config.eval_checkpoint, required=True)

    def predict(images: np.ndarray) -> np.ndarray:
        return predict_labels(model, images, mean=data.mean, std=data.std)

    return Classifier(predict, config.dataset, f"{config.model} on {config.dataset}, epoch {epoch}")
