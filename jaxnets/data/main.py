"""`jaxnets data info DATASET --data-dir DIR [--graph I ...]`: what a graph dataset holds.

Prints the number of graphs, classes (or tasks) and node features, and for each `--graph I`
that graph's label, nodes and undirected edges. Indices and labels count from 0, as PyG does:

    $ jaxnets data info enzymes --data-dir ../shared/data --graph 100 --graph 200
    graph 100: label 4, 37 nodes, 65 undirected edges
"""

from __future__ import annotations

import argparse

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    info = sub.add_parser("info", help="counts of a graph dataset, and chosen graphs' facts")
    info.add_argument(
        "dataset", help="cora | enzymes | ogbg-molbace | ogbn-arxiv | any TU/OGB name"
    )
    info.add_argument(
        "--data-dir", default="data", help="folder holding the dataset (or its parent)"
    )
    info.add_argument(
        "--graph",
        type=int,
        action="append",
        default=[],
        metavar="I",
        help="a graph index (from 0) to describe; repeat for several",
    )


def _label_text(label: np.ndarray) -> str:
    values = np.atleast_1d(label)
    text = [
        "nan" if np.isnan(v) else (str(int(v)) if float(v).is_integer() else f"{v:.4g}")
        for v in values.astype(np.float64)
    ]
    return text[0] if len(text) == 1 else "[" + ", ".join(text) + "]"


def info_lines(dataset) -> list[str]:
    from jaxnets.data.graphs import NodeDataset

    lines = [f"dataset: {dataset.name} ({dataset.format} format, {dataset.source})"]
    if isinstance(dataset, NodeDataset):
        sizes = ", ".join(f"{k} {len(v)}" for k, v in dataset.splits.items())
        return [
            *lines,
            "graphs: 1 (node-level task)",
            f"classes: {dataset.num_classes}",
            f"node features: {dataset.num_features}",
            f"nodes: {dataset.num_nodes}",
            f"undirected edges: {dataset.num_undirected_edges()}",
            f"split: {sizes}",
        ]
    if dataset.task == "regression":
        classes = (
            f"classes: none (regression, {dataset.num_tasks} task(s), metric {dataset.metric})"
        )
    elif dataset.task == "binary":
        classes = f"classes: 2 ({dataset.num_tasks} binary task(s), metric {dataset.metric})"
    else:
        classes = f"classes: {dataset.num_classes}"
    kind = "categorical" if dataset.categorical else "float"
    lines += [
        f"graphs: {len(dataset)}",
        classes,
        f"node features: {dataset.num_features} ({kind})",
        f"nodes: {int(dataset.n_node.sum())} ({dataset.n_node.mean():.2f} per graph)",
        f"undirected edges: {int(dataset.n_edge.sum()) // 2} "
        f"({dataset.n_edge.mean() / 2:.2f} per graph)",
    ]
    if dataset.splits:
        lines.append("split: " + ", ".join(f"{k} {len(v)}" for k, v in dataset.splits.items()))
    return lines


def graph_line(dataset, index: int) -> str:
    from jaxnets.data.graphs import NodeDataset

    if isinstance(dataset, NodeDataset):
        return (
            f"graph {index}: no graph label (node-level task), {dataset.num_nodes} nodes, "
            f"{dataset.num_undirected_edges(index)} undirected edges"
        )
    edges = dataset.num_undirected_edges(index)
    nodes = int(dataset.n_node[index])
    label = _label_text(dataset.label(index))
    return f"graph {index}: label {label}, {nodes} nodes, {edges} undirected edges"


def run(args: argparse.Namespace) -> int:
    from jaxnets.data.graphs import load_graph_dataset
    from jaxnets.data.images import DatasetFormatError, DatasetNotFoundError

    try:
        dataset = load_graph_dataset(args.dataset, args.data_dir)
        lines = info_lines(dataset) + [graph_line(dataset, i) for i in args.graph]
    except (DatasetNotFoundError, DatasetFormatError, ValueError, IndexError) as e:
        print(f"error: {e}")
        return 2
    print("\n".join(lines))
    return 0
