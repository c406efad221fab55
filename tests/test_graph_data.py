"""Graph loaders (Planetoid, TU, OGB), padding budgets and `jaxnets data info`.

Known statistics of the shared data come from each folder's SOURCE.md; the tiny datasets are
written here in the real on-disk formats so the loaders are tested without the shared data.
"""

from __future__ import annotations

import collections
import csv
import gzip
import pickle
import re

import jax
import jax.numpy as jnp
import jraph
import numpy as np
import pytest
import scipy.sparse as sp

from jaxnets.cli import main as cli_main
from jaxnets.data import graph_batching as gb
from jaxnets.data.graphs import (
    ATOM_FEATURE_DIMS,
    BOND_FEATURE_DIMS,
    GraphDataset,
    NodeDataset,
    atom_feature_dims,
    bond_feature_dims,
    load_graph_dataset,
)
from jaxnets.data.images import DatasetFormatError, DatasetNotFoundError
from jaxnets.layers import graph as graph_layers


# ----------------------------------------------------------------------------- shared data
def test_cora_statistics(shared_data):
    ds = load_graph_dataset("cora", shared_data)
    assert isinstance(ds, NodeDataset)
    assert (ds.num_nodes, ds.num_features, ds.num_classes) == (2708, 1433, 7)
    # SOURCE.md: 5278 unique undirected edges without self loops = PyG's 10556 directed ones
    # (the paper's 5429 counts raw citation links with duplicates).
    assert ds.num_undirected_edges() == 5278
    assert len(ds.graph.senders) == 10556
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 140, "valid": 500, "test": 1000}
    assert np.bincount(ds.labels[ds.splits["train"]]).tolist() == [20] * 7  # 20 per class
    assert ds.splits["test"].min() == 1708 and ds.splits["test"].max() == 2707
    assert ds.labels[:10].tolist() == [3, 4, 4, 0, 3, 2, 0, 3, 3, 2]  # PyG's Cora y[:10]


def test_enzymes_statistics(shared_data):
    ds = load_graph_dataset("enzymes", shared_data)
    assert isinstance(ds, GraphDataset)
    assert (len(ds), ds.num_classes, ds.num_features) == (600, 6, 3)
    assert int(ds.label(100)) == 4  # file label 5, PyG counts from 0
    assert ds.num_undirected_edges(200) == 53 and ds.n_node[200] == 29
    assert ds.n_node[0] == 37 and ds.n_edge[0] == 168  # pyg_dataset[0]: x=[37,3], 168 entries
    assert np.bincount(ds.labels).tolist() == [100] * 6
    assert ds.n_node.sum() == 19580 and ds.n_edge.sum() == 74564
    assert np.allclose(ds.nodes.sum(axis=1), 1)  # one-hot node labels


def test_molbace_statistics(shared_data):
    ds = load_graph_dataset("ogbg-molbace", shared_data / "ogb")
    assert (len(ds), ds.n_node.sum(), ds.n_edge.sum() // 2) == (1513, 51577, 55768)
    assert (ds.task, ds.metric, ds.num_tasks) == ("binary", "rocauc", 1)
    assert np.nansum(ds.labels) == 691
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 1210, "valid": 151, "test": 152}
    union = np.concatenate(list(ds.splits.values()))
    assert np.array_equal(np.sort(union), np.arange(1513))
    # The atom vocabularies of ogb's get_atom_feature_dims() hold every value in the data.
    assert ds.categorical and ds.num_features == 9
    assert np.all(ds.nodes.max(axis=0) < np.array(ATOM_FEATURE_DIMS))
    assert atom_feature_dims(ds) == ATOM_FEATURE_DIMS
    # Bond features for both directions of the 55,768 bonds, inside get_bond_feature_dims().
    assert ds.edges.shape == (2 * 55768, 3)
    assert np.all(ds.edges.max(axis=0) < np.array(BOND_FEATURE_DIMS))
    assert bond_feature_dims(ds) == BOND_FEATURE_DIMS


