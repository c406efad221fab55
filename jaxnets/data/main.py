"""`jaxnets data info DATASET --data-dir DIR [--graph I ...]`: what a dataset holds.

For a graph dataset: the number of graphs, classes (or tasks) and node features, and for each
`--graph I` that graph's label, nodes and undirected edges. Indices and labels count from 0, as
PyG does:

    $ jaxnets data info enzymes --data-dir ../shared/data --graph 100 --graph 200
    graph 100: label 4, 37 nodes, 65 undirected edges

For `images` (an image folder, `jaxnets train images`): its classes, images per class and split,
and image sizes, from the files' headers. For digits, fashion-mnist and cifar10: the split sizes,
image shape and classes of what `jaxnets train` would read from DIR.
"""

from __future__ import annotations

import argparse

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    info = sub.add_parser("info", help="counts of a graph dataset, and chosen graphs' facts")
    info.add_argument(
        "dataset",
        help="cora | enzymes | ogbg-molbace | ogbn-arxiv | any TU/OGB name | images (an image "
        "folder) | digits | fashion-mnist | cifar10",
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


def image_info_lines(name: str, data_dir: str) -> list[str]:
    """`images`: the folder's facts from its headers; another image dataset: what loads."""
    from jaxnets.data.image_folder import describe_image_folder
    from jaxnets.data.images import load_image_dataset

    if name == "images":
        return describe_image_folder(data_dir).lines()
    splits = load_image_dataset(name, data_dir)
    h, w, c = splits.image_shape
    return [
        f"dataset: {splits.name}",
        f"source: {splits.source}",
        f"images: {len(splits.train_images):,} train / {len(splits.test_images):,} test, "
        f"{h}x{w}x{c}",
        f"classes: {len(splits.class_names)} ({', '.join(splits.class_names)})",
    ]


def _image_dataset(name: str) -> str | None:
    from jaxnets.data.images import _ALIASES, DATASETS

    key = _ALIASES.get(name.lower(), name.lower())
    return key if key in DATASETS else None


def run(args: argparse.Namespace) -> int:
    from jaxnets.data.graphs import load_graph_dataset
    from jaxnets.data.images import DatasetFormatError, DatasetNotFoundError

    try:
        if (image_name := _image_dataset(args.dataset)) is not None:
            if args.graph:
                raise ValueError(f"--graph is for graph datasets, not {args.dataset}")
            print("\n".join(image_info_lines(image_name, args.data_dir)))
            return 0
        dataset = load_graph_dataset(args.dataset, args.data_dir)
        lines = info_lines(dataset) + [graph_line(dataset, i) for i in args.graph]
    except (DatasetNotFoundError, DatasetFormatError, ValueError, IndexError) as e:
        print(f"error: {e}")
        return 2
    print("\n".join(lines))
    return 0
