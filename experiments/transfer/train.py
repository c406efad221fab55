"""CIFAR-10 transfer learning: a pretrained backbone, frozen or fine-tuned, under a new head.

`train_and_evaluate(config, out_dir)`:

1. the backbone's weights: a PyTorch state_dict (torchvision's ImageNet weights) or an orbax
   backbone folder; without either, it pretrains its own backbone on a source task (CIFAR-10
   classes 0-4) into OUT/pretrain/ and saves it with orbax at OUT/pretrain/backbone;
2. the target model: that backbone and a new random head (AlexNet: the 9216-4096-1024-N
   classifier; ResNet: fc), identical for every mode;
3. one run per mode, with the shared Trainer, into OUT/frozen and OUT/unfrozen: "frozen" trains
   the head only (freezing by parameter path in the optimizer, batch norm statistics kept),
   "unfrozen" everything. The validation accuracy before training is logged as epoch 0;
4. OUT/results.json (a table: accuracy, trainable parameters, time per epoch per mode) and
   OUT/curves.png (the modes side by side), optionally OUT/submission.csv.

Images are resized on the device, inside the jitted step, to the size the backbone expects, and
normalised with ImageNet's channel statistics (torchvision's), for every backbone. The data is
`input_pipeline.py`'s, the models and backbone I/O `models.py`'s.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
import time
from typing import Any

import jax
import numpy as np
from flax import nnx
from rich.console import Console

from jaxnets import nn
from jaxnets.bench.machine import load_average
from jaxnets.data.image_data import ImageData
from jaxnets.experiments.transfer.config import TransferConfig
from jaxnets.experiments.transfer.input_pipeline import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    describe_classes,
    full_test_images,
    load_transfer_data,
    resize_images,
    select_classes,
)
from jaxnets.experiments.transfer.models import (
    backbone_meta,
    create_model,
    head_pattern,
    load_backbone,
    save_backbone,
)
from jaxnets.optim import get_optimizer
from jaxnets.submission import (
    Classifier,
    predict_labels,
    write_submission,
)
from jaxnets.training import plots
from jaxnets.training.freeze import (
    freeze,
    freeze_batch_stats,
    trainable_param_count,
)
from jaxnets.training.metrics import classification_metrics
from jaxnets.training.run_dir import RunDir, read_results, resume_config
from jaxnets.training.schedules import make_schedule
from jaxnets.training.trainer import Trainer, count_params

# Settings a resumed run may change: they do not touch training.
RESUME_FREE_FIELDS = ("data_dir", "source", "limit_test", "eval_checkpoint")


# ----------------------------------------------------------------------------- losses
def transfer_loss(model: nnx.Module, batch: dict, *, train: bool, image_size: int):
    """The trainer's loss hook: resize, then masked cross-entropy and accuracy."""
    logits = model(resize_images(batch["image"], image_size))
    return classification_metrics(logits, batch["label"], batch["mask"])


def predicted_labels(model: nnx.Module, batch: dict, *, image_size: int) -> jax.Array:
    return model(resize_images(batch["image"], image_size)).argmax(-1)


# ----------------------------------------------------------------------------- one training run
def _fit(
    trainer: Trainer,
    data: ImageData,
    config: TransferConfig,
    epochs: int,
    *,
    epoch0: bool,
    resume: bool,
    console: Console,
) -> list[dict[str, Any]]:
    """trainer.fit, with the validation metrics before any training as epoch 0 (optional)."""
    batch_size = min(config.batch_size, len(data.train_images))
    val = functools.partial(data.eval_batches, "val", config.eval_batch_size)
    first = None
    if epoch0 and not (resume and any(r["epoch"] == 0 for r in trainer.run.records())):
        start = time.perf_counter()
        metrics = trainer.evaluate(val())
        first = {"epoch": 0, "step": 0, **{f"val_{k}": v for k, v in metrics.items()}}
        first.update(epoch_seconds=time.perf_counter() - start, seconds=0.0)
        console.print(
            f"epoch   0/{epochs} | val loss {first['val_loss']:.4f} acc "
            f"{first['val_accuracy']:.4f} | before training"
        )
    records = trainer.fit(
        lambda epoch: data.train_batches(
            batch_size, seed=config.seed, epoch=epoch, augment=config.augment
        ),
        epochs,
        val_batches=val,
        steps_per_epoch=data.steps_per_epoch(batch_size),
        resume=resume,
        meta={"config": config.to_dict()},
    )
    if first is not None and not any(r["epoch"] == 0 for r in records):
        trainer.run.reset_metrics()  # rewrite metrics.jsonl with epoch 0 first
        for record in [first, *records]:
            trainer.run.log(record)
    return trainer.run.records()