@pytest.mark.parametrize(
    ("name", "graphs", "split", "label_mean"),
    [
        ("ogbg-molesol", 1128, (902, 113, 113), -3.050),
        ("ogbg-molfreesolv", 642, (513, 64, 65), -3.803),
    ],
)
def test_regression_sets(shared_data, name, graphs, split, label_mean):
    ds = load_graph_dataset(name, shared_data)  # found through the ogb/ subfolder
    assert (len(ds), ds.task, ds.metric) == (graphs, "regression", "rmse")
    assert tuple(len(ds.splits[s]) for s in ("train", "valid", "test")) == split
    assert np.nanmean(ds.labels) == pytest.approx(label_mean, abs=5e-4)


def test_data_info_enzymes(shared_data, capsys):
    args = [
        "data",
        "info",
        "enzymes",
        "--data-dir",
        str(shared_data),
        "--graph",
        "100",
        "--graph",
        "200",
    ]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "graphs: 600" in out and "classes: 6" in out and "node features: 3" in out
    assert "graph 100: label 4," in out
    assert "graph 200: label 0, 29 nodes, 53 undirected edges" in out


def test_data_info_other_formats(shared_data, capsys):
    assert cli_main(["data", "info", "cora", "--data-dir", str(shared_data)]) == 0
    assert (
        cli_main(["data", "info", "ogbg-molbace", "--data-dir", str(shared_data), "--graph", "0"])
        == 0
    )
    out = capsys.readouterr().out
    assert "classes: 7" in out and "node features: 1433" in out and "undirected edges: 5278" in out
    # Graph 0's figures are derived from the raw files in the test below.
    assert "graphs: 1513" in out and "graph 0: label 1, 32 nodes, 35 undirected edges" in out


# ----------------------------------------------------------------------------- tiny files
def _write_tu(folder, name="TOY"):
    """Three graphs in TU format (1-based ids): a triangle with a duplicated edge and a self
    loop, a path 4-5-6-7, and a single edge 8-9; graph labels 3, 7, 3 -> 0, 1, 0."""
    folder.mkdir(parents=True, exist_ok=True)
    edges = [
        (1, 2),
        (2, 1),
        (2, 3),
        (3, 2),
        (1, 3),
        (3, 1),
        (1, 2),
        (3, 3),
        (4, 5),
        (5, 4),
        (5, 6),
        (6, 5),
        (6, 7),
        (7, 6),
        (8, 9),
        (9, 8),
    ]
    (folder / f"{name}_A.txt").write_text("".join(f"{u}, {v}\n" for u, v in edges))
    (folder / f"{name}_graph_indicator.txt").write_text("1\n1\n1\n2\n2\n2\n2\n3\n3\n")
    (folder / f"{name}_graph_labels.txt").write_text("3\n7\n3\n")
    (folder / f"{name}_node_labels.txt").write_text("1\n2\n1\n3\n1\n1\n2\n1\n3\n")
    return folder


def test_tu_tiny(tmp_path):
    ds = load_graph_dataset("toy", _write_tu(tmp_path / "TOY" / "raw"))  # PyG's raw/ layout
    assert (len(ds), ds.num_classes, ds.num_features) == (3, 2, 3)
    assert ds.labels.tolist() == [0, 1, 0]
    assert ds.n_node.tolist() == [3, 4, 2]
    # Duplicate and self loop dropped: the triangle has 3 undirected edges (6 directed).
    assert [ds.num_undirected_edges(i) for i in range(3)] == [3, 3, 1]
    assert ds.n_edge.tolist() == [6, 6, 2]
    assert ds.nodes[3].tolist() == [0, 0, 1]  # node label 3 -> one-hot class 2
    # Graphs as jraph GraphsTuples, with edges shifted into batch-global node ids.
    batch = ds.batch([2, 0])
    assert batch.n_node.tolist() == [2, 3]
    assert sorted(zip(batch.senders.tolist(), batch.receivers.tolist()))[:2] == [(0, 1), (1, 0)]
    assert batch.senders[2:].min() == 2 and batch.globals.tolist() == [0, 0]
    assert len(ds.graphs()) == 3 and ds.graph(1).n_node.tolist() == [4]
    # Also found through the parent folder, by the name in any case.
    assert len(load_graph_dataset("Toy", tmp_path)) == 3


