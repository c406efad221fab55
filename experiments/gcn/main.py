"""`jaxnets train gcn`: flags, then a results table.

    jaxnets train gcn --dataset cora --data-dir ../shared/data --out runs/gcn-cora --seeds 5
    jaxnets train gcn --dataset ogbg-molbace --data-dir ../shared/data/ogb --seeds 3

The dataset name picks the format: cora/citeseer/pubmed (Planetoid), ogbn-* and ogbg-* (OGB's
on-disk layout), anything else a TU dataset (e.g. enzymes). Unset flags take the preset of that
format (experiments/gcn/config.py).
"""

from __future__ import annotations

import argparse


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
    parser.add_argument("--out", default=None, help="run folder (default runs/gcn-DATASET)")
    parser.add_argument(
        "--seeds", type=int, default=1, help="runs with seeds seed..seed+N-1; mean and std reported"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--hidden", type=int)
    parser.add_argument("--num-layers", type=int)
    parser.add_argument("--dropout", type=float)
    parser.add_argument("--input-dropout", type=float)
    parser.add_argument("--lr", type=float, dest="learning_rate")
    parser.add_argument("--weight-decay", type=float)
    parser.add_argument("--batch-size", type=int, help="graphs per step (graph datasets)")
    parser.add_argument("--batchnorm", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--normalize-features", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument(
        "--use-node-attr",
        action="store_true",
        default=None,
        help="TU datasets: node attributes as features too",
    )
    parser.add_argument(
        "--download",
        action="store_true",
        help="fetch a missing OGB dataset with the ogb package (if installed)",
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from experiments.gcn.config import get_config
    from experiments.gcn.train import train_and_evaluate
    from jaxnets.data.images import DatasetFormatError, DatasetNotFoundError

    console = Console()
    if args.seeds < 1:
        raise SystemExit("--seeds must be at least 1")
    names = (
        "epochs",
        "hidden",
        "num_layers",
        "dropout",
        "input_dropout",
        "learning_rate",
        "weight_decay",
        "batch_size",
        "batchnorm",
        "normalize_features",
        "use_node_attr",
    )
    try:
        config = get_config(
            args.dataset, seed=args.seed, seeds=args.seeds, **{n: getattr(args, n) for n in names}
        )
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    out = args.out or f"runs/gcn-{args.dataset.lower()}"
    try:
        results = train_and_evaluate(
            config, args.data_dir, out, download=args.download, console=console
        )
    except (DatasetNotFoundError, DatasetFormatError) as e:
        console.print(f"[red]error:[/] {e}")
        return 2

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
