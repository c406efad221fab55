"""`jaxnets train transfer`: command-line flags and the printed comparison table."""

from __future__ import annotations

import argparse

from jaxnets.errors import ConfigError
from jaxnets.experiments.transfer.config import (
    BACKBONES,
    CPU_SIZE,
    IMAGENET_SIZE,
    MODES,
    TransferConfig,
)
from jaxnets.flags import (
    add_gradients_argument,
    add_run_folder_arguments,
    config_overrides,
    fraction,
    non_negative_int,
    optimizer_name,
    positive_float,
    positive_int,
)


def _classes(text: str) -> tuple[int, ...]:
    """ "0-4" or "5,7,9" -> a tuple of class ids."""
    try:
        if "-" in text:
            lo, hi = text.split("-")
            return tuple(range(int(lo), int(hi) + 1))
        return tuple(int(c) for c in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected classes like 0-4 or 5,7,9: {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = TransferConfig()
    add = parser.add_argument
    add_run_folder_arguments(parser, "runs/transfer")
    add_gradients_argument(parser)
    add("--backbone", choices=BACKBONES, help=f"default: {d.backbone}")
    add(
        "--weights",
        metavar="FILE|DIR",
        help="torchvision ImageNet state_dict (.pth/.pt/.safetensors) or an orbax backbone "
        "folder of an earlier run (OUT/pretrain/backbone); without it the experiment pretrains "
        "its own backbone on CIFAR-10 --source-classes first",
    )
    add(
        "--image-size",
        type=positive_int,
        help=f"inputs are resized to this (default: {IMAGENET_SIZE} with a state_dict file, "
        f"{CPU_SIZE} otherwise)",
    )
    add(
        "--head-hidden",
        type=lambda t: tuple(int(v) for v in t.split(",")),
        help="AlexNet's new classifier widths, e.g. 4096,1024 (the course's head, the default)",
    )
    add("--modes", help=f"comma-separated subset of {','.join(MODES)} (default: both)")
    add("--epochs", type=positive_int, help=f"transfer epochs per mode (default: {d.epochs})")
    add("--batch-size", type=positive_int, help=f"default: {d.batch_size}")
    add(
        "--optimizer",
        type=optimizer_name,
        help=f"a jaxnets.optim name or optax:<name> (default: {d.optimizer})",
    )
    add(
        "--lr",
        dest="learning_rate",
        type=positive_float,
        help=f"frozen run (default: {d.learning_rate:g})",
    )
    add(
        "--finetune-lr",
        dest="finetune_learning_rate",
        type=positive_float,
        help=f"unfrozen run (default: {d.finetune_learning_rate:g})",
    )
    add("--schedule", choices=("constant", "cosine", "onecycle", "step"), help="default: cosine")
    add("--augment", action=argparse.BooleanOptionalAction, help="crop + flip (default: on)")
    add(
        "--adapt-bn-stats",
        action="store_true",
        help="frozen run: let batch norm update its running statistics (PyTorch's behaviour "
        "with requires_grad=False in train mode); by default they stay the source's",
    )
    add("--source-classes", type=_classes, help="self-pretraining task (default: 0-4)")
    add(
        "--target-classes",
        type=_classes,
        help="transfer task (default: the classes outside the source when pretraining here, "
        "all 10 with --weights)",
    )
    add("--pretrain-epochs", type=positive_int, help=f"default: {d.pretrain_epochs}")
    add(
        "--pretrain-lr",
        dest="pretrain_learning_rate",
        type=positive_float,
        help=f"default: {d.pretrain_learning_rate:g}",
    )
    add(
        "--val-fraction",
        type=fraction,
        help=f"of the training images (default: {d.val_fraction:g})",
    )
    add("--limit-train", type=positive_int, metavar="N", help="use N training images (quick runs)")
    add("--limit-test", type=positive_int, metavar="N", help="evaluate on N test images")
    add("--eval-checkpoint", choices=("last", "best"), help="default: best (by val accuracy)")
    add("--data-dir", help="CIFAR-10 folder (python batches or .npz files)")
    add("--source", choices=("auto", "files", "tfds"), help="data source (default: auto)")
    add("--seed", type=non_negative_int)
    add(
        "--submission",
        action="store_true",
        help="also write OUT/submission.csv (Id, Category) for the test images, from the mode "
        "with the best validation accuracy",
    )
    add("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> TransferConfig:
    from jaxnets.experiments.transfer.config import get_config

    overrides = config_overrides(args, TransferConfig)
    if args.modes:
        overrides["modes"] = tuple(m.strip() for m in args.modes.split(","))
    if args.source_classes:
        overrides["source_classes"] = args.source_classes
    if args.target_classes:
        overrides["target_classes"] = args.target_classes
    if args.adapt_bn_stats:
        overrides["freeze_batch_stats"] = False
    try:
        return get_config(**overrides)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from jaxnets.experiments.transfer.train import train_and_evaluate

    console = Console()
    config = config_from_args(args)
    results = train_and_evaluate(
        config,
        args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        submission=args.submission,
        console=console,
    )

    size = results["image_size"]
    table = Table(
        title=f"{config.backbone} transfer to {', '.join(results['target_class_names'])} "
        f"({size}x{size} px)"
    )
    for column in ("mode", "test acc", "val acc", "val acc epoch 0", "trainable params"):
        table.add_column(column, justify="left" if column == "mode" else "right")
    table.add_column("s / epoch", justify="right")
    for row in results["table"]:
        table.add_row(
            row["mode"],
            f"{row['test_accuracy']:.4f}",
            f"{row['val_accuracy']:.4f}",
            f"{row['val_accuracy_epoch0']:.4f}",
            f"{row['trainable_params']:,} / {row['total_params']:,}",
            f"{row['seconds_per_epoch']:.1f}",
        )
    console.print(table)
    if results["pretrained_here"]:
        p = results["pretrain"]
        console.print(
            f"backbone pretrained here ({p['epochs']} epochs, source test accuracy "
            f"{p['source_test_accuracy']:.4f}): {results['weights']}"
        )
    else:
        console.print(f"backbone: {results['weights']}")
    console.print(
        f"Wrote {args.out}/results.json, curves.png, and per mode metrics.jsonl, results.json, "
        "checkpoints/" + (", submission.csv" if args.submission else "")
    )
    return 0
