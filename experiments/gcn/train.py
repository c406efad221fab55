"""Train GCNs: full-batch node classification (Cora, ogbn-*) and padded mini-batches of graphs
(ENZYMES, ogbg-*). Each seed gets its own run folder; the best epoch by validation is kept,
checkpointed and evaluated; results over seeds go to OUT/results.json as mean and std.

With several devices the runs are data-parallel as the `Trainer`'s: parameters replicated, and
the nodes, edges (and graphs) of each batch split along the mesh's data axis, padded to a
multiple of the device count; XLA partitions the gathers and segment sums between them.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import os
import shutil
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import jraph
import numpy as np
import optax
from flax import nnx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sklearn.model_selection import train_test_split

from jaxnets import nn
from jaxnets.data.graph_batching import iterate_batches, real_graph_mask, round_up_to
from jaxnets.data.graphs import (
    GraphDataset,
    NodeDataset,
    atom_feature_dims,
    bond_feature_dims,
    load_graph_dataset,
    row_normalize,
)
from jaxnets.errors import TrainingDiverged
from jaxnets.experiments.gcn import metrics
from jaxnets.experiments.gcn.config import GCNConfig
from jaxnets.layers.graph import SparseMatrix, to_sparse
from jaxnets.models.gcn import BondGCNGraphClassifier, GCNGraphClassifier, GCNNodeClassifier
from jaxnets.training.averaging import update_average
from jaxnets.training.checkpoints import Checkpoints
from jaxnets.training.metrics import loss_diverged
from jaxnets.training.plots import plot_curves
from jaxnets.training.run_dir import RunDir
from jaxnets.training.sharding import default_mesh, replicate, shard_batch
from jaxnets.training.trainer import jit_bound, train_and_eval_views

SPLITS = ("train", "valid", "test")


# ----------------------------------------------------------------------------- jitted steps
def _train_step(model, optimizer, inputs, labels, mask, *, task: str) -> jax.Array:
    """One Adam step on the masked loss; `inputs` is a GraphsTuple or (x, senders, receivers)."""

    def loss_fn(model):
        return metrics.masked_loss(task, _forward(model, inputs), labels, mask)

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss


def _averaging_train_step(
    model, optimizer, averaged, inputs, labels, mask, *, task: str, decay: float
) -> jax.Array:
    """`_train_step`, then the weight average moves toward the new weights."""
    loss = _train_step(model, optimizer, inputs, labels, mask, task=task)
    update_average(averaged, model, optimizer.step[...] - 1, decay)
    return loss


def _forward(model, inputs):
    if isinstance(inputs, jraph.GraphsTuple):
        return model(inputs)
    return model(*inputs)


class Steps:
    """The jitted steps of one model and its optimizer, bound to them once (`jit_bound`):
    `train(inputs, labels, mask) -> loss` on the train view (dropout, batch statistics) and
    `predict(inputs) -> outputs` on the eval view of `scored`: the model itself, or its weight
    average (`averaged`, updated by every train step with `decay`)."""

    def __init__(
        self,
        model: nnx.Module,
        optimizer: nnx.Optimizer,
        task: str,
        averaged: nnx.Module | None = None,
        decay: float = 0.0,
    ):
        train_view, _ = train_and_eval_views(model)
        if averaged is None:
            step = functools.partial(_train_step, task=task)
            self.train = jit_bound(step, train_view, optimizer)
        else:
            step = functools.partial(_averaging_train_step, task=task, decay=decay)
            self.train = jit_bound(step, train_view, optimizer, averaged)
        self.scored = model if averaged is None else averaged
        self.predict = jit_bound(_forward, train_and_eval_views(self.scored)[1])


def _optimizer(model: nnx.Module, config: GCNConfig) -> nnx.Optimizer:
    tx = optax.adam(config.learning_rate)
    if config.weight_decay:
        tx = optax.chain(optax.add_decayed_weights(config.weight_decay), tx)
    return nnx.Optimizer(model, tx, wrt=nnx.Param)


@functools.partial(nnx.jit, static_argnums=0)
def create_model_and_optimizer(task: Task, seed: jax.Array) -> tuple[nnx.Module, nnx.Optimizer]:
    """Model and optimizer built in one compiled program (op-by-op init compiles every op);
    the seed is traced, so all seeds share the compilation."""
    model = task.model(seed)
    return model, _optimizer(model, task.config)


def _snapshot(model: nnx.Module, optimizer: nnx.Optimizer, averaged: nnx.Module | None) -> dict:
    """The model, optimizer and (with weight averaging) the scored average, as of now."""
    # nnx.state holds the live Variables; a tree.map copies the containers and keeps the current
    # (immutable) arrays, which later steps replace rather than overwrite.
    state = {"model": nnx.state(model), "opt": nnx.state(optimizer)}
    if averaged is not None:
        state["averaged"] = nnx.state(averaged)
    return jax.tree.map(lambda a: a, state)


# ----------------------------------------------------------------------------- one run
@dataclasses.dataclass(
    eq=False
)  # hashed by identity: a static argument of create_model_and_optimizer
class Task:
    """What the training loop needs from a dataset: how to step, evaluate and predict."""

    dataset: NodeDataset | GraphDataset
    config: GCNConfig

    def __post_init__(self):
        ds, config = self.dataset, self.config
        self.metric, self.task = ds.metric, ds.task
        self.mesh = default_mesh()
        self.devices = 1 if self.mesh is None else self.mesh.devices.size
        if isinstance(ds, NodeDataset):
            x = ds.graph.nodes
            x = row_normalize(x) if config.normalize_features else x
            # Bag-of-words features (Cora: 1.3% nonzero) go in sparse: far less work per step.
            x = to_sparse(x) if np.mean(x != 0) < 0.1 else jnp.asarray(x)
            inputs = (x, np.asarray(ds.graph.senders), np.asarray(ds.graph.receivers))
            labels, train_mask = np.asarray(ds.labels), ds.mask("train")
            if self.mesh is not None:
                inputs, labels, train_mask = _pad_full_graph(
                    inputs, labels, train_mask, self.devices
                )
            self.inputs = self._place(inputs)
            self.labels, self.train_mask = self._place((labels, train_mask))
            self.splits = ds.splits
        else:
            self.splits = ds.splits or _stratified_split(ds, config.split_seed)

    def _place(self, tree: Any) -> Any:
        """Split along the data axis with several devices; else put on the default device."""
        return jax.device_put(tree) if self.mesh is None else shard_batch(tree, self.mesh)

    def replicate(self, *modules: nnx.Module) -> None:
        if self.mesh is not None:
            for module in modules:
                nnx.update(module, replicate(nnx.state(module), self.mesh))

    def batches(self, indices: np.ndarray, batch_size: int, rng=None):
        """(sharded padded GraphsTuple, host mask of its real graphs) for each batch."""
        for graphs, _ in iterate_batches(
            self.dataset, indices, batch_size, rng=rng, multiple_of=self.devices
        ):
            yield self._place(graphs), real_graph_mask(graphs)

    def model(self, seed: int | jax.Array) -> nnx.Module:
        """The model for `seed`, its layers' backward as config.gradients says."""
        return nn.set_gradients(self._build(seed), nn.default_gradients(self.config.gradients))

    def _build(self, seed: int | jax.Array) -> nnx.Module:
        ds, c = self.dataset, self.config
        rngs = nnx.Rngs(params=jax.random.key(seed), dropout=jax.random.key(seed + 1))
        if isinstance(ds, NodeDataset):
            return GCNNodeClassifier(
                ds.num_features,
                c.hidden,
                ds.num_classes,
                num_layers=c.num_layers,
                dropout=c.dropout,
                batchnorm=c.batchnorm,
                input_dropout=c.input_dropout,
                rngs=rngs,
            )
        out_dim = ds.num_classes if ds.task == "multiclass" else ds.num_tasks
        if c.model == "bond-gcn":
            return BondGCNGraphClassifier(
                out_dim,
                atom_feature_dims=atom_feature_dims(ds),
                bond_feature_dims=bond_feature_dims(ds),
                hidden=c.hidden,
                num_layers=c.num_layers,
                dropout=c.dropout,
                rngs=rngs,
            )
        features = (
            {"atom_feature_dims": atom_feature_dims(ds)}
            if ds.categorical
            else {"in_features": ds.num_features}
        )
        return GCNGraphClassifier(
            out_dim,
            hidden=c.hidden,
            num_layers=c.num_layers,
            dropout=c.dropout,
            batchnorm=c.batchnorm,
            rngs=rngs,
            **features,
        )

    def train_epoch(self, steps: Steps, rng: np.random.Generator) -> list[float]:
        """One epoch's training losses, one per step (a single full-batch step for nodes)."""
        if isinstance(self.dataset, NodeDataset):
            return [float(steps.train(self.inputs, self.labels, self.train_mask))]
        losses = []
        for graphs, real in self.batches(self.splits["train"], self.config.batch_size, rng):
            losses.append(steps.train(graphs, graphs.globals, self._place(real)))
        return [float(v) for v in jax.device_get(losses)]

    def outputs(self, steps: Steps, splits=SPLITS) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """split -> (model outputs, labels), in eval mode."""
        ds = self.dataset
        if isinstance(ds, NodeDataset):
            out = np.asarray(steps.predict(self.inputs))
            return {s: (out[self.splits[s]], ds.labels[self.splits[s]]) for s in splits}
        result = {}
        for split in splits:
            chunks = []
            for graphs, real in self.batches(self.splits[split], self.config.eval_batch_size):
                chunks.append(np.asarray(steps.predict(graphs))[real])
            result[split] = (np.concatenate(chunks), ds.labels[self.splits[split]])
        return result

    def scores(self, outputs: dict) -> dict[str, float]:
        record = {}
        for split, (out, y) in outputs.items():
            name = "val" if split == "valid" else split
            record[f"{name}_loss"] = metrics.numpy_loss(self.task, out, y)
            record[f"{name}_{self.metric}"] = metrics.evaluate(self.metric, y, out)
        return record