def test_tu_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"TOY_A\.txt"):
        load_graph_dataset("toy", tmp_path)
    folder = _write_tu(tmp_path / "bad")
    (folder / "TOY_A.txt").write_text("1, 2\n2, 99\n")
    with pytest.raises(DatasetFormatError, match="node ids"):
        load_graph_dataset("toy", folder)
    (folder / "TOY_A.txt").write_text("1, x\n")
    with pytest.raises(DatasetFormatError, match=r"TOY_A\.txt"):
        load_graph_dataset("toy", folder)


def _write_planetoid(folder):
    """A 9-node 'cora': 3 training nodes, allx of 6, test nodes 6..8 stored out of order."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    features = (rng.random((9, 5)) < 0.4).astype(np.float32)
    labels = np.array([0, 1, 2, 1, 0, 2, 2, 0, 1])
    onehot = np.eye(3)[labels]
    test_order = np.array([8, 6, 7])
    parts = {
        "x": sp.csr_matrix(features[:3]),
        "y": onehot[:3],
        "allx": sp.csr_matrix(features[:6]),
        "ally": onehot[:6],
        "tx": sp.csr_matrix(features[test_order]),
        "ty": onehot[test_order],
        "graph": collections.defaultdict(list, {0: [1, 2, 2], 1: [0], 2: [0, 2], 6: [8], 8: [6]}),
    }
    for name, obj in parts.items():
        with open(folder / f"ind.cora.{name}", "wb") as f:
            pickle.dump(obj, f)
    (folder / "ind.cora.test.index").write_text("".join(f"{i}\n" for i in test_order))
    return features, labels


def test_planetoid_tiny(tmp_path):
    features, labels = _write_planetoid(tmp_path / "planetoid")
    ds = load_graph_dataset("cora", tmp_path)
    assert (ds.num_nodes, ds.num_features, ds.num_classes) == (9, 5, 3)
    assert np.array_equal(ds.graph.nodes, features)  # test rows put back in node order
    assert np.array_equal(ds.labels, labels)
    assert {k: v.tolist() for k, v in ds.splits.items()} == {
        "train": [0, 1, 2],
        "valid": [3, 4, 5],
        "test": [6, 7, 8],
    }
    # Edges 0-1, 0-2, 6-8: duplicates and the self loop 2-2 dropped, both directions kept.
    assert ds.num_undirected_edges() == 3 and len(ds.graph.senders) == 6
    assert ds.mask("train").sum() == 3


def test_planetoid_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"ind\.cora"):
        load_graph_dataset("cora", tmp_path)
    _write_planetoid(tmp_path)
    (tmp_path / "ind.cora.graph").write_bytes(b"\x80\x04 truncated")
    with pytest.raises(DatasetFormatError, match=r"ind\.cora\.graph"):
        load_graph_dataset("cora", tmp_path)


def _gz(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        f.write("".join(",".join(str(v) for v in row) + "\n" for row in rows))


def _write_ogbg(root, name="ogbg_moltoy"):
    """Three molecules, two binary tasks with missing labels, OGB's layout."""
    folder = root / name
    _gz(folder / "raw" / "num-node-list.csv.gz", [[3], [2], [4]])
    _gz(folder / "raw" / "num-edge-list.csv.gz", [[2], [1], [3]])
    _gz(folder / "raw" / "edge.csv.gz", [[0, 1], [1, 2], [0, 1], [0, 1], [1, 2], [2, 3]])
    _gz(folder / "raw" / "node-feat.csv.gz", [[5, 0, 1, 5, 0, 0, 1, 0, 0]] * 9)
    _gz(folder / "raw" / "edge-feat.csv.gz", [[i % 4, 0, i % 2] for i in range(6)])
    _gz(folder / "raw" / "graph-label.csv.gz", [[1, ""], [0, 1], ["", 0]])
    for split, idx in (("train", [0, 1]), ("valid", [2]), ("test", [2])):
        _gz(folder / "split" / "scaffold" / f"{split}.csv.gz", [[i] for i in idx])
    _gz(folder / "mapping" / "mol.csv.gz", [["a", "b", "smiles", "mol_id"]])
    return folder


