"""Command-line flags shared by `jaxnets train digits|fashion-mnist|cifar10`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from experiments.images.config import DEFAULTS, ImageConfig, get_config
from jaxnets.training.precision import add_compute_dtype_argument

SCHEDULE_NAMES = ("constant", "cosine", "onecycle", "step")
MODEL_NAMES = ("fashion_cnn", "lenet5", "resnet9", "three_layer")

# flag -> config field, for flags that override a field one to one (None: keep the default).
_FIELDS = {
    "model": "model",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "optimizer": "optimizer",
    "lr": "learning_rate",
    "schedule": "schedule",
    "warmup_epochs": "warmup_epochs",
    "momentum": "momentum",
    "nesterov": "nesterov",
    "weight_decay": "weight_decay",
    "label_smoothing": "label_smoothing",
    "augment": "augment",
    "crop_padding": "crop_padding",
    "val_fraction": "val_fraction",
    "limit_train": "limit_train",
    "limit_test": "limit_test",
    "eval_checkpoint": "eval_checkpoint",
    "data_dir": "data_dir",
    "source": "source",
    "seed": "seed",
    "compute_dtype": "compute_dtype",
}


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    d: ImageConfig = DEFAULTS[name]
    add = parser.add_argument
    add("--out", default=f"runs/{name}", help=f"run folder (default: runs/{name})")
    add("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    add("--model", choices=MODEL_NAMES, help=f"network (default: {d.model})")
    add("--width", type=int, help="resnet9 base width (default: 64)")
    add("--epochs", type=int, help=f"default: {d.epochs}")
    add("--batch-size", type=int, help=f"default: {d.batch_size}")
    add(
        "--optimizer",
        help=f"sgd, sgd_momentum, rmsprop, adam, adamw or optax:<name> (default: {d.optimizer})",
    )
    add("--lr", "--learning-rate", dest="lr", type=float, help=f"default: {d.learning_rate:g}")
    add(
        "--schedule", choices=SCHEDULE_NAMES, help=f"learning-rate schedule (default: {d.schedule})"
    )
    add("--warmup-epochs", type=float, help=f"linear warmup (default: {d.warmup_epochs:g})")
    add("--momentum", type=float, help=f"for sgd_momentum / optax:sgd (default: {d.momentum})")
    add(
        "--nesterov",
        action=argparse.BooleanOptionalAction,
        help=f"optax:sgd (default: {d.nesterov})",
    )
    add("--weight-decay", type=float, help=f"L2 on kernels (default: {d.weight_decay:g})")
    add("--label-smoothing", type=float, help=f"default: {d.label_smoothing:g}")
    add(
        "--augment",
        action=argparse.BooleanOptionalAction,
        help=f"random crop + horizontal flip (default: {d.augment})",
    )
    add("--crop-padding", type=int, help=f"random-crop padding (default: {d.crop_padding})")
    add("--val-fraction", type=float, help=f"of the training images (default: {d.val_fraction:g})")
    add("--limit-train", type=int, metavar="N", help="use N training images (quick runs)")
    add("--limit-test", type=int, metavar="N", help="evaluate on N test images")
    add(
        "--eval-checkpoint",
        choices=("last", "best"),
        help=f"which model the test evaluates (default: {d.eval_checkpoint})",
    )
    add("--data-dir", help="where the dataset's files (or a prepared TFDS copy) are")
    add("--source", choices=("auto", "files", "tfds"), help="data source (default: auto)")
    add("--seed", type=int, help=f"default: {d.seed}")
    add_compute_dtype_argument(parser, d.compute_dtype)
    add("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace, name: str) -> ImageConfig:
    overrides: dict[str, Any] = {
        field: getattr(args, flag)
        for flag, field in _FIELDS.items()
        if getattr(args, flag, None) is not None
    }
    if args.width is not None:
        if overrides.get("model", DEFAULTS[name].model) != "resnet9":
            raise SystemExit("--width applies to --model resnet9 only")
        overrides["model_options"] = {**DEFAULTS[name].model_options, "width": args.width}
    return get_config(name, **overrides)


def run(args: argparse.Namespace, name: str) -> int:
    from rich.console import Console
    from rich.table import Table

    from experiments.images.train import train_and_evaluate
    from jaxnets.data.images import DatasetFormatError, DatasetNotFoundError

    console = Console()
    config = config_from_args(args, name)
    try:
        results = train_and_evaluate(
            config, args.out, resume=args.resume, progress=not args.no_progress, console=console
        )
    except (DatasetNotFoundError, DatasetFormatError) as exc:
        print(f"jaxnets train {name}: {exc}", file=sys.stderr)
        return 2

    table = Table(title=f"{config.model} on {name}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("test_accuracy", "test_loss", "val_accuracy", "val_loss"):
        if results[key] is not None:
            table.add_row(key, f"{results[key]:.4f}")
    table.add_row("epochs", str(results["epochs"]))
    table.add_row("seconds (training)", f"{results['seconds']:.1f}")
    table.add_row("trainable_params", f"{results['trainable_params']:,}")
    console.print(table)
    console.print(f"data source: {results['data_source']}")
    console.print(
        f"Wrote {args.out}/results.json, metrics.jsonl, curves.png, filters.png, "
        "predictions.png, confusion_matrix.png and checkpoints/"
    )
    return 0