def _pad_full_graph(inputs: tuple, labels: np.ndarray, train_mask: np.ndarray, multiple: int):
    """Pad a whole graph so nodes, edges and feature nonzeros divide by `multiple`: padding nodes
    (zero features, label 0, out of every split and of the batch-norm statistics through the
    node mask that becomes the fourth input) and padding edges that are self loops on the last
    padding node, so no real node's degree or neighbourhood changes."""
    x, senders, receivers = inputs
    n, e = len(labels), len(senders)
    n_pad = round_up_to(n + (e % multiple != 0), multiple)
    e_pad = round_up_to(e, multiple)
    loop = np.full(e_pad - e, n_pad - 1, senders.dtype)
    senders, receivers = np.concatenate([senders, loop]), np.concatenate([receivers, loop])
    if isinstance(x, SparseMatrix):
        extra = round_up_to(len(x.values), multiple) - len(x.values)
        x = SparseMatrix(  # explicit zeros at (0, 0): they add nothing
            jnp.pad(x.rows, (0, extra)),
            jnp.pad(x.cols, (0, extra)),
            jnp.pad(x.values, (0, extra)),
            (n_pad, x.shape[1]),
        )
    else:
        x = jnp.pad(x, ((0, n_pad - n), (0, 0)))
    node_mask = np.arange(n_pad) < n
    labels = np.pad(labels, [(0, n_pad - n)] + [(0, 0)] * (labels.ndim - 1))
    return (x, senders, receivers, node_mask), labels, np.pad(train_mask, (0, n_pad - n))


