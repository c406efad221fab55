"""Graph datasets from local files: Planetoid (Cora), TU (ENZYMES) and OGB (ogbn-*, ogbg-*).

`load_graph_dataset(name, data_dir)` picks the format from the name:

- `cora`, `citeseer`, `pubmed`: Planetoid `ind.<name>.*` pickles -> a `NodeDataset` (one graph,
  node labels, the standard 140/500/1000 split of Yang et al. 2016).
- `ogbn-*`: OGB node property prediction -> `NodeDataset`; `ogbg-*`: graph property prediction
  -> `GraphDataset`. Read from OGB's own layout (`raw/`, `split/<kind>/`, `mapping/`) in
  `<data_dir>/<ogbg_molbace>` (the folder name OGB downloads to) or in `data_dir` itself.
- anything else: a TU dataset (`<NAME>_A.txt`, `_graph_indicator`, `_graph_labels`, ...) ->
  `GraphDataset`, with PyG's conventions (graph labels 0..K-1, x = one-hot node labels).

Nothing downloads unless asked (`download=True` uses the `ogb` package if it is installed). Edges
are stored in both directions without self loops or duplicates, so a GCN adds exactly one self
loop per node; `senders`/`receivers` follow jraph (a message goes from sender to receiver).
Missing folders raise `DatasetNotFoundError`, unreadable files `DatasetFormatError`, naming them.
Planetoid's pickles are read with an allow-list (`safe_pickle`), and datasets of known size
(Cora, CiteSeer, PubMed, ENZYMES, the OGB datasets in `OGB_SIZES`) are refused when some files
hold the full counts and others do not (a copy cut short at a line or file boundary).
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import io
import warnings
import zlib
from pathlib import Path

import jraph
import numpy as np

from jaxnets.data import safe_pickle
from jaxnets.data.errors import (
    Count,
    DatasetFormatError,
    DatasetNotFoundError,
    check_known_counts,
)

PLANETOID = ("cora", "citeseer", "pubmed")
# Rows of x/y, allx/ally, tx/ty/test.index and nodes (graph keys) of the published files.
PLANETOID_SIZES: dict[str, dict[str, int]] = {
    "cora": {"x": 140, "allx": 1708, "tx": 1000, "graph": 2708},
    "citeseer": {"x": 120, "allx": 2312, "tx": 1000, "graph": 3327},
    "pubmed": {"x": 60, "allx": 18217, "tx": 1000, "graph": 19717},
}
PLANETOID_NAMES = {"cora": "Cora", "citeseer": "CiteSeer", "pubmed": "PubMed"}
# What Planetoid's pickles hold: csr feature matrices, one-hot numpy arrays and a
# defaultdict(list) adjacency (python 2 pickles, scipy's old and new module paths).
PLANETOID_PICKLE_GLOBALS = safe_pickle.NUMPY_GLOBALS | {
    ("scipy.sparse.csr", "csr_matrix"),
    ("scipy.sparse._csr", "csr_matrix"),
    ("collections", "defaultdict"),
    ("builtins", "list"),
}
# TU datasets of known size: graphs (graph_labels rows), nodes (graph_indicator rows) and
# directed edge entries (A rows), from the dataset's SOURCE.md and the TU collection.
TU_SIZES: dict[str, dict[str, int]] = {
    "enzymes": {"graphs": 600, "nodes": 19_580, "edge entries": 74_564},
}
# OGB datasets of known size: graphs (ogbg) or nodes (ogbn), and the train/valid/test sizes
# of the standard split where known, from OGB's dataset pages and the shared copies' SOURCE.md.
OGB_SIZES: dict[str, tuple[int, tuple[str, tuple[int, int, int]] | None]] = {
    "ogbg-molbace": (1_513, ("scaffold", (1_210, 151, 152))),
    "ogbg-molbbbp": (2_039, None),
    "ogbg-molclintox": (1_477, None),
    "ogbg-molesol": (1_128, ("scaffold", (902, 113, 113))),
    "ogbg-molfreesolv": (642, ("scaffold", (513, 64, 65))),
    "ogbg-molhiv": (41_127, ("scaffold", (32_901, 4_113, 4_113))),
    "ogbg-mollipo": (4_200, None),
    "ogbg-molmuv": (93_087, None),
    "ogbg-molpcba": (437_929, None),
    "ogbg-molsider": (1_427, None),
    "ogbg-moltox21": (7_831, None),
    "ogbg-moltoxcast": (8_576, None),
    "ogbg-ppa": (158_100, None),
    "ogbn-arxiv": (169_343, ("time", (90_941, 29_799, 48_603))),
    "ogbn-products": (2_449_029, ("sales_ranking", (196_615, 39_323, 2_213_091))),
}
# OGB's atom feature vocabularies (ogb.utils.features.get_atom_feature_dims()).
ATOM_FEATURE_DIMS = (119, 5, 12, 12, 10, 6, 6, 2, 2)
# OGB's bond feature vocabularies (get_bond_feature_dims()): type, stereo, conjugated.
BOND_FEATURE_DIMS = (5, 6, 2)
# (task, metric) of the OGB datasets this reads; others are inferred from their labels.
OGB_TASKS: dict[str, tuple[str, str]] = {
    **{
        f"ogbg-mol{n}": ("binary", "rocauc")
        for n in ("hiv", "bace", "bbbp", "clintox", "sider", "tox21", "toxcast")
    },
    "ogbg-molmuv": ("binary", "ap"),
    "ogbg-molpcba": ("binary", "ap"),
    "ogbg-molesol": ("regression", "rmse"),
    "ogbg-molfreesolv": ("regression", "rmse"),
    "ogbg-mollipo": ("regression", "rmse"),
    "ogbg-ppa": ("multiclass", "accuracy"),
    "ogbn-arxiv": ("multiclass", "accuracy"),
    "ogbn-products": ("multiclass", "accuracy"),
}


# ----------------------------------------------------------------------------- datasets
@dataclasses.dataclass
class NodeDataset:
    """One graph whose nodes are classified. `graph.nodes` holds the features (N, F)."""

    name: str
    format: str
    source: str
    graph: jraph.GraphsTuple
    labels: np.ndarray  # (N,) int class of every node
    splits: dict[str, np.ndarray]  # "train"/"valid"/"test" -> node indices
    num_classes: int
    task: str = "multiclass"
    metric: str = "accuracy"

    @property
    def num_nodes(self) -> int:
        return int(self.graph.n_node[0])

    @property
    def num_features(self) -> int:
        return int(self.graph.nodes.shape[1])

    def __len__(self) -> int:
        return 1

    def num_undirected_edges(self, index: int = 0) -> int:
        if index != 0:
            raise IndexError(f"{self.name} has one graph; graph {index} does not exist")
        return _undirected(self.graph.senders, self.graph.receivers)

    def mask(self, split: str) -> np.ndarray:
        mask = np.zeros(self.num_nodes, bool)
        mask[self.splits[split]] = True
        return mask


@dataclasses.dataclass
class GraphDataset:
    """Many small graphs, packed: nodes and edges of all graphs concatenated in graph order.

    `senders`/`receivers` index nodes within their own graph; `graph(i)` and `batch(indices)`
    turn them into jraph GraphsTuples with global indices. `labels` is (G,) int for multiclass
    tasks, (G, T) float with NaN for missing labels for binary and regression tasks.
    """

    name: str
    format: str
    source: str
    nodes: np.ndarray  # (total nodes, F): float features, or int categories when `categorical`
    senders: np.ndarray
    receivers: np.ndarray
    n_node: np.ndarray  # (G,)
    n_edge: np.ndarray  # (G,) directed edges (both directions of each undirected edge)
    labels: np.ndarray
    task: str  # "multiclass" | "binary" | "regression"
    metric: str  # "accuracy" | "rocauc" | "ap" | "rmse"
    num_classes: int  # classes of a multiclass task; 2 for binary; 0 for regression
    splits: dict[str, np.ndarray] | None = None
    categorical: bool = False
    edges: np.ndarray | None = None  # (total directed edges, 3) int bond features (ogbg-mol*)

    def __post_init__(self):
        self.node_offsets = np.concatenate([[0], np.cumsum(self.n_node)]).astype(np.int64)
        self.edge_offsets = np.concatenate([[0], np.cumsum(self.n_edge)]).astype(np.int64)

    def __len__(self) -> int:
        return len(self.n_node)

    @property
    def num_features(self) -> int:
        return int(self.nodes.shape[1])

    @property
    def num_tasks(self) -> int:
        return 1 if self.labels.ndim == 1 else int(self.labels.shape[1])

    def _check_index(self, index: int) -> int:
        if not -len(self) <= index < len(self):
            raise IndexError(
                f"{self.name} has {len(self)} graphs (0..{len(self) - 1}), not {index}"
            )
        return index % len(self)

    def label(self, index: int) -> np.ndarray:
        return self.labels[self._check_index(index)]

    def num_undirected_edges(self, index: int) -> int:
        i = self._check_index(index)
        lo, hi = self.edge_offsets[i], self.edge_offsets[i + 1]
        return _undirected(self.senders[lo:hi], self.receivers[lo:hi])

    def batch(self, indices) -> jraph.GraphsTuple:
        """The graphs `indices` as one GraphsTuple (numpy), labels in `globals`."""
        indices = np.asarray(indices, np.int64)
        n_node, n_edge = self.n_node[indices], self.n_edge[indices]
        node_idx = _ranges(self.node_offsets[indices], n_node)
        edge_idx = _ranges(self.edge_offsets[indices], n_edge)
        # Local node indices become global: shift each graph's edges by its position in the batch.
        shift = np.repeat(np.cumsum(n_node) - n_node, n_edge)
        return jraph.GraphsTuple(
            nodes=self.nodes[node_idx],
            edges=None if self.edges is None else self.edges[edge_idx],
            senders=(self.senders[edge_idx] + shift).astype(np.int32),
            receivers=(self.receivers[edge_idx] + shift).astype(np.int32),
            n_node=n_node.astype(np.int32),
            n_edge=n_edge.astype(np.int32),
            globals=self.labels[indices],
        )

    def graph(self, index: int) -> jraph.GraphsTuple:
        return self.batch([self._check_index(index)])

    def graphs(self) -> list[jraph.GraphsTuple]:
        return [self.graph(i) for i in range(len(self))]


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """concatenate(arange(s, s + n) for s, n in zip(starts, lengths)), vectorised."""
    total = int(lengths.sum())
    run_start = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts, lengths) + np.arange(total) - run_start


def _undirected(senders: np.ndarray, receivers: np.ndarray) -> int:
    """Distinct unordered pairs {u, v}, u != v (PyG's num_edges / 2 for undirected graphs)."""
    s, r = np.asarray(senders), np.asarray(receivers)
    keep = s != r
    pairs = np.stack([np.minimum(s, r)[keep], np.maximum(s, r)[keep]], axis=1)
    return len(np.unique(pairs, axis=0)) if len(pairs) else 0


def _clean_edges(senders: np.ndarray, receivers: np.ndarray, undirected: bool = True):
    """Both directions (if `undirected`), no self loops, no duplicates, sorted by receiver."""
    s, r = np.asarray(senders, np.int64), np.asarray(receivers, np.int64)
    if undirected:
        s, r = np.concatenate([s, r]), np.concatenate([r, s])
    keep = s != r
    pairs = np.unique(np.stack([r[keep], s[keep]], axis=1), axis=0)
    return pairs[:, 1].astype(np.int32), pairs[:, 0].astype(np.int32)


# ----------------------------------------------------------------------------- entry point
def dataset_format(name: str) -> str:
    """'planetoid', 'ogbn', 'ogbg' or 'tu', from the dataset name."""
    key = name.lower()
    if key in PLANETOID:
        return "planetoid"
    if key.startswith(("ogbn-", "ogbn_")):
        return "ogbn"
    if key.startswith(("ogbg-", "ogbg_")):
        return "ogbg"
    if key.startswith("ogb"):
        raise ValueError(
            f"unknown OGB dataset name {name!r}: OGB names start with ogbn- (node property) or "
            "ogbg- (graph property), e.g. ogbn-arxiv, ogbg-molhiv"
        )
    return "tu"


def load_graph_dataset(
    name: str, data_dir: str | Path, *, download: bool = False, use_node_attr: bool = False
) -> NodeDataset | GraphDataset:
    """Load dataset `name` from `data_dir` (or a subfolder of it named after the dataset or the
    format: planetoid/, tu/, enzymes/, ogb/). See the module docstring for the formats."""
    data_dir = Path(data_dir)
    fmt = dataset_format(name)
    if fmt == "planetoid":
        return load_planetoid(name, data_dir)
    if fmt in ("ogbn", "ogbg"):
        return load_ogb(name, data_dir, download=download)
    return load_tu(name, data_dir, use_node_attr=use_node_attr)


def _candidates(data_dir: Path, *names: str) -> list[Path]:
    """data_dir itself, then data_dir/<name> for each name (as given and lower-cased)."""
    dirs = [data_dir]
    for n in names:
        dirs += [data_dir / n, data_dir / n.lower()]
    return list(dict.fromkeys(dirs))


def _missing(data_dir: Path, what: str, looked: list[Path], hint: str = "") -> DatasetNotFoundError:
    where = ", ".join(str(p) for p in looked)
    return DatasetNotFoundError(f"{what} not found under {data_dir} (looked in {where}){hint}")


# ----------------------------------------------------------------------------- Planetoid
def _unpickle(path: Path):
    with warnings.catch_warnings():
        # The csr matrices were pickled from an old scipy module path (scipy.sparse.csr).
        warnings.simplefilter("ignore", DeprecationWarning)
        return safe_pickle.load(
            path,
            PLANETOID_PICKLE_GLOBALS,
            encoding="latin1",  # python 2 pickles; latin1 keeps numpy's byte strings intact
            kind="Planetoid",
            allowed_desc="Planetoid files may only hold arrays, sparse matrices and dicts",
        )


def _check_planetoid_part(part: str, obj: object, path: Path) -> None:
    """Each part has one type; anything else would fail later with a traceback, not a message."""
    if part == "graph":
        if not isinstance(obj, dict):
            raise DatasetFormatError(
                f"{path}: expected an adjacency dict (node -> list of neighbours), "
                f"got {type(obj).__name__}"
            )
        return
    sparse = hasattr(obj, "todense") and hasattr(obj, "shape")
    if not (sparse or isinstance(obj, np.ndarray)) or len(getattr(obj, "shape", ())) != 2:
        want = "a feature matrix (sparse or 2-D array)" if "x" in part else "a 2-D one-hot array"
        shape = getattr(obj, "shape", None)
        got = type(obj).__name__ + (f" of shape {shape}" if shape is not None else "")
        raise DatasetFormatError(f"{path}: expected {want}, got {got}")


def load_planetoid(
    name: str, data_dir: str | Path, *, normalize_features: bool = False
) -> NodeDataset:
    """Planetoid `ind.<name>.{x,y,tx,ty,allx,ally,graph,test.index}` as Kipf & Welling and PyG
    read them: test nodes reordered by test.index, train = the first 140 (20 per class) labelled
    nodes, validation the next 500, test the 1000 of test.index. Citeseer's isolated test nodes
    get zero features, as in both."""
    data_dir, key = Path(data_dir), name.lower()
    dirs = _candidates(data_dir, "planetoid", name, f"{name}/raw", f"{name.capitalize()}/raw")
    folder = next((d for d in dirs if (d / f"ind.{key}.x").is_file()), None)
    if folder is None:
        raise _missing(data_dir, f"Planetoid files ind.{key}.*", dirs)
    parts = {}
    for part in ("x", "y", "tx", "ty", "allx", "ally", "graph"):
        path = folder / f"ind.{key}.{part}"
        if not path.is_file():
            raise DatasetNotFoundError(
                f"{path} is missing (Planetoid needs x, y, tx, ty, allx, ally, graph, test.index)"
            )
        parts[part] = _unpickle(path)
        _check_planetoid_part(part, parts[part], path)
    index_path = folder / f"ind.{key}.test.index"
    try:
        test_index = np.loadtxt(index_path, dtype=np.int64, ndmin=1)
    except (OSError, ValueError) as e:
        raise DatasetFormatError(f"{index_path}: expected one integer per line ({e})") from e
    if len(test_index) == 0:
        raise DatasetFormatError(f"{index_path}: holds no test node ids")
    if key in PLANETOID_SIZES:  # a part from a smaller or other copy, next to full-size ones
        known = PLANETOID_SIZES[key]
        rows = {p: len(parts[p]) if p == "graph" else parts[p].shape[0] for p in parts}
        counts = [
            Count(
                str(folder / f"ind.{key}.{p}"),
                "nodes" if p == "graph" else "rows",
                n,
                known[p if p in known else p.replace("y", "x")],
            )
            for p, n in rows.items()
        ]
        counts.append(Count(str(index_path), "ids", len(test_index), known["tx"]))
        check_known_counts(f"the full {PLANETOID_NAMES[key]}", counts)

    tx, allx = (_dense(parts[p], folder / f"ind.{key}.{p}") for p in ("tx", "allx"))
    y, ty, ally = (np.asarray(parts[p]) for p in ("y", "ty", "ally"))
    lo, hi = test_index.min(), test_index.max()
    if tx.shape[1] != allx.shape[1] or ty.shape[1] != ally.shape[1]:
        raise DatasetFormatError(
            f"{folder}: tx {tx.shape} / ty {ty.shape} have other columns than allx {allx.shape} "
            f"/ ally {ally.shape}"
        )
    if len(tx) != len(test_index) or len(ty) != len(tx) or lo < len(allx):
        raise DatasetFormatError(
            f"{folder}: tx {tx.shape}, ty {ty.shape} and test.index ({len(test_index)} entries, "
            f"{lo}..{hi}) disagree with allx {allx.shape}"
        )
    # Rows of tx/ty are in test.index order; a full range covers citeseer's missing nodes.
    full_tx = np.zeros((hi - lo + 1, tx.shape[1]), tx.dtype)
    full_ty = np.zeros((hi - lo + 1, ty.shape[1]), ty.dtype)
    full_tx[test_index - lo], full_ty[test_index - lo] = tx, ty
    features = np.concatenate([allx, full_tx]).astype(np.float32)
    labels = np.concatenate([ally, full_ty]).argmax(axis=1).astype(np.int32)
    n = len(features)

    graph = parts["graph"]  # a dict, checked when read
    try:
        s = np.array([u for u, vs in graph.items() for _ in vs], np.int64)
        r = np.array([v for vs in graph.values() for v in vs], np.int64)
    except (TypeError, ValueError, OverflowError) as e:
        raise DatasetFormatError(
            f"{folder}/ind.{key}.graph: expected node ids mapped to lists of node ids ({e})"
        ) from e
    if len(s) and (min(s.min(), r.min()) < 0 or max(s.max(), r.max()) >= n):
        raise DatasetFormatError(f"{folder}/ind.{key}.graph: node ids outside 0..{n - 1}")
    senders, receivers = _clean_edges(s, r)
    if normalize_features:
        features = row_normalize(features)
    splits = {
        "train": np.arange(len(y)),
        "valid": np.arange(len(y), min(len(y) + 500, len(allx))),  # clipped only for tiny files
        "test": np.sort(test_index),
    }
    return NodeDataset(
        name=key,
        format="planetoid",
        source=str(folder),
        graph=_single_graph(features, senders, receivers),
        labels=labels,
        splits=splits,
        num_classes=int(ally.shape[1]),
    )


def _dense(matrix, path: Path) -> np.ndarray:
    try:
        return np.asarray(matrix.todense() if hasattr(matrix, "todense") else matrix)
    except Exception as e:  # anything a corrupt pickle might hold instead of a matrix
        raise DatasetFormatError(f"{path}: expected a feature matrix, got {type(matrix)}") from e


def row_normalize(features: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (rows summing to 0 stay 0), Kipf & Welling's preprocessing."""
    sums = features.sum(axis=1, keepdims=True)
    return np.where(sums > 0, features / np.where(sums > 0, sums, 1), 0).astype(features.dtype)


def _single_graph(
    nodes: np.ndarray, senders: np.ndarray, receivers: np.ndarray
) -> jraph.GraphsTuple:
    return jraph.GraphsTuple(
        nodes=nodes,
        edges=None,
        senders=senders,
        receivers=receivers,
        n_node=np.array([len(nodes)], np.int32),
        n_edge=np.array([len(senders)], np.int32),
        globals=None,
    )


# ----------------------------------------------------------------------------- TU
def _tu_folder(name: str, data_dir: Path) -> tuple[Path, str]:
    """The folder holding <NAME>_A.txt (name matched case-insensitively) and the file prefix."""
    dirs = _candidates(data_dir, "tu", name, f"{name}/raw", f"{name.upper()}/raw")
    for d in dirs:
        if d.is_dir():
            for f in sorted(d.glob("*_A.txt")):
                if f.name[: -len("_A.txt")].lower() == name.lower():
                    return d, f.name[: -len("_A.txt")]
    raise _missing(
        data_dir,
        f"dataset {name!r} (TU files {name.upper()}_A.txt, _graph_indicator.txt, ...)",
        dirs,
        f". Known formats: Planetoid ({', '.join(PLANETOID)}), OGB (ogbn-*, ogbg-*) or a TU "
        "dataset name such as ENZYMES; check the name and --data-dir",
    )


def _read_txt(path: Path, dtype, *, required: bool = True) -> np.ndarray | None:
    if not path.is_file():
        if required:
            raise DatasetNotFoundError(f"{path} is missing")
        return None
    try:
        return np.loadtxt(path, delimiter=",", dtype=dtype, ndmin=2)
    except ValueError as e:
        raise DatasetFormatError(f"{path}: not comma-separated numbers ({e})") from e


def load_tu(name: str, data_dir: str | Path, *, use_node_attr: bool = False) -> GraphDataset:
    """A TU dataset as PyG's TUDataset reads it: graph labels mapped to 0..K-1, x the one-hot
    node labels (with `use_node_attr`, the node attributes before them), self loops and
    duplicate edges removed. Ids in the files are 1-based."""
    folder, prefix = _tu_folder(name, Path(data_dir))
    f = lambda suffix: folder / f"{prefix}_{suffix}.txt"  # noqa: E731
    edges = _read_txt(f("A"), np.int64) - 1
    indicator = _read_txt(f("graph_indicator"), np.int64)[:, 0] - 1
    graph_labels = _read_txt(f("graph_labels"), np.float64)[:, 0]
    node_labels = _read_txt(f("node_labels"), np.int64, required=False)
    node_attrs = _read_txt(f("node_attributes"), np.float32, required=False)

    num_nodes, num_graphs = len(indicator), len(graph_labels)
    if prefix.lower() in TU_SIZES:  # a text file cut at a line break parses fine: count rows
        known = TU_SIZES[prefix.lower()]
        counts = [
            Count(str(f("graph_labels")), "graphs", num_graphs, known["graphs"]),
            Count(str(f("graph_indicator")), "nodes", num_nodes, known["nodes"]),
            Count(str(f("A")), "edge entries", len(edges), known["edge entries"]),
        ]
        counts += [
            Count(str(f(suffix)), "node rows", len(rows), known["nodes"])
            for suffix, rows in (("node_labels", node_labels), ("node_attributes", node_attrs))
            if rows is not None
        ]
        check_known_counts(f"the full {prefix}", counts)
    if edges.shape[1] != 2 or edges.min() < 0 or edges.max() >= num_nodes:
        raise DatasetFormatError(f"{f('A')}: expected 'u, v' rows with node ids 1..{num_nodes}")
    if indicator.min() < 0 or indicator.max() >= num_graphs or np.any(np.diff(indicator) < 0):
        raise DatasetFormatError(
            f"{f('graph_indicator')}: graph ids must be sorted and within 1..{num_graphs}"
        )
    n_node = np.bincount(indicator, minlength=num_graphs)
    s, r = _clean_edges(edges[:, 0], edges[:, 1], undirected=False)  # the file lists both ways
    graph_of_edge = indicator[s]
    if np.any(graph_of_edge != indicator[r]):
        raise DatasetFormatError(f"{f('A')}: an edge joins two different graphs")
    order = np.argsort(graph_of_edge, kind="stable")
    s, r, graph_of_edge = s[order], r[order], graph_of_edge[order]
    offsets = np.concatenate([[0], np.cumsum(n_node)])

    features = []
    if use_node_attr and node_attrs is not None:
        features.append(node_attrs)
    if node_labels is not None:
        node_labels = node_labels - node_labels.min(axis=0)
        for column in node_labels.T:  # one one-hot block per label column, as PyG
            features.append(np.eye(column.max() + 1, dtype=np.float32)[column])
    if not features:  # no node features at all: a constant one, so a GCN can count neighbours
        features.append(np.ones((num_nodes, 1), np.float32))
    nodes = np.concatenate(features, axis=1)
    if len(nodes) != num_nodes:
        raise DatasetFormatError(f"{folder}: {len(nodes)} node rows for {num_nodes} nodes")
    _, labels = np.unique(graph_labels, return_inverse=True)
    return GraphDataset(
        name=prefix,
        format="tu",
        source=str(folder),
        nodes=nodes,
        senders=(s - offsets[graph_of_edge]).astype(np.int32),
        receivers=(r - offsets[graph_of_edge]).astype(np.int32),
        n_node=n_node,
        n_edge=np.bincount(graph_of_edge, minlength=num_graphs),
        labels=labels.astype(np.int32),
        task="multiclass",
        metric="accuracy",
        num_classes=int(labels.max() + 1),
    )


# ----------------------------------------------------------------------------- OGB
def _read_csv_gz(path: Path, dtype, *, missing_as_nan: bool = False) -> np.ndarray:
    """An OGB gzip CSV without header. Empty fields (missing labels) become NaN if allowed."""
    if not path.is_file():
        raise DatasetNotFoundError(f"{path} is missing")
    try:
        with gzip.open(path, "rt") as f:
            text = f.read()
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as e:
        raise DatasetFormatError(f"{path}: not a readable gzip file ({e})") from e
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
            if missing_as_nan:
                out = np.genfromtxt(io.StringIO(text), delimiter=",", dtype=np.float64, ndmin=2)
            else:
                out = np.loadtxt(io.StringIO(text), delimiter=",", dtype=dtype, ndmin=2)
    except ValueError as e:
        raise DatasetFormatError(f"{path}: not comma-separated numbers ({e})") from e
    if out.size == 0:
        raise DatasetFormatError(f"{path}: the file is empty")
    if missing_as_nan:
        _refuse_non_numbers(path, text, out)
    return out


def _refuse_non_numbers(path: Path, text: str, values: np.ndarray) -> None:
    """genfromtxt reads any cell it cannot parse ("yes") as NaN, like an empty one. Only empty
    cells (and "nan") are missing labels; anything else is a broken file, not a missing label."""
    nan_rows = np.flatnonzero(np.isnan(values).any(axis=1))
    if len(nan_rows) == 0:
        return
    lines = [(i, line) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
    for row in nan_rows:  # only rows with a NaN need looking at
        line_no, line = lines[row]
        cells = line.split(",")
        for col in np.flatnonzero(np.isnan(values[row])):
            cell = cells[col].strip()
            if cell and cell.lower() != "nan":
                raise DatasetFormatError(
                    f"{path}: row {line_no}, column {col + 1} holds {cell!r}, not a number "
                    "(only an empty cell marks a missing label)"
                )


def _ogb_folder(name: str, data_dir: Path, download: bool) -> Path:
    key = name.lower().replace("_", "-")
    folder_name = key.replace("-", "_")  # OGB extracts ogbg-molhiv into ogbg_molhiv/
    dirs = _candidates(data_dir, folder_name, "ogb", f"ogb/{folder_name}")
    for d in dirs:
        if (d / "raw").is_dir() and (d.name == folder_name or d == data_dir):
            return d
    if download and importlib.util.find_spec("ogb") is not None:
        _ogb_download(key, data_dir)
        return data_dir / folder_name
    if importlib.util.find_spec("ogb") is not None:
        hint = f"; the ogb package is installed: pass --download to fetch it into {data_dir}"
    else:
        hint = (
            f"; get it from https://ogb.stanford.edu (extract into {data_dir / folder_name}), "
            "or install the ogb package and pass --download"
        )
    raise _missing(data_dir, f"OGB dataset {key} (raw/, split/)", dirs, hint)


def _ogb_download(name: str, data_dir: Path) -> None:
    """Fetch with the ogb package's numpy datasets (which need no torch)."""
    if name.startswith("ogbn"):
        from ogb.nodeproppred import NodePropPredDataset as Dataset
    else:
        from ogb.graphproppred import GraphPropPredDataset as Dataset
    Dataset(name=name, root=str(data_dir))


def _ogb_split(folder: Path) -> dict[str, np.ndarray]:
    kinds = sorted(p for p in (folder / "split").glob("*") if p.is_dir())
    if not kinds:
        raise DatasetNotFoundError(f"{folder / 'split'} has no split folder (e.g. split/scaffold)")
    return {
        s: _read_csv_gz(kinds[0] / f"{s}.csv.gz", np.int64)[:, 0]
        for s in ("train", "valid", "test")
    }


def _check_ogb_counts(
    key: str,
    folder: Path,
    is_graph: bool,
    n_node: np.ndarray,
    n_edge: np.ndarray,
    num_labels: int,
    splits: dict[str, np.ndarray],
) -> None:
    total, split_sizes = OGB_SIZES[key]  # split_sizes: (split kind, (train, valid, test))
    raw = folder / "raw"
    label_file = raw / ("graph-label.csv.gz" if is_graph else "node-label.csv.gz")
    if is_graph:
        counts = [
            Count(str(raw / "num-node-list.csv.gz"), "graphs", len(n_node), total),
            Count(str(raw / "num-edge-list.csv.gz"), "graphs", len(n_edge), total),
        ]
    else:
        counts = [Count(str(raw / "num-node-list.csv.gz"), "nodes", int(n_node.sum()), total)]
    counts.append(Count(str(label_file), "label rows", num_labels, total))
    kind = sorted(p for p in (folder / "split").glob("*") if p.is_dir())[0]  # as _ogb_split
    if split_sizes is not None and kind.name == split_sizes[0]:
        counts += [
            Count(str(kind / f"{name}.csv.gz"), f"{name} ids", len(splits[name]), size)
            for name, size in zip(("train", "valid", "test"), split_sizes[1])
        ]
    check_known_counts(f"the full {key}", counts)


def _ogb_task(name: str, labels: np.ndarray) -> tuple[str, str]:
    if name in OGB_TASKS:
        return OGB_TASKS[name]
    known = labels[~np.isnan(labels)]
    if np.any(known != np.round(known)):
        return "regression", "rmse"
    if np.isin(known, (0, 1)).all() and name.startswith("ogbg"):
        return "binary", "rocauc"
    return "multiclass", "accuracy"


def load_ogb(
    name: str, data_dir: str | Path, *, download: bool = False
) -> NodeDataset | GraphDataset:
    """An OGB dataset from its on-disk layout: raw/{edge, node-feat, num-node-list,
    num-edge-list, graph-label | node-label}.csv.gz and split/<kind>/{train,valid,test}.csv.gz.
    Edges are made undirected (OGB's add_inverse_edge; ogbn-arxiv symmetrised as the course)."""
    key = name.lower().replace("_", "-")
    folder = _ogb_folder(key, Path(data_dir), download)
    raw = folder / "raw"
    edges = _read_csv_gz(raw / "edge.csv.gz", np.int64)
    n_node = _read_csv_gz(raw / "num-node-list.csv.gz", np.int64)[:, 0]
    n_edge = _read_csv_gz(raw / "num-edge-list.csv.gz", np.int64)[:, 0]
    feat_path = raw / "node-feat.csv.gz"
    edge_feat_path = raw / "edge-feat.csv.gz"
    is_graph = key.startswith("ogbg")
    if feat_path.is_file():
        nodes = _read_csv_gz(feat_path, np.int64 if key.startswith("ogbg-mol") else np.float32)
    else:  # e.g. ogbg-ppa has no node features: a constant one
        nodes = np.ones((int(n_node.sum()), 1), np.float32)
    if edges.shape[1] != 2 or len(edges) != n_edge.sum() or len(nodes) != n_node.sum():
        raise DatasetFormatError(
            f"{raw}: {len(edges)} edges and {len(nodes)} nodes, but num-edge-list sums to "
            f"{n_edge.sum()} and num-node-list to {n_node.sum()}"
        )
    splits = _ogb_split(folder)
    label_file = raw / ("graph-label.csv.gz" if is_graph else "node-label.csv.gz")
    labels = _read_csv_gz(label_file, np.float64, missing_as_nan=True)
    expected = len(n_node) if is_graph else int(n_node.sum())
    if key in OGB_SIZES:  # a csv cut at a line break and re-gzipped reads fine: count rows
        _check_ogb_counts(key, folder, is_graph, n_node, n_edge, len(labels), splits)
    if len(labels) != expected:
        raise DatasetFormatError(f"{label_file}: {len(labels)} rows, expected {expected}")
    task, metric = _ogb_task(key, labels)
    for split, idx in splits.items():
        if len(idx) and (idx.min() < 0 or idx.max() >= expected):
            raise DatasetFormatError(f"{folder}/split: {split} indices outside 0..{expected - 1}")

    if not is_graph:
        senders, receivers = _clean_edges(edges[:, 0], edges[:, 1])
        if len(senders) and max(senders.max(), receivers.max()) >= len(nodes):
            raise DatasetFormatError(f"{raw / 'edge.csv.gz'}: node ids beyond {len(nodes) - 1}")
        return NodeDataset(
            name=key,
            format="ogbn",
            source=str(folder),
            graph=_single_graph(nodes.astype(np.float32), senders, receivers),
            labels=labels[:, 0].astype(np.int32),
            splits=splits,
            num_classes=int(np.nanmax(labels) + 1),
            task=task,
            metric=metric,
        )

    graph_of_edge = np.repeat(np.arange(len(n_edge)), n_edge)
    if len(edges) and (edges.min() < 0 or np.any(edges.max(axis=1) >= n_node[graph_of_edge])):
        raise DatasetFormatError(f"{raw / 'edge.csv.gz'}: an edge index lies outside its graph")
    # OGB lists each undirected edge once; add the reverse right after, graph by graph.
    senders = np.stack([edges[:, 0], edges[:, 1]], axis=1).reshape(-1)
    receivers = np.stack([edges[:, 1], edges[:, 0]], axis=1).reshape(-1)
    edge_feat = None
    if key.startswith("ogbg-mol") and edge_feat_path.is_file():
        edge_feat = _read_csv_gz(edge_feat_path, np.int64)
        if len(edge_feat) != len(edges):
            raise DatasetFormatError(
                f"{edge_feat_path}: {len(edge_feat)} rows for {len(edges)} edges"
            )
        edge_feat = np.repeat(edge_feat, 2, axis=0).astype(np.int32)  # both directions
    if task == "multiclass":
        labels = labels[:, 0].astype(np.int32)
    return GraphDataset(
        name=key,
        format="ogbg",
        source=str(folder),
        nodes=nodes.astype(np.int32) if nodes.dtype == np.int64 else nodes,
        senders=senders.astype(np.int32),
        receivers=receivers.astype(np.int32),
        n_node=n_node,
        n_edge=2 * n_edge,
        labels=labels.astype(np.float32) if task != "multiclass" else labels,
        task=task,
        metric=metric,
        num_classes=2
        if task == "binary"
        else int(np.max(labels)) + 1
        if task == "multiclass"
        else 0,
        splits=splits,
        categorical=nodes.dtype == np.int64,
        edges=edge_feat,
    )


def atom_feature_dims(dataset: GraphDataset) -> tuple[int, ...]:
    """Vocabulary size of each categorical node feature: OGB's atom vocabularies, widened if the
    data holds a larger value (so an embedding lookup never goes out of range)."""
    return _vocabularies(dataset.nodes, ATOM_FEATURE_DIMS)


def bond_feature_dims(dataset: GraphDataset) -> tuple[int, ...]:
    """Vocabulary size of each bond feature (OGB's, widened as `atom_feature_dims`)."""
    if dataset.edges is None:
        raise ValueError(f"{dataset.name} has no bond (edge) features")
    return _vocabularies(dataset.edges, BOND_FEATURE_DIMS)


def _vocabularies(values: np.ndarray, known: tuple[int, ...]) -> tuple[int, ...]:
    data_max = values.max(axis=0) + 1 if len(values) else np.zeros(values.shape[1], np.int64)
    if values.shape[1] == len(known):
        return tuple(int(max(a, b)) for a, b in zip(known, data_max))
    return tuple(int(v) for v in data_max)
