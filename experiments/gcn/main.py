"""`jaxnets train gcn`: flags, then a results table.

    jaxnets train gcn --dataset cora --data-dir ../shared/data --out runs/gcn-cora --seeds 5
    jaxnets train gcn --dataset ogbg-molbace --data-dir ../shared/data/ogb --seeds 3
    jaxnets train gcn --dataset ogbg-molhiv --data-dir ../shared/data/ogb --seeds 3 \
        --model bond-gcn --hidden 300 --average-decay 0.999

The dataset name picks the format: cora/citeseer/pubmed (Planetoid), ogbn-* and ogbg-* (OGB's
on-disk layout), anything else a TU dataset (e.g. enzymes). Unset flags take the preset of that
format (experiments/gcn/config.py).
"""

from __future__ import annotations

import argparse

from jaxnets.errors import ConfigError
from jaxnets.flags import (
    add_gradients_argument,
    add_run_folder_arguments,
    config_overrides,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    unit_fraction,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset",
        default="cora",
        help="cora | enzymes | ogbn-arxiv | ogbg-molhiv | ogbg-molbace | ... (default cora)",
    )
    parser.add_argument(
        "--data-dir",
        default="data",
        help="folder holding the dataset, or planetoid/, enzymes/, ogb/ subfolders",
    )
    # Each seed trains in seconds to minutes and keeps only its best epoch: no --resume.
    add_run_folder_arguments(parser, None, resume=False)
    parser.add_argument(
        "--seeds",
        type=positive_int,
        default=1,
        help="runs with seeds seed..seed+N-1; mean and std reported",
    )
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument(
        "--model",
        choices=("course", "bond-gcn"),
        help="course: the course's graph model (default); bond-gcn: OGB's GCN baseline with "
        "bond features (ogbg-mol* datasets)",
    )
    parser.add_argument("--epochs", type=positive_int)
    parser.add_argument("--hidden", type=positive_int)
    parser.add_argument("--num-layers", type=positive_int)
    parser.add_argument("--dropout", type=unit_fraction)
    parser.add_argument("--input-dropout", type=unit_fraction)
    parser.add_argument("--lr", type=positive_float, dest="learning_rate")
    parser.add_argument("--weight-decay", type=non_negative_float)
    parser.add_argument("--batch-size", type=positive_int, help="graphs per step (graph datasets)")
    parser.add_argument("--batchnorm", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--normalize-features", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument(
        "--use-node-attr",
        action="store_true",
        default=None,
        help="TU datasets: node attributes as features too",
    )
    parser.add_argument(
        "--average-decay",
        type=unit_fraction,
        help="score an exponential moving average of the weights with this decay per step "
        "(e.g. 0.999: about the last 1,000 steps) instead of the last weights; 0: off (default)",
    )
    add_gradients_argument(parser)
    parser.add_argument(
        "--download",
        action="store_true",
        help="fetch a missing OGB dataset with the ogb package (if installed)",
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from jaxnets.experiments.gcn.config import GCNConfig, get_config
    from jaxnets.experiments.gcn.train import train_and_evaluate

    console = Console()
    try:
        overrides = config_overrides(args, GCNConfig)
        config = get_config(overrides.pop("dataset"), **overrides)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    out = args.out or f"runs/gcn-{args.dataset.lower()}"
    results = train_and_evaluate(
        config,
        args.data_dir,
        out,
        download=args.download,
        overwrite=args.overwrite,
        console=console,
    )

    metric = results["metric"]
    table = Table(title=f"GCN on {config.dataset} (best epoch by validation {metric})")
    for column in ("seed", "best epoch", f"val {metric}", f"test {metric}", "seconds"):
        table.add_column(column, justify="right")
    for r in results["runs"]:
        table.add_row(
            str(r["seed"]),
            str(r["best_epoch"]),
            f"{r[f'val_{metric}']:.4f}",
            f"{r[f'test_{metric}']:.4f}",
            f"{r['seconds']:.1f}",
        )
    console.print(table)
    mean, std = results[f"test_{metric}_mean"], results[f"test_{metric}_std"]
    console.print(
        f"test {metric}: [bold]{mean:.4f} ± {std:.4f}[/] over {len(results['runs'])} seed(s)"
    )
    console.print(
        f"Wrote {out}/results.json, curves.png and seed_*/ (metrics, checkpoints, predictions.csv)"
    )
    return 0