def _stratified_split(ds: GraphDataset, seed: int) -> dict[str, np.ndarray]:
    index = np.arange(len(ds))
    train, rest = train_test_split(index, test_size=0.2, stratify=ds.labels, random_state=seed)
    valid, test = train_test_split(rest, test_size=0.5, stratify=ds.labels[rest], random_state=seed)
    return {"train": np.sort(train), "valid": np.sort(valid), "test": np.sort(test)}


def train_one_seed(task: Task, seed: int, run: RunDir, progress: Progress) -> dict[str, Any]:
    """Train for config.epochs, keep the best epoch by validation, checkpoint it, write its
    predictions and curves; returns that epoch's scores."""
    config, metric = task.config, task.metric
    start = time.perf_counter()
    model, optimizer = create_model_and_optimizer(task, jnp.asarray(seed))
    averaged = nnx.clone(model) if config.average_decay else None
    task.replicate(model, optimizer, *([averaged] if averaged is not None else []))
    steps = Steps(model, optimizer, task.task, averaged, config.average_decay)
    rng = np.random.default_rng(seed)
    run.reset_metrics()
    shutil.rmtree(run.checkpoint_dir, ignore_errors=True)  # a fresh run, not a resume
    bar = progress.add_task(f"seed {seed}", total=config.epochs)
    # Full-batch node tasks score every split for free; for graph datasets one pass over the
    # training graphs would cost a third of an epoch, so the best model's is computed at the end.
    splits = SPLITS if isinstance(task.dataset, NodeDataset) else ("valid", "test")
    best, best_state = None, None
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        step_losses = task.train_epoch(steps, rng)
        train_loss = float(np.mean(step_losses))
        if loss_diverged(train_loss):
            raise TrainingDiverged(
                f"seed {seed} diverged in epoch {epoch}: the training loss is {train_loss:.3g}. "
                f"Try a lower learning rate (--lr, now {config.learning_rate:g})"
            )
        record = {
            "epoch": epoch,
            "train_step_loss": train_loss,
            **task.scores(task.outputs(steps, splits)),
            "epoch_seconds": time.perf_counter() - epoch_start,  # training and scoring
        }
        if splits != SPLITS:  # graph batches: train_loss is not scored, so keep every step's
            record["step_losses"] = step_losses  # for `jaxnets compare`
        run.log(record)
        if metrics.better(metric, record[f"val_{metric}"], best and best[f"val_{metric}"]):
            best, best_state = record, _snapshot(model, optimizer, averaged)
        progress.update(
            bar,
            advance=1,
            description=f"seed {seed} val {metric} {record[f'val_{metric}']:.4f} "
            f"(best {best[f'val_{metric}']:.4f} @ {best['epoch']})",
        )
    last_state = _snapshot(model, optimizer, averaged)
    # Checkpoints once per run, not per epoch: an orbax save takes longer than a Cora epoch.
    checkpoints = Checkpoints(run.checkpoint_dir)
    meta = {"best_epoch": best["epoch"], f"val_{metric}": best[f"val_{metric}"]}
    checkpoints.save(best["epoch"], best_state, meta, is_best=True)
    if best["epoch"] != config.epochs:
        checkpoints.save(config.epochs, last_state, meta, is_best=False)
    checkpoints.close()

    nnx.update(steps.scored, best_state["averaged" if averaged is not None else "model"])
    outputs = task.outputs(steps)
    final = task.scores(outputs)
    _write_predictions(task, outputs, run.file("predictions.csv"))
    panels = {
        "loss": ["train_step_loss", "train_loss", "val_loss"],
        metric: [f"train_{metric}", f"val_{metric}", f"test_{metric}"],
    }
    records = run.records()
    plot_curves(
        records,
        run.file("curves.png"),
        panels=panels,
        title=f"GCN on {config.dataset}, seed {seed}",
    )
    return {
        "seed": seed,
        "best_epoch": best["epoch"],
        "train_step_loss": best["train_step_loss"],
        **final,
        "seconds": time.perf_counter() - start,
        "dir": str(run.path),
    }