def test_ogbg_tiny(tmp_path):
    _write_ogbg(tmp_path)
    ds = load_graph_dataset("ogbg-moltoy", tmp_path)
    assert (len(ds), ds.task, ds.metric, ds.num_tasks) == (3, "binary", "rocauc", 2)
    assert ds.categorical and ds.nodes.dtype == np.int32
    assert (
        np.isnan(ds.labels[0, 1]) and np.isnan(ds.labels[2, 0]) and ds.labels[1].tolist() == [0, 1]
    )
    # OGB lists each edge once: the loader adds the reverse (add_inverse_edge).
    assert ds.n_edge.tolist() == [4, 2, 6]
    assert [ds.num_undirected_edges(i) for i in range(3)] == [2, 1, 3]
    g = ds.graph(2)
    assert sorted(zip(g.senders.tolist(), g.receivers.tolist()))[:2] == [(0, 1), (1, 0)]
    assert ds.splits["train"].tolist() == [0, 1]
    # Bond features, one row per file edge: both directions of an edge carry its row.
    assert ds.edges.dtype == np.int32 and ds.edges.shape == (12, 3)
    assert g.edges.tolist() == [[3, 0, 1], [3, 0, 1], [0, 0, 0], [0, 0, 0], [1, 0, 1], [1, 0, 1]]
    assert bond_feature_dims(ds) == BOND_FEATURE_DIMS


def test_ogbn_tiny(tmp_path):
    folder = tmp_path / "ogbn_toy"
    _gz(folder / "raw" / "num-node-list.csv.gz", [[4]])
    _gz(folder / "raw" / "num-edge-list.csv.gz", [[3]])
    _gz(folder / "raw" / "edge.csv.gz", [[0, 1], [2, 1], [3, 0]])  # directed, as arxiv
    _gz(folder / "raw" / "node-feat.csv.gz", [[0.5, 1.0], [1.5, -1.0], [0.0, 0.0], [2.0, 2.0]])
    _gz(folder / "raw" / "node-label.csv.gz", [[0], [2], [1], [2]])
    for split, idx in (("train", [0, 1]), ("valid", [2]), ("test", [3])):
        _gz(folder / "split" / "time" / f"{split}.csv.gz", [[i] for i in idx])
    ds = load_graph_dataset("ogbn-toy", tmp_path)
    assert isinstance(ds, NodeDataset)
    assert (ds.num_nodes, ds.num_features, ds.num_classes) == (4, 2, 3)
    assert len(ds.graph.senders) == 6 and ds.num_undirected_edges() == 3  # symmetrised
    assert ds.labels.tolist() == [0, 2, 1, 2] and ds.splits["test"].tolist() == [3]