def _schedule(config: TransferConfig, learning_rate: float, data: ImageData, epochs: int):
    steps = data.steps_per_epoch(min(config.batch_size, len(data.train_images)))
    return make_schedule(config.schedule, learning_rate, steps * epochs)


def _optimizer(config: TransferConfig, mode: str, schedule: Any):
    trainable = head_pattern(config.backbone) if mode == "frozen" else None
    return freeze(get_optimizer(config.optimizer, schedule), trainable), trainable


def pretrain_backbone(
    config: TransferConfig,
    dataset: ImageData,
    out: pathlib.Path,
    *,
    resume: bool,
    progress: bool,
    console: Console,
) -> tuple[pathlib.Path, dict[str, Any]]:
    """Train backbone + head on the source classes of `dataset` into out/pretrain; save the
    backbone with orbax at out/pretrain/backbone. Reuses a saved backbone when resuming."""
    directory = out / "pretrain" / "backbone"
    meta_path = directory.with_suffix(".json")
    if resume and directory.is_dir() and meta_path.is_file():
        console.print(f"resume: reusing the backbone pretrained in {directory}")
        return directory, json.loads(meta_path.read_text())

    data = select_classes(dataset, config.source_classes)
    source = f"CIFAR-10 {describe_classes(data, config.source_classes)}"
    console.print(
        f"[bold]no --weights given: pretraining our own {config.backbone} backbone[/] on the "
        f"source task {source}: {len(data.train_images)} train / {len(data.val_images)} val "
        f"images at {config.resolved_image_size}x{config.resolved_image_size}, "
        f"{config.pretrain_epochs} epochs"
    )
    model = create_model(
        config.backbone, data.num_classes, config.seed + 100, config.head_hidden, config.gradients
    )
    schedule = _schedule(config, config.pretrain_learning_rate, data, config.pretrain_epochs)
    tx = get_optimizer(config.optimizer, schedule)
    loss = functools.partial(transfer_loss, image_size=config.resolved_image_size)
    run = RunDir(out / "pretrain")
    with Trainer(
        model, tx, loss, run, learning_rate_fn=schedule, console=console, progress=progress
    ) as trainer:
        records = _fit(
            trainer,
            data,
            config,
            config.pretrain_epochs,
            epoch0=False,
            resume=resume,
            console=console,
        )
        test = trainer.evaluate(data.eval_batches("test", config.eval_batch_size))
        seconds = trainer.seconds
    meta = {
        "source": source,
        "source_classes": list(config.source_classes),
        "image_size": config.resolved_image_size,
        "epochs": config.pretrain_epochs,
        "source_val_accuracy": records[-1].get("val_accuracy"),
        "source_test_accuracy": test["accuracy"],
        "seconds": seconds,
    }
    save_backbone(model, config.backbone, directory, meta)
    plots.plot_curves(records, run.file("curves.png"), title=f"{config.backbone} on {source}")
    console.print(
        f"pretrained backbone: source test accuracy {test['accuracy']:.4f} "
        f"({len(data.test_images)} images), {seconds:.0f} s; saved with orbax to {directory}"
    )
    return directory, meta