def _write_predictions(task: Task, outputs: dict, path: Path) -> None:
    """One row per test item (node or graph) and task: y_pred is the predicted class, the
    probability of the positive class, or the regressed value; y_true the label."""
    out, y = outputs["test"]
    index = task.splits["test"]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "task", "y_pred", "y_true"])
        if task.task == "multiclass":
            for i, p, t in zip(index, out.argmax(axis=1), y):
                writer.writerow([i, 0, int(p), int(t)])
            return
        pred = 1 / (1 + np.exp(-out)) if task.task == "binary" else out
        y = np.asarray(y).reshape(pred.shape)
        for row, i in enumerate(index):
            for t in range(pred.shape[1]):
                writer.writerow(
                    [i, t, f"{pred[row, t]:.6g}", "" if np.isnan(y[row, t]) else y[row, t]]
                )


# ----------------------------------------------------------------------------- all seeds
def train_and_evaluate(
    config: GCNConfig,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    download: bool = False,
    overwrite: bool = False,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run config.seeds seeds, write OUT/results.json (with *_mean/*_std over seeds) and
    OUT/curves.png; each seed's metrics, checkpoints, predictions.csv and curves.png go to
    OUT/seed_<seed>/. overwrite: replace a run already in OUT (else it is refused)."""
    out = RunDir(out_dir).claim(
        "train gcn", dataclasses.asdict(config), overwrite=overwrite, resumable=False
    )
    dataset = load_graph_dataset(
        config.dataset, data_dir, download=download, use_node_attr=config.use_node_attr
    )
    task = Task(dataset, config)
    out.start()
    runs = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console or Console(),
    ) as progress:
        for k in range(config.seeds):
            seed = config.seed + k
            try:
                runs.append(train_one_seed(task, seed, RunDir(out.path / f"seed_{seed}"), progress))
            except TrainingDiverged:
                out.set_status("diverged", diverged_seed=seed)
                raise

    results = {
        "experiment": "gcn",
        "dataset": config.dataset,
        "format": dataset.format,
        "task": dataset.task,
        "metric": task.metric,
        "gradients": nn.default_gradients(config.gradients),
        "seeds": [r["seed"] for r in runs],
    }
    names = [k for k in runs[0] if k.startswith(("train_", "val_", "test_"))] + ["seconds"]
    for name in names:
        values = np.array([r[name] for r in runs], np.float64)
        if name != "seconds":
            results[name] = float(values.mean())
        results[f"{name}_mean"], results[f"{name}_std"] = float(values.mean()), float(values.std())
    results.update(
        runs=runs,
        config=dataclasses.asdict(config),
        source=dataset.source,
        split_sizes={s: len(i) for s, i in task.splits.items()},
    )
    _plot_seeds(out, runs, task.metric, config.dataset)
    out.finish(results)
    return results


def _plot_seeds(out: RunDir, runs: list[dict], metric: str, dataset: str) -> None:
    by_epoch: dict[int, dict] = {}
    for r in runs:
        for rec in RunDir(r["dir"]).records():
            row = by_epoch.setdefault(rec["epoch"], {"epoch": rec["epoch"]})
            row[f"val seed {r['seed']}"] = rec[f"val_{metric}"]
            row[f"train loss seed {r['seed']}"] = rec["train_step_loss"]
    panels = {
        "train loss": [f"train loss seed {r['seed']}" for r in runs],
        f"val {metric}": [f"val seed {r['seed']}" for r in runs],
    }
    plot_curves(
        list(by_epoch.values()), out.file("curves.png"), panels=panels, title=f"GCN on {dataset}"
    )
