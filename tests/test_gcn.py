"""The GCN layer (dense reference, three-way gradient check), masked batch norm, the NNX models,
OGB-style metrics, and `jaxnets train gcn` end to end."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import jraph
import numpy as np
import pytest
from flax import nnx
from sklearn.metrics import roc_auc_score
from test_graph_data import _random_graphs, _write_tu

from jaxnets.cli import main as cli_main
from jaxnets.data import graph_batching as gb
from jaxnets.experiments.gcn import metrics
from jaxnets.gradcheck.cases import graph as graph_cases
from jaxnets.layers import graph, norm
from jaxnets.models.gcn import GCNGraphClassifier, GCNNodeClassifier


def _dense_gcn_reference(x, w, b, senders, receivers):
    """D^-1/2 (A + I) D^-1/2 X W + b with an explicit adjacency matrix, in float64 numpy."""
    n = x.shape[0]
    a = np.zeros((n, n))
    for s, r in zip(senders, receivers):
        a[r, s] += 1  # edge s -> r: row r gathers from column s (repeated edges count twice)
    a_hat = a + np.eye(n)
    d = a_hat.sum(axis=1)
    d_inv_sqrt = np.diag(1 / np.sqrt(d))
    return d_inv_sqrt @ a_hat @ d_inv_sqrt @ x @ w + b


def test_gcn_matches_dense_reference(x64):
    x, params, senders, receivers = graph_cases._gcn_args(jax.random.key(3))
    out = jax.jit(graph.gcn)(x, params, senders, receivers)  # jitted: eager dispatch is slower
    expected = _dense_gcn_reference(
        np.asarray(x),
        np.asarray(params["w"]),
        np.asarray(params["b"]),
        np.asarray(senders),
        np.asarray(receivers),
    )
    # float64 throughout: only roundoff separates the two, ~1e-15 relative.
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-12, atol=1e-12)
    # The sparse-input variant computes the same layer.
    sparse_x = graph.to_sparse(np.asarray(x))
    sparse_out = jax.jit(graph.sparse_gcn)(params, sparse_x, senders, receivers)
    np.testing.assert_allclose(np.asarray(sparse_out), expected, rtol=1e-12, atol=1e-12)


def _ogb_bond_gcn_reference(x, w, b, root, edge_embedding, senders, receivers):
    """OGB's GCNConv (ogb/examples/graphproppred/mol/conv.py) written out edge by edge in float64
    numpy: deg from the senders (`degree(row) + 1`), messages relu(h_j + e) * norm summed at the
    receivers, plus relu(h + root) / deg."""
    h = x @ w + b
    deg = 1 + np.bincount(senders, minlength=len(x))
    out = np.maximum(h + root, 0) / deg[:, None]
    for k, (s, r) in enumerate(zip(senders, receivers)):
        out[r] += np.maximum(h[s] + edge_embedding[k], 0) / np.sqrt(deg[s] * deg[r])
    return out


def test_bond_gcn_matches_ogb_reference(x64):
    # An undirected molecule-like graph (OGB's degree counts senders, this layer receivers:
    # equal when every edge is listed both ways) with an isolated node 4.
    undirected = np.array([[0, 1], [1, 2], [2, 0], [2, 3]])
    senders = np.concatenate([undirected[:, 0], undirected[:, 1]])
    receivers = np.concatenate([undirected[:, 1], undirected[:, 0]])
    rng = np.random.default_rng(0)
    x, w, b, root = (
        rng.normal(size=(5, 4)),
        rng.normal(size=(4, 3)),
        rng.normal(size=3),
        rng.normal(size=3),
    )
    edge_embedding = rng.normal(size=(len(senders), 3))
    params = {"w": w, "b": b, "root": root}
    out = jax.jit(graph.bond_gcn)(x, params, edge_embedding, senders, receivers)
    expected = _ogb_bond_gcn_reference(x, w, b, root, edge_embedding, senders, receivers)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-12, atol=1e-12)
    # Positive control: the ReLUs cut in this case (some messages are clipped to 0).
    assert np.mean(x @ w + b + root > 0) < 0.9


def test_gcn_isolated_node_and_symmetric_case(x64):
    # An undirected path 0-1-2 plus an isolated node 3: d = [2, 3, 2, 1].
    x = jnp.eye(4, dtype=jnp.float64)
    params = {"w": jnp.eye(4, dtype=jnp.float64), "b": jnp.zeros(4, jnp.float64)}
    senders, receivers = jnp.array([0, 1, 1, 2]), jnp.array([1, 0, 2, 1])
    out = np.asarray(jax.jit(graph.gcn)(x, params, senders, receivers))
    s6 = 1 / np.sqrt(6)
    expected = np.array(
        [[1 / 2, s6, 0, 0], [s6, 1 / 3, s6, 0], [0, s6, 1 / 2, 0], [0, 0, 0, 1]]
    )  # closed form of D^-1/2 (A + I) D^-1/2 for this graph
    np.testing.assert_allclose(out, expected, rtol=1e-14)


@pytest.mark.parametrize("case", graph_cases.CASES, ids=lambda c: c.name)
@pytest.mark.parametrize(
    "seed", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)]
)
def test_gradcheck(x64, case, seed):
    # Manual backward vs jax.vjp of the plain forward: the same sums in another order, so
    # <= 1e-8 (observed ~1e-15). vs central differences (h = 1e-5, float64): truncation
    # O(h^2) ~ 1e-10 plus roundoff 1e-16 / h ~ 1e-11 absolute, relative <= 1e-6 for these
    # unit-scale inputs (observed <= 7e-8).
    result = case.run(seed)
    assert result.manual_vs_autodiff <= 1e-8, result
    assert result.custom_vjp_vs_manual <= 1e-8, result
    assert result.manual_vs_numerical <= 1e-6, result


def test_gcn_rejects_bad_inputs():
    x, params = jnp.ones((4, 3)), {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    s, r = jnp.array([0, 1]), jnp.array([1, 0])
    with pytest.raises(ValueError, match="features"):
        graph.gcn(jnp.ones((4, 5)), params, s, r)
    with pytest.raises(TypeError, match="senders"):
        graph.gcn(x, params, s.astype(jnp.float32), r)
    with pytest.raises(ValueError, match="same shape"):
        graph.gcn(x, params, s, jnp.array([1]))


def test_masked_batchnorm_ignores_padding_rows():
    key = jax.random.key(0)
    x = jax.random.normal(key, (6, 3)) * 2 + 1
    params, state = norm.batchnorm_init(3)
    (ref, ref_state), _ = jax.jit(norm.batchnorm_forward, static_argnames="train")(
        x, params, state, train=True
    )
    # The same rows plus 4 padding rows of junk: real rows and statistics are unchanged.
    padded = jnp.concatenate([x, 100 * jnp.ones((4, 3))])
    mask = jnp.arange(10) < 6
    forward = jax.jit(graph.masked_batchnorm_forward, static_argnames="train")
    (out, new_state), _ = forward(padded, params, state, mask, train=True)
    np.testing.assert_allclose(out[:6], ref, rtol=1e-5, atol=1e-5)
    assert np.all(np.asarray(out[6:]) == 0)
    np.testing.assert_allclose(new_state["var"], ref_state["var"], rtol=1e-5)


# ----------------------------------------------------------------------------- models
@nnx.jit
def _apply(model, *inputs):
    # Jitted: op-by-op (eager) execution of the custom_vjp layers is far slower to run.
    return model(*inputs)


def test_node_classifier_outputs_log_probabilities():
    model = GCNNodeClassifier(5, 8, 3, num_layers=3, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (6, 5))
    s, r = jnp.array([0, 1, 2, 3, 4]), jnp.array([1, 2, 3, 4, 5])
    logp = _apply(model, x, s, r)
    assert logp.shape == (6, 3)
    np.testing.assert_allclose(np.exp(np.asarray(logp)).sum(axis=1), 1, rtol=1e-5)
    assert len(model.convs) == 3 and len(model.norms) == 2  # (conv-bn-relu-dropout) x 2, conv
    model.eval()
    np.testing.assert_array_equal(_apply(model, x, s, r), _apply(model, x, s, r))  # no dropout


def test_graph_classifier_is_padding_invariant():
    ds = _random_graphs(12)
    model = GCNGraphClassifier(
        2, hidden=16, num_layers=3, dropout=0.0, in_features=4, rngs=nnx.Rngs(0)
    )
    batch = ds.batch(np.arange(12))
    n, e = int(batch.n_node.sum()), int(batch.n_edge.sum())
    # The model reads the last graph as padding (jraph's convention): one padding node is the
    # least, a large budget with empty graphs the most; the 12 real outputs must agree.
    tight = jax.tree.map(jnp.asarray, gb.pad_to_budget(batch, gb.Budget(n + 1, e, 13)))
    loose = jax.tree.map(jnp.asarray, gb.pad_to_budget(batch, gb.Budget(1024, 4096, 20)))
    # Train mode uses batch statistics: the padding nodes must stay out of them.
    np.testing.assert_allclose(
        _apply(model, loose)[:12], _apply(model, tight)[:12], rtol=1e-4, atol=1e-5
    )
    model.eval()
    np.testing.assert_allclose(
        _apply(model, loose)[:12], _apply(model, tight)[:12], rtol=1e-4, atol=1e-5
    )


def test_atom_encoder_model_runs_on_categorical_features():
    dims = (5, 3)
    model = GCNGraphClassifier(1, hidden=8, num_layers=2, atom_feature_dims=dims, rngs=nnx.Rngs(0))
    nodes = np.array([[0, 1], [4, 2], [1, 0]], np.int32)  # 2 categorical features per atom
    g = jraph.GraphsTuple(
        nodes=nodes,
        edges=None,
        senders=np.array([0, 1]),
        receivers=np.array([1, 0]),
        n_node=np.array([2, 1]),
        n_edge=np.array([2, 0]),
        globals=None,
    )
    g = jax.tree.map(jnp.asarray, gb.pad_to_budget(g, gb.Budget(8, 4, 3)))
    model.eval()
    out = _apply(model, g)
    assert out.shape == (3, 1) and np.all(np.isfinite(np.asarray(out)))


# ----------------------------------------------------------------------------- metrics and loss
def test_rocauc_skips_single_class_tasks_and_missing_labels():
    y = np.array([[1, 0, np.nan], [0, 0, 1], [1, 0, 0], [np.nan, 0, 1]])
    score = np.array([[0.9, 0.1, 0.3], [0.2, 0.5, 0.8], [0.4, 0.3, 0.1], [0.5, 0.2, 0.7]])
    # Task 1 has one class only: skipped, as OGB does. Task 0 uses rows 0..2, task 2 rows 1..3.
    expected = np.mean(
        [roc_auc_score([1, 0, 1], [0.9, 0.2, 0.4]), roc_auc_score([1, 0, 1], [0.8, 0.1, 0.7])]
    )
    assert metrics.rocauc(y, score) == pytest.approx(expected)
    assert metrics.rmse(np.array([1.0, np.nan, 3.0]), np.array([2.0, 0.0, 3.0])) == pytest.approx(
        np.sqrt(0.5)
    )
    assert metrics.accuracy(np.array([0, 2]), np.array([[0.9, 0.1, 0.0], [0.1, 0.2, 0.7]])) == 1.0
    assert metrics.better("rmse", 0.5, 0.6) and metrics.better("rocauc", 0.7, 0.6)


def test_masked_bce_ignores_missing_labels_and_padding():
    logits = jnp.array([[2.0, -1.0], [0.5, 3.0], [9.0, 9.0]])
    labels = jnp.array([[1.0, jnp.nan], [0.0, 1.0], [0.0, 0.0]])
    mask = jnp.array([True, True, False])  # the third graph is padding
    z, y = np.array([2.0, 0.5, 3.0]), np.array([1.0, 0.0, 1.0])
    expected = np.mean(np.log1p(np.exp(-z)) + (1 - y) * z)  # BCE of the 3 known entries
    assert float(metrics.masked_loss("binary", logits, labels, mask)) == pytest.approx(
        expected, rel=1e-6
    )
    assert metrics.numpy_loss(
        "binary", np.asarray(logits[:2]), np.asarray(labels[:2])
    ) == pytest.approx(expected)


# ----------------------------------------------------------------------------- end to end
def test_train_gcn_cora_smoke(shared_data, tmp_path):
    out = tmp_path / "cora"
    args = [
        "train",
        "gcn",
        "--dataset",
        "cora",
        "--data-dir",
        str(shared_data),
        "--out",
        str(out),
        "--epochs",
        "3",
    ]
    assert cli_main(args) == 0
    results = json.loads((out / "results.json").read_text())
    # Measured 0.711 after these 3 epochs (2026-12-06); chance on Cora's 7 classes is ~0.14 and
    # the majority class 0.32, so 0.5 fails a model that does not learn.
    assert results["metric"] == "accuracy" and results["test_accuracy"] >= 0.5
    assert {"test_accuracy_mean", "test_accuracy_std", "val_accuracy"} <= set(results)
    seed_dir = out / "seed_0"
    lines = (seed_dir / "predictions.csv").read_text().splitlines()
    assert lines[0] == "index,task,y_pred,y_true" and len(lines) == 1001
    assert len((seed_dir / "metrics.jsonl").read_text().splitlines()) == 3
    assert (seed_dir / "curves.png").exists() and (out / "curves.png").exists()
    assert (seed_dir / "checkpoints" / "best").is_dir()


@pytest.mark.slow  # 40 s; the default tier is near its 10-minute budget
def test_train_gcn_bond_model_smoke(shared_data, tmp_path, capsys):
    out = tmp_path / "bace"
    args = ["train", "gcn", "--dataset", "ogbg-molbace", "--data-dir", str(shared_data / "ogb")]
    args += ["--model", "bond-gcn", "--hidden", "32", "--epochs", "2", "--out", str(out)]
    assert cli_main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["model"] == "bond-gcn" and results["metric"] == "rocauc"
    # The reported test ROC-AUC is the one of the saved predictions (152 test molecules).
    rows = (out / "seed_0" / "predictions.csv").read_text().splitlines()[1:]
    y_pred = [float(r.split(",")[2]) for r in rows]
    y_true = [float(r.split(",")[3]) for r in rows]
    assert len(rows) == 152
    assert results["test_rocauc"] == pytest.approx(roc_auc_score(y_true, y_pred), abs=1e-5)
    # Bond features exist only for molecules: any other dataset is one clear line, exit 2.
    capsys.readouterr()
    bad = ["train", "gcn", "--dataset", "cora", "--model", "bond-gcn", "--out", str(tmp_path / "x")]
    assert cli_main(bad) == 2
    err = capsys.readouterr().err.strip()
    assert "--model bond-gcn needs an ogbg-mol* dataset" in err and len(err.splitlines()) == 1


def test_train_gcn_tu_two_seeds(tmp_path):
    _write_tu(tmp_path / "data")
    # 3 graphs are too few to stratify; repeat them as a 30-graph TU dataset.
    out = tmp_path / "run"
    args = [
        "train",
        "gcn",
        "--dataset",
        "toy",
        "--data-dir",
        str(tmp_path / "data"),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--seeds",
        "2",
        "--hidden",
        "8",
        "--batch-size",
        "4",
    ]
    _tile_tu(tmp_path / "data", 10)
    assert cli_main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["seeds"] == [0, 1] and len(results["runs"]) == 2
    values = [r["test_accuracy"] for r in results["runs"]]
    assert results["test_accuracy_mean"] == pytest.approx(np.mean(values))
    assert results["test_accuracy_std"] == pytest.approx(np.std(values))
    assert results["split_sizes"] == {"train": 24, "valid": 3, "test": 3}


def _tile_tu(folder, times):
    """Repeat the 3-graph TU dataset `times` times (ids shifted), in place."""
    read = lambda s: (folder / f"TOY_{s}.txt").read_text().split()  # noqa: E731
    edges = [
        tuple(int(v) for v in line.split(","))
        for line in (folder / "TOY_A.txt").read_text().splitlines()
    ]
    indicator, glabels, nlabels = read("graph_indicator"), read("graph_labels"), read("node_labels")
    n, g = len(indicator), len(glabels)
    (folder / "TOY_A.txt").write_text(
        "".join(f"{u + k * n}, {v + k * n}\n" for k in range(times) for u, v in edges)
    )
    (folder / "TOY_graph_indicator.txt").write_text(
        "".join(f"{int(i) + k * g}\n" for k in range(times) for i in indicator)
    )
    (folder / "TOY_graph_labels.txt").write_text("\n".join(glabels * times) + "\n")
    (folder / "TOY_node_labels.txt").write_text("\n".join(nlabels * times) + "\n")


def test_compare_gcn_on_graph_batches_overlays_every_step(tmp_path):
    """`jaxnets compare gcn` on a graph dataset: both runs record every step's loss, and the
    hand-derived and autodiff gradients give the same curve up to float32 rounding."""
    _write_tu(tmp_path / "data")
    _tile_tu(tmp_path / "data", 10)
    out = tmp_path / "compare"
    flags = ["--dataset", "toy", "--data-dir", str(tmp_path / "data"), "--epochs", "2"]
    flags += ["--hidden", "8", "--batch-size", "4", "--out", str(out)]
    assert cli_main(["compare", "gcn", *flags]) == 0
    report = json.loads((out / "compare.json").read_text())
    # 24 training graphs in batches of 4: 6 steps an epoch, every one recorded.
    assert report["recorded_losses"] == 12
    difference = report["largest_loss_difference"]
    # Two orders of float32 summation, compounded by Adam: the GCN biases just before batch
    # norm have a true gradient of 0 (the norm removes the mean), so Adam turns their rounding
    # noise into steps of the full learning rate (1e-3) whose signs differ between the runs;
    # measured 5e-4 of the loss after 8 steps.
    assert difference["relative"] < 2e-3, difference
    assert (out / "compare.png").stat().st_size > 0


def test_weight_averaging_scores_the_average_and_leaves_training_alone(tmp_path):
    """`--average-decay`: the training steps (and so every step's loss) are those of the plain
    run; validation and test score the moving average instead, so their losses differ."""
    _write_tu(tmp_path / "data")
    _tile_tu(tmp_path / "data", 10)
    flags = ["train", "gcn", "--dataset", "toy", "--data-dir", str(tmp_path / "data")]
    flags += ["--epochs", "2", "--hidden", "8", "--batch-size", "4"]
    records = {}
    for name, extra in (("plain", []), ("averaged", ["--average-decay", "0.9"])):
        assert cli_main([*flags, *extra, "--out", str(tmp_path / name)]) == 0
        lines = (tmp_path / name / "seed_0" / "metrics.jsonl").read_text().splitlines()
        records[name] = [json.loads(line) for line in lines]
    for plain, averaged in zip(records["plain"], records["averaged"]):
        assert plain["step_losses"] == averaged["step_losses"]
        assert plain["val_loss"] != averaged["val_loss"]
    results = json.loads((tmp_path / "averaged" / "results.json").read_text())
    assert results["config"]["average_decay"] == 0.9