def train_mode(
    mode: str,
    initial: nnx.Module,
    config: TransferConfig,
    data: ImageData,
    out: pathlib.Path,
    *,
    resume: bool,
    progress: bool,
    console: Console,
) -> dict[str, Any]:
    """One transfer run ("frozen" or "unfrozen") from a copy of `initial` into out/<mode>."""
    model = nnx.clone(initial)
    learning_rate = config.learning_rate if mode == "frozen" else config.finetune_learning_rate
    schedule = _schedule(config, learning_rate, data, config.epochs)
    tx, trainable = _optimizer(config, mode, schedule)
    frozen_bn = freeze_batch_stats(model, trainable) if config.freeze_batch_stats else 0
    trainable_params, total_params = trainable_param_count(model, trainable), count_params(model)
    console.print(
        f"[bold]{mode}[/]: {trainable_params:,} trainable of {total_params:,} parameters"
        + (f" ({frozen_bn} batch norms keep their statistics)" if frozen_bn else "")
        + f", {config.optimizer} lr {learning_rate:g} {config.schedule}"
    )
    size = config.resolved_image_size
    run = RunDir(out / mode)
    loss = functools.partial(transfer_loss, image_size=size)
    with Trainer(
        model, tx, loss, run, learning_rate_fn=schedule, console=console, progress=progress
    ) as trainer:
        records = _fit(
            trainer, data, config, config.epochs, epoch0=True, resume=resume, console=console
        )
        evaluated = trainer.epoch
        if config.eval_checkpoint == "best":
            evaluated = trainer.restore("best") or evaluated
        test_batches = functools.partial(data.eval_batches, "test", config.eval_batch_size)
        test = trainer.evaluate(test_batches())
        best_epoch = trainer.best_epoch
    trained = [r for r in records if r["epoch"] >= 1]
    later = [r["epoch_seconds"] for r in trained[1:]] or [trained[0]["epoch_seconds"]]
    record = next(r for r in records if r["epoch"] == evaluated)
    return {
        "experiment": "transfer",
        "gradients": nn.default_gradients(config.gradients),
        "mode": mode,
        "backbone": config.backbone,
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "val_accuracy": record.get("val_accuracy"),
        "val_accuracy_epoch0": next(r for r in records if r["epoch"] == 0)["val_accuracy"],
        "train_accuracy": record.get("train_accuracy"),
        "trainable_params": trainable_params,
        "total_params": total_params,
        # The first epoch includes jit compilation: the mean of the later ones is the rate.
        "seconds_per_epoch": float(np.mean(later)),
        "first_epoch_seconds": trained[0]["epoch_seconds"],
        "epochs": len(trained),
        "evaluated_epoch": evaluated,
        "best_epoch": best_epoch,
        "learning_rate": learning_rate,
        "records": records,
    }


# ----------------------------------------------------------------------------- the experiment
def train_and_evaluate(
    config: TransferConfig,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    submission: bool = False,
    console: Console | None = None,
) -> dict[str, Any]:
    """Pretrain (if no weights), transfer in each mode, write OUT/results.json and curves.png.

    resume: continue the run in out_dir with its own settings; overwrite: replace it."""
    config.validate()
    console = console or Console()
    started, load_start = time.perf_counter(), _load_average_1min()
    run = RunDir(out_dir).claim(
        "train transfer", config.to_dict(), resume=resume, overwrite=overwrite
    )
    config = resume_config(config, run.stored, RESUME_FREE_FIELDS, say=console.print)
    out = run.path
    if config.image_size is None and config.weights and pathlib.Path(config.weights).is_dir():
        meta = backbone_meta(pathlib.Path(config.weights))
        config = dataclasses.replace(config, image_size=meta.get("image_size"))
    size = config.resolved_image_size
    data = load_transfer_data(config)
    run.start()
    console.print(f"[bold]data source:[/] {data.source}")
    target = config.resolved_target_classes(data.num_classes)
    dataset_classes = list(data.class_names)

    pretrain = None
    if config.pretrain_here:
        directory, pretrain = pretrain_backbone(
            config, data, out, resume=resume, progress=progress, console=console
        )
        config = dataclasses.replace(config, weights=str(directory))
    # From here on the config names what was used: the weights, the size, the classes.
    config = dataclasses.replace(config, image_size=size, target_classes=target)
    data = select_classes(data, target)
    console.print(
        f"target task: CIFAR-10 {describe_classes(data, target)}: {len(data.train_images)} "
        f"train / {len(data.val_images)} val / {len(data.test_images)} test images, resized "
        f"32 -> {size} px on {jax.devices()[0].platform}"
    )

    initial = create_model(
        config.backbone, data.num_classes, config.seed, config.head_hidden, config.gradients
    )
    weights = load_backbone(initial, config)
    console.print(f"backbone: {weights}")
    runs = {
        mode: train_mode(
            mode, initial, config, data, out, resume=resume, progress=progress, console=console
        )
        for mode in config.modes
    }
    for mode, result in runs.items():
        per_mode = {k: v for k, v in result.items() if k != "records"}
        per_mode.update(
            config=config.to_dict(),
            class_ids=list(target),
            class_names=data.class_names,
            image_size=size,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            num_classes_dataset=len(dataset_classes),
        )
        RunDir(out / mode).write_results(per_mode)

    table = [
        {
            "mode": mode,
            **{
                k: r[k]
                for k in (
                    "test_accuracy",
                    "val_accuracy",
                    "val_accuracy_epoch0",
                    "trainable_params",
                    "total_params",
                    "seconds_per_epoch",
                    "first_epoch_seconds",
                    "epochs",
                )
            },
        }
        for mode, r in runs.items()
    ]
    best_mode = max(runs, key=lambda m: runs[m]["val_accuracy"] or 0.0)
    results = {
        "experiment": "transfer",
        "gradients": nn.default_gradients(config.gradients),
        "backbone": config.backbone,
        "weights": weights,
        "pretrained_here": pretrain is not None,
        "pretrain": pretrain,
        "image_size": size,
        "target_classes": list(target),
        "target_class_names": data.class_names,
        "num_train": len(data.train_images),
        "num_val": len(data.val_images),
        "num_test": len(data.test_images),
        "data_source": data.source,
        "table": table,
        "best_mode": best_mode,
        "test_accuracy": runs[best_mode]["test_accuracy"],
        "device": jax.devices()[0].device_kind,
        "cpu_count": os.cpu_count(),
        "load_average_1min": [load_start, _load_average_1min()],
        "wall_seconds": time.perf_counter() - started,
        "config": config.to_dict(),
    }
    _plot(runs, out / "curves.png", f"{config.backbone} transfer to {', '.join(data.class_names)}")
    if submission:
        classifier = load_classifier(out / best_mode)
        splits_images = full_test_images(config)
        labels = classifier.predict(splits_images)
        path = write_submission(labels, out / "submission.csv")
        results["submission"] = {"path": str(path), "mode": best_mode, "count": len(labels)}
        console.print(f"wrote {path} ({len(labels)} test images, the {best_mode} model)")
    run.finish(results)
    return results


