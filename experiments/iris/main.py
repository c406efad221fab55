"""`jaxnets train iris`: command-line flags and the printed results table."""

from __future__ import annotations

import argparse
import math

from jaxnets.errors import ConfigError
from jaxnets.flags import (
    add_gradients_argument,
    add_run_folder_arguments,
    non_negative_int,
    positive_int,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Iris trains in seconds and keeps no checkpoints: no --resume.
    add_run_folder_arguments(parser, "runs/iris", resume=False)
    parser.add_argument("--epochs", type=positive_int, default=100)
    parser.add_argument("--batch-size", type=positive_int, default=25)
    parser.add_argument("--seed", type=non_negative_int, default=0)
    add_gradients_argument(parser)
    parser.add_argument(
        "--setting",
        action="append",
        metavar="LR:HIDDEN",
        help="a (learning rate, hidden size) pair; repeat it to sweep (default: four settings)",
    )


def _parse_setting(text: str) -> tuple[float, int]:
    try:
        lr, hidden = text.split(":")
        lr, hidden = float(lr), int(hidden)
    except ValueError:
        raise ConfigError(f"--setting expects LR:HIDDEN such as 0.01:32, got {text!r}") from None
    if not (math.isfinite(lr) and lr > 0 and hidden >= 1):
        raise ConfigError(f"--setting {text}: the learning rate must be > 0 and hidden >= 1")
    return lr, hidden


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from jaxnets.experiments.iris.config import get_config
    from jaxnets.experiments.iris.train import train_and_evaluate

    overrides = {"epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed}
    if args.gradients is not None:
        overrides["gradients"] = args.gradients
    if args.setting:
        overrides["settings"] = tuple(_parse_setting(s) for s in args.setting)
    config = get_config(**overrides)
    console = Console()
    with console.status(f"training {len(config.settings)} settings on Iris"):
        results = train_and_evaluate(config, args.out, overwrite=args.overwrite)

    table = Table(title=f"Iris, two-layer net, {config.epochs} epochs (best by validation *)")
    for column in ("setting", "val acc", "test loss", "test acc", "seconds"):
        table.add_column(column, justify="left" if column == "setting" else "right")
    for row in results["settings"]:
        mark = " *" if row["setting"] == results["best_setting"] else ""
        table.add_row(
            row["setting"] + mark,
            f"{row['val_accuracy']:.3f}",
            f"{row['test_loss']:.4f}",
            f"{row['test_accuracy']:.3f}",
            f"{row['seconds']:.1f}",
        )
    console.print(table)
    console.print(f"test accuracy of the best setting: [bold]{results['test_accuracy']:.3f}[/]")
    console.print(f"Wrote {args.out}/results.json, metrics.jsonl and curves.png")
    return 0