def test_ogb_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="ogbg_molhiv"):
        load_graph_dataset("ogbg-molhiv", tmp_path)
    with pytest.raises(ValueError, match="unknown OGB dataset"):
        load_graph_dataset("ogbx-foo", tmp_path)
    folder = _write_ogbg(tmp_path)
    (folder / "raw" / "edge.csv.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DatasetFormatError, match=r"edge\.csv\.gz"):
        load_graph_dataset("ogbg-moltoy", tmp_path)
    _gz(folder / "raw" / "edge.csv.gz", [[0, 1], [1, 5], [0, 1], [0, 1], [1, 2], [2, 3]])
    with pytest.raises(DatasetFormatError, match="outside its graph"):
        load_graph_dataset("ogbg-moltoy", tmp_path)
    _gz(folder / "raw" / "edge.csv.gz", [[0, 1], [1, 2], [0, 1], [0, 1], [1, 2], [2, 3]])
    _gz(folder / "raw" / "edge-feat.csv.gz", [[0, 0, 0]] * 5)
    with pytest.raises(DatasetFormatError, match=r"edge-feat\.csv\.gz: 5 rows for 6 edges"):
        load_graph_dataset("ogbg-moltoy", tmp_path)
    _gz(folder / "raw" / "edge.csv.gz", [[0, 1]])
    with pytest.raises(DatasetFormatError, match="num-edge-list"):
        load_graph_dataset("ogbg-moltoy", tmp_path)
    (folder / "raw" / "node-feat.csv.gz").unlink()
    (folder / "raw" / "num-node-list.csv.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match="num-node-list"):
        load_graph_dataset("ogbg-moltoy", tmp_path)


def test_data_info_tiny(tmp_path, capsys):
    _write_tu(tmp_path)
    assert cli_main(["data", "info", "toy", "--data-dir", str(tmp_path), "--graph", "1"]) == 0
    out = capsys.readouterr().out
    assert (
        "graphs: 3" in out
        and "classes: 2" in out
        and "graph 1: label 1, 4 nodes, 3 undirected edges" in out
    )
    assert cli_main(["data", "info", "toy", "--data-dir", str(tmp_path), "--graph", "3"]) == 2
    assert cli_main(["data", "info", "nothing", "--data-dir", str(tmp_path)]) == 2
    assert "error:" in capsys.readouterr().out


# ----------------------------------------------------------------------------- padding budgets
def _random_graphs(num_graphs: int, seed: int = 0) -> GraphDataset:
    """Graphs of 3..40 nodes, each a random set of undirected edges (both directions)."""
    rng = np.random.default_rng(seed)
    n_node = rng.integers(3, 41, num_graphs)
    senders, receivers, n_edge = [], [], []
    for n in n_node:
        u = rng.integers(0, n, 2 * n)
        v = (u + rng.integers(1, n, 2 * n)) % n
        senders += [u, v]
        receivers += [v, u]
        n_edge.append(4 * n)
    return GraphDataset(
        name="random",
        format="test",
        source="memory",
        nodes=rng.normal(size=(n_node.sum(), 4)).astype(np.float32),
        senders=np.concatenate(senders).astype(np.int32),
        receivers=np.concatenate(receivers).astype(np.int32),
        n_node=n_node,
        n_edge=np.array(n_edge),
        labels=rng.integers(0, 2, num_graphs),
        task="multiclass",
        metric="accuracy",
        num_classes=2,
    )


def test_budget_ladder():
    assert [gb.round_up_budget(n) for n in (0, 1, 3, 5, 9, 11, 800, 1024, 1025, 1793)] == [
        1,
        1,
        4,
        5,
        10,
        12,
        896,
        1024,
        1280,
        2048,
    ]
    for n in range(8, 5000, 37):
        b = gb.round_up_budget(n)
        assert n <= b < 1.25 * n  # at most a fifth of the budget is padding


def test_padding_compiles_once_per_budget():
    ds = _random_graphs(300)
    traces = []

    @jax.jit
    def step(graphs):
        traces.append(graphs.nodes.shape)  # runs only when jit traces, i.e. compiles
        mask = jraph.get_graph_padding_mask(graphs)
        pooled = graph_layers.global_mean_pool(graphs.nodes, graphs.n_node)
        return jnp.where(mask[:, None], pooled, 0).sum()

    raw_sizes, budgets = set(), set()
    rng = np.random.default_rng(1)
    for _ in range(3):  # epochs
        for graphs, budget in gb.iterate_batches(ds, np.arange(len(ds)), 16, rng=rng, min_nodes=16):
            real = gb.real_graph_mask(graphs)
            assert real.tolist() == np.asarray(jraph.get_graph_padding_mask(graphs)).tolist()
            raw_sizes.add((int(graphs.n_node[real].sum()), int(graphs.n_edge[real].sum())))
            budgets.add(budget)
            assert graphs.nodes.shape[0] == budget.n_node and len(graphs.senders) == budget.n_edge
            step(graphs)
    # Dozens of distinct batch sizes, yet one compilation per budget, and only a few budgets:
    # about one per rung of the batches' node counts, as the edge count's rung follows theirs.
    assert len(raw_sizes) > 30
    node_rungs = {gb.round_up_budget(n + 1) for n, _ in raw_sizes}
    assert len(traces) == len(budgets) <= len(node_rungs) + 3 < len(raw_sizes) / 3


def test_padding_preserves_pooled_values():
    ds = _random_graphs(10)
    graphs = ds.batch(np.arange(10))
    padded = gb.pad_to_budget(
        graphs, gb.budget_for(int(graphs.n_node.sum()), int(graphs.n_edge.sum()), 10)
    )
    pooled = np.asarray(
        graph_layers.global_mean_pool(jnp.asarray(padded.nodes), jnp.asarray(padded.n_node))
    )
    expected = [
        ds.nodes[ds.node_offsets[i] : ds.node_offsets[i + 1]].mean(axis=0) for i in range(10)
    ]
    np.testing.assert_allclose(pooled[:10], np.stack(expected), rtol=1e-5, atol=1e-6)
    assert np.asarray(jraph.get_graph_padding_mask(padded)).tolist() == [True] * 10 + [False]
    # The padding graph's edges stay among its own nodes.
    first_pad = int(graphs.n_node.sum())
    assert np.all(padded.senders[len(graphs.senders) :] >= first_pad)


def _smiles_atoms_and_bonds(smiles: str) -> tuple[int, int]:
    """Heavy atoms and bonds of one connected molecule, counted from its SMILES string alone:
    atoms are bracket atoms or organic-subset symbols; a tree over n atoms has n - 1 bonds,
    and each ring-closure label (a digit or %nn outside brackets, used in pairs) adds one."""
    assert "." not in smiles, "one molecule"
    unbracketed = re.sub(r"\[[^\]]*\]", "[]", smiles)
    atoms = smiles.count("[") + len(re.findall(r"Cl|Br|[BCNOPSFI]|[bcnops]", unbracketed))
    ring_labels = re.findall(r"%\d\d|\d", unbracketed)
    return atoms, atoms - 1 + len(ring_labels) // 2


def test_molbace_graph_0_from_the_raw_files(shared_data):
    """Graph 0's figures, derived without the loader: the first rows of OGB's raw CSVs, and
    the SMILES string of BACE_1 (mapping/mol.csv.gz), which gives the same molecule."""
    folder = shared_data / "ogb" / "ogbg_molbace"
    if not folder.is_dir():
        pytest.skip(f"needs {folder}")

    def first_row(name):
        with gzip.open(folder / name, "rt") as f:
            return next(csv.reader(f))

    label, nodes, edges = (
        first_row(f"raw/{n}.csv.gz") for n in ("graph-label", "num-node-list", "num-edge-list")
    )
    assert (int(label[0]), int(nodes[0]), int(edges[0])) == (1, 32, 35)
    with gzip.open(folder / "mapping" / "mol.csv.gz", "rt") as f:
        row = next(csv.DictReader(f))
    assert row["mol_id"] == "BACE_1" and int(row["Class"]) == 1
    assert _smiles_atoms_and_bonds(row["smiles"]) == (32, 35)
    # The loader agrees (OGB stores each bond once; jraph graphs hold both directions).
    ds = load_graph_dataset("ogbg-molbace", shared_data / "ogb")
    assert (int(np.ravel(ds.labels[0])[0]), int(ds.n_node[0]), int(ds.n_edge[0])) == (1, 32, 70)