def _plot(runs: dict[str, dict[str, Any]], path: pathlib.Path, title: str) -> None:
    """Both modes in one figure: accuracy (from epoch 0) and loss per epoch."""
    merged: dict[int, dict[str, Any]] = {}
    for mode, result in runs.items():
        for r in result["records"]:
            row = merged.setdefault(r["epoch"], {"epoch": r["epoch"]})
            row.update({f"{mode} {k}": v for k, v in r.items() if k.startswith(("train_", "val_"))})
    panels = {
        metric: [f"{mode} {split}_{metric}" for mode in runs for split in ("val", "train")]
        for metric in ("accuracy", "loss")
    }
    plots.plot_curves([merged[e] for e in sorted(merged)], path, panels=panels, title=title)


# ----------------------------------------------------------------------------- submissions
def load_classifier(
    run_dir: str | os.PathLike, *, checkpoint: str | None = None, data_dir: str | None = None
) -> Classifier:
    """Rebuild a transfer run's classifier from its checkpoint. `run_dir` is OUT/<mode>, or OUT
    (then the mode with the best validation accuracy). `data_dir` is not needed: the run
    recorded its normalisation."""
    del data_dir
    run_dir = pathlib.Path(run_dir)
    results = read_results(run_dir)
    if "mode" not in results:  # the experiment's folder: go to its best run
        run_dir = run_dir / results["best_mode"]
        results = read_results(run_dir)
    config = _config_from_json(results["config"])
    class_ids = np.asarray(results["class_ids"])
    size = int(results["image_size"])
    model = create_model(
        config.backbone, len(class_ids), config.seed, config.head_hidden, config.gradients
    )
    schedule = make_schedule(config.schedule, 1e-3, 1)
    tx, _ = _optimizer(config, results["mode"], schedule)
    loss = functools.partial(transfer_loss, image_size=size)
    with Trainer(model, tx, loss, run_dir, progress=False) as trainer:
        epoch = trainer.restore(checkpoint or config.eval_checkpoint, required=True)
    mean, std = np.asarray(results["mean"], np.float32), np.asarray(results["std"], np.float32)

    def predict(images: np.ndarray) -> np.ndarray:
        transform = functools.partial(resize_images, size=size)
        indices = predict_labels(model, images, mean=mean, std=std, transform=transform)
        return class_ids[indices]  # the dataset's label ids, not the head's indices

    description = (
        f"{config.backbone} {results['mode']} transfer ({run_dir}, epoch {epoch}), predicting "
        f"CIFAR-10 classes {', '.join(map(str, class_ids))}"
    )
    return Classifier(predict, "cifar10", description)


def _config_from_json(values: dict[str, Any]) -> TransferConfig:
    tuples = ("modes", "head_hidden", "source_classes", "target_classes")
    fields = {f.name for f in dataclasses.fields(TransferConfig)}
    values = {k: (tuple(v) if k in tuples and v is not None else v) for k, v in values.items()}
    return TransferConfig(**{k: v for k, v in values.items() if k in fields})


def _load_average_1min() -> float | None:
    load = load_average()
    return None if load is None else load[0]
