"""Command-line flags shared by `jaxnets train digits|fashion-mnist|cifar10|images`."""

from __future__ import annotations

import argparse

from jaxnets.errors import ConfigError
from jaxnets.experiments.images.config import DEFAULTS, ImageConfig, get_config
from jaxnets.flags import (
    add_gradients_argument,
    add_run_folder_arguments,
    config_overrides,
    fraction,
    non_negative_float,
    non_negative_int,
    optimizer_name,
    positive_float,
    positive_int,
    unit_fraction,
)
from jaxnets.training.precision import add_compute_dtype_argument

SCHEDULE_NAMES = ("constant", "cosine", "onecycle", "step")
MODEL_NAMES = ("fashion_cnn", "lenet5", "resnet9", "three_layer")


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    d: ImageConfig = DEFAULTS[name]
    add = parser.add_argument
    add_run_folder_arguments(parser, f"runs/{name}")
    add("--model", choices=MODEL_NAMES, help=f"network (default: {d.model})")
    add("--width", type=positive_int, help="resnet9 base width (default: 64)")
    add("--epochs", type=positive_int, help=f"default: {d.epochs}")
    add("--batch-size", type=positive_int, help=f"default: {d.batch_size}")
    add(
        "--optimizer",
        type=optimizer_name,
        help=f"sgd, sgd_momentum, rmsprop, adam, adamw or optax:<name> (default: {d.optimizer})",
    )
    add(
        "--lr",
        "--learning-rate",
        dest="learning_rate",
        type=positive_float,
        help=f"default: {d.learning_rate:g}",
    )
    add(
        "--schedule", choices=SCHEDULE_NAMES, help=f"learning-rate schedule (default: {d.schedule})"
    )
    add(
        "--warmup-epochs",
        type=non_negative_float,
        help=f"linear warmup (default: {d.warmup_epochs:g})",
    )
    add(
        "--momentum",
        type=unit_fraction,
        help=f"for sgd_momentum / optax:sgd (default: {d.momentum})",
    )
    add(
        "--nesterov",
        action=argparse.BooleanOptionalAction,
        help=f"optax:sgd (default: {d.nesterov})",
    )
    add(
        "--weight-decay",
        type=non_negative_float,
        help=f"L2 on kernels (default: {d.weight_decay:g})",
    )
    add("--label-smoothing", type=unit_fraction, help=f"default: {d.label_smoothing:g}")
    add(
        "--augment",
        action=argparse.BooleanOptionalAction,
        help=f"random crop + horizontal flip (default: {d.augment})",
    )
    add(
        "--crop-padding",
        type=non_negative_int,
        help=f"random-crop padding (default: {d.crop_padding})",
    )
    add(
        "--val-fraction",
        type=fraction,
        help=f"of the training images (default: {d.val_fraction:g})",
    )
    add("--limit-train", type=positive_int, metavar="N", help="use N training images (quick runs)")
    add("--limit-test", type=positive_int, metavar="N", help="evaluate on N test images")
    add(
        "--eval-checkpoint",
        choices=("last", "best"),
        help=f"which model the test evaluates (default: {d.eval_checkpoint})",
    )
    if name == "images":
        add(
            "--data-dir",
            required=True,
            metavar="FOLDER",
            help="the image folder: FOLDER/train/<class>/* and FOLDER/test/<class>/* "
            "PNG/JPEG files (or a .tar/.tar.gz of such a folder); class names are the folder "
            "names, sorted",
        )
        add(
            "--image-size",
            type=positive_int,
            metavar="N",
            help="resize every image to NxN (needed when the images differ in size)",
        )
    else:
        add("--data-dir", help="where the dataset's files (or a prepared TFDS copy) are")
        add("--source", choices=("auto", "files", "tfds"), help="data source (default: auto)")
    add("--seed", type=non_negative_int, help=f"default: {d.seed}")
    add_compute_dtype_argument(parser, d.compute_dtype)
    add_gradients_argument(parser)
    add("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace, name: str) -> ImageConfig:
    overrides = config_overrides(args, ImageConfig)
    model = overrides.get("model", DEFAULTS[name].model)
    if model != DEFAULTS[name].model:
        overrides["model_options"] = {}  # the preset's options are for its own model
    if args.width is not None:
        if model != "resnet9":
            raise ConfigError("--width applies to --model resnet9 only")
        options = overrides.get("model_options", DEFAULTS[name].model_options)
        overrides["model_options"] = {**options, "width": args.width}
    return get_config(name, **overrides)


def run(args: argparse.Namespace, name: str) -> int:
    from rich.console import Console
    from rich.table import Table

    from jaxnets.experiments.images.train import train_and_evaluate

    console = Console()
    config = config_from_args(args, name)
    results = train_and_evaluate(
        config,
        args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        console=console,
    )

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
