"""The training loop of the image, transfer and BERT experiments.

An experiment supplies a Flax NNX model, an optax transformation and a loss function

    loss_fn(model, batch, *, train: bool) -> (loss, {name: Mean | scalar})

over a batch that is any dict of arrays (images and labels, a graph with node masks, token ids).
The `Mean`s (jaxnets.training.metrics) carry weighted totals, so a padded final batch whose
"mask" zeroes its extra rows still gives exact epoch metrics. The trainer does the rest:

- jitted train and eval steps (`nnx.jit_partial` in tree mode by default: model and optimizer are
  flattened once, which makes a step's Python overhead that of plain `jax.jit`);
- train and eval *views* of the model (`nnx.view`: dropout on / off, batch-norm batch statistics /
  running averages) sharing the same variables, so no mode flag is ever flipped by hand;
- per epoch: train metrics (running over the epoch) and validation metrics, one JSON line in
  `metrics.jsonl` (`epoch`, `step`, `train_*`, `val_*`, `lr`, `epoch_seconds`, `seconds`, and
  `step_losses`, every step's training loss);
- orbax checkpoints after every epoch: the last one, and the best one by `best_metric`;
- `resume=True` restores the last checkpoint (parameters, batch-norm statistics, dropout RNG
  counters, optimizer state and step) and continues with the next epoch. Batches depend on
  (seed, epoch) only, so an interrupted and resumed run ends where an uninterrupted one does;
- a rich progress bar and a one-line summary per epoch.

GCN (`jaxnets.experiments.gcn.train`) keeps its own short loop, on the same `jit_bound` steps
and views: it trains several seeds in one process, each keeping its best epoch in memory and
checkpointing once at the end (a Cora epoch is shorter than an orbax save), its graph batches
change padded shape from step to step, and full-batch node tasks have one step per epoch.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from jaxnets.data.pipeline import pad_batch
from jaxnets.errors import TrainingDiverged, TrainingInterrupted
from jaxnets.training.checkpoints import Checkpoints
from jaxnets.training.metrics import Mean, loss_diverged, reduce_means
from jaxnets.training.run_dir import RunDir
from jaxnets.training.sharding import default_mesh, replicate, shard_batch

Batch = dict[str, Any]
LossFn = Callable[..., tuple[jax.Array, dict[str, Any]]]
EpochCallback = Callable[[int, dict[str, Any]], None]


def count_params(model: nnx.Module, wrt: Any = nnx.Param) -> int:
    """Number of scalars in the variables `wrt` selects (default: every `nnx.Param`)."""
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, wrt)))


def jit_bound(fn: Callable, *nodes: Any, graph: bool = False) -> Callable:
    """`fn(*nodes, ...)` jitted with `nodes` (modules, optimizers) bound once; their variables
    update in place. `nnx.jit` would walk every node's variables in Python on each call, which
    on a small CPU takes time from the step's own XLA threads."""
    if graph:  # graph mode: shared variables (e.g. tied embeddings) allowed, more overhead
        return nnx.cached_partial(nnx.jit(fn), *nodes)
    return nnx.jit_partial(fn, *nodes, graph=False)


def train_and_eval_views(model: nnx.Module) -> tuple[nnx.Module, nnx.Module]:
    """(train view: dropout on, batch statistics; eval view: dropout off, running averages).
    Views share the model's variables; only the static mode attributes differ."""
    mode = {"raise_if_not_found": False}
    return (
        nnx.view(model, deterministic=False, use_running_average=False, **mode),
        nnx.view(model, deterministic=True, use_running_average=True, **mode),
    )


def _train_step_fn(loss_fn: LossFn, wrt: Any) -> Callable:
    def train_step(model: nnx.Module, optimizer: nnx.Optimizer, batch: Batch) -> dict[str, Any]:
        def objective(model):
            return loss_fn(model, batch, train=True)

        grad_fn = nnx.value_and_grad(objective, argnums=nnx.DiffState(0, wrt), has_aux=True)
        (_, metrics), grads = grad_fn(model)
        optimizer.update(model, grads)
        return metrics

    return train_step


def _eval_step_fn(loss_fn: LossFn) -> Callable:
    def eval_step(model: nnx.Module, batch: Batch) -> dict[str, Any]:
        return loss_fn(model, batch, train=False)[1]

    return eval_step


def _scalar(value: Any) -> float:
    if isinstance(value, Mean):
        return float(value.total) / max(float(value.count), 1e-12)
    return float(value)


class Trainer:
    """Train `model` with `tx` on `loss_fn`, logging to and checkpointing in `run_dir`.

    best_metric / maximize: the record entry that picks the "best" checkpoint (e.g.
        "val_accuracy", or "val_loss" with maximize=False). Without it every epoch is the best.
    learning_rate_fn: the schedule inside `tx`, only to log `lr` per epoch.
    progress: show a progress bar (rich); `log_every` steps between loss readings on it (each
        reading waits for the device, so not every step).
    graph: jit in NNX graph mode (needed if the model shares a variable between two places).
    wrt: the variables to train (an NNX filter), e.g. `nnx.All(nnx.Param, nnx.PathContains(
        "head"))` to fine-tune a head on a frozen encoder; the rest stay as they are.
    """

    def __init__(
        self,
        model: nnx.Module,
        tx: optax.GradientTransformation,
        loss_fn: LossFn,
        run_dir: RunDir | str | os.PathLike,
        *,
        best_metric: str = "val_accuracy",
        maximize: bool = True,
        learning_rate_fn: Callable[[Any], Any] | None = None,
        console: Console | None = None,
        progress: bool = True,
        log_every: int = 20,
        graph: bool = False,
        mesh: jax.sharding.Mesh | None = None,
        wrt: Any = nnx.Param,
    ):
        self.model = model
        self.optimizer = nnx.Optimizer(model, tx, wrt=wrt)
        self.loss_fn = loss_fn
        self.run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
        self.best_metric, self.maximize = best_metric, maximize
        self.learning_rate_fn = learning_rate_fn
        self.console = console or Console()
        self.progress, self.log_every, self.graph = progress, log_every, graph
        self.train_model, self.eval_model = train_and_eval_views(model)
        self._train_step = jit_bound(
            _train_step_fn(loss_fn, wrt), self.train_model, self.optimizer, graph=graph
        )
        self._eval_step = jit_bound(_eval_step_fn(loss_fn), self.eval_model, graph=graph)
        self._predict_steps: dict[Callable, Callable] = {}
        self.checkpoints: Checkpoints | None = None
        self.epoch = 0  # epochs completed
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.seconds = 0.0  # training + validation time over all sessions of this run
        self.resumed_meta: dict[str, Any] | None = None
        self.mesh = mesh if mesh is not None else default_mesh()
        self._place()

    def _place(self) -> None:
        """Replicate the model and optimizer state over the mesh (after init and restores)."""
        if self.mesh is not None:
            self._load(replicate(self.state(), self.mesh))

    def _shard(self, batch: Batch) -> Batch:
        if self.mesh is None:
            return batch
        devices = self.mesh.devices.size
        rows = len(next(iter(batch.values())))
        if rows % devices and "mask" in batch:
            # A short (last) batch: pad it to a multiple of the device count with rows whose
            # mask is False, which weigh nothing in the metrics.
            batch = pad_batch(
                {k: np.asarray(v) for k, v in batch.items()}, -(-rows // devices) * devices
            )
        return shard_batch(batch, self.mesh)

    # ------------------------------------------------------------------------- state
    def state(self) -> dict[str, Any]:
        """Everything training changes: parameters, batch statistics, RNG counters, optimizer."""
        return {"model": nnx.state(self.model), "opt": nnx.state(self.optimizer)}

    def _load(self, state: dict[str, Any]) -> None:
        nnx.update(self.model, state["model"])
        nnx.update(self.optimizer, state["opt"])

    @property
    def step(self) -> int:
        return int(self.optimizer.step[...])

    def _open_checkpoints(self, resume: bool) -> dict[str, Any] | None:
        """Open the run's checkpoints; restore the last one when resuming, else start clean."""
        directory = self.run.checkpoint_dir
        if not resume and directory.exists():
            shutil.rmtree(directory)  # a fresh run in an old folder must not inherit its steps
        self.checkpoints = Checkpoints(directory)
        if not resume:
            return None
        restored = self.checkpoints.restore_last(self.state())
        if restored is None:
            self.console.print(f"--resume: no checkpoint in {directory}; starting from epoch 1")
            return None
        _, state, meta = restored
        self._load(state)
        self._place()
        return meta

    def restore(self, which: str = "best", *, required: bool = False) -> int | None:
        """Load the "best" or "last" checkpoint's state into the model; returns its epoch (None
        if there is none, or FileNotFoundError with `required`)."""
        if which not in ("best", "last"):
            raise ValueError(f"checkpoint must be 'best' or 'last', got {which!r}")
        if self.checkpoints is None:
            self.checkpoints = Checkpoints(self.run.checkpoint_dir)
        checkpoints = self.checkpoints
        restore = checkpoints.restore_best if which == "best" else checkpoints.restore_last
        restored = restore(self.state())
        if restored is None:
            if required:
                raise FileNotFoundError(f"no {which} checkpoint in {self.run.checkpoint_dir}")
            return None
        _, state, meta = restored
        self._load(state)
        self._place()
        return int(meta["epoch"])

    def close(self) -> None:
        if self.checkpoints is not None:
            self.checkpoints.close()
            self.checkpoints = None

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------------- loops
    def evaluate(self, batches: Iterable[Batch]) -> dict[str, float]:
        """Exact metrics over `batches` with the eval view (padded rows weigh nothing)."""
        return reduce_means(self._eval_step(self._shard(batch)) for batch in batches)

    def predict(
        self, batches: Iterable[Batch], fn: Callable[[nnx.Module, Batch], jax.Array]
    ) -> np.ndarray:
        """`fn(eval_model, batch)` over `batches`, jitted, rows where batch["mask"] is False
        dropped, concatenated on the host (e.g. fn returning logits.argmax(-1))."""
        if fn not in self._predict_steps:
            self._predict_steps[fn] = jit_bound(fn, self.eval_model, graph=self.graph)
        step, outs = self._predict_steps[fn], []
        for batch in batches:
            batch = self._shard(batch)
            out = np.asarray(step(batch))
            outs.append(out[np.asarray(batch["mask"], bool)] if "mask" in batch else out)
        return np.concatenate(outs) if outs else np.zeros((0,))

    def _improved(self, record: dict[str, Any]) -> bool:
        value = record.get(self.best_metric)
        if value is None:
            return True  # nothing to compare: the last epoch is the best one
        if self.best_value is None:
            return True
        return value > self.best_value if self.maximize else value < self.best_value

    def fit(
        self,
        train_batches: Callable[[int], Iterable[Batch]],
        epochs: int,
        *,
        val_batches: Callable[[], Iterable[Batch]] | None = None,
        validate: Callable[[Trainer], dict[str, float]] | None = None,
        steps_per_epoch: int | None = None,
        resume: bool = False,
        meta: dict[str, Any] | None = None,
        on_epoch_end: EpochCallback | None = None,
    ) -> list[dict[str, Any]]:
        """Train up to epoch `epochs` (1-based); returns every epoch's record of the run.

        train_batches(epoch): the training batches of that epoch. They must depend only on the
            epoch (and fixed seeds) for a resumed run to repeat the uninterrupted one.
        val_batches(): validation batches; their metrics are logged as `val_<name>`.
        validate(trainer): extra metrics to log, e.g. a ROC-AUC that is no mean over batches.
        resume: continue from the last checkpoint in the run folder (epochs after it that were
            logged but not checkpointed are dropped from metrics.jsonl and redone).
        meta: JSON saved with each checkpoint (e.g. the config); the restored one is in
            `self.resumed_meta`.
        on_epoch_end(epoch, record): called after the epoch is logged and checkpointed.
        """
        restored = self._open_checkpoints(resume)
        if restored is None:
            self.run.reset_metrics()
            self.epoch, self.best_value, self.best_epoch, self.seconds = 0, None, None, 0.0
        else:
            self.resumed_meta = restored
            self.epoch = int(restored["epoch"])
            self.best_value, self.best_epoch = restored["best_value"], restored["best_epoch"]
            self.seconds = float(restored["seconds"])
            self.run.keep_records(lambda r: r.get("epoch", 0) <= self.epoch)
            self.console.print(
                f"resumed from the epoch {self.epoch} checkpoint in {self.run.checkpoint_dir} "
                f"(step {self.step})"
            )
            if self.epoch >= epochs:
                self.console.print(f"the run has all its {epochs} epochs: nothing left to train")
            changed = _differences({k: restored.get(k) for k in meta or {}}, meta or {})
            if changed:
                self.console.print(
                    f"[yellow]warning:[/] the checkpoint was made with other settings "
                    f"({', '.join(changed)}): the result will differ from an uninterrupted run"
                )

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        try:
            with Progress(*columns, console=self.console, disable=not self.progress) as bar:
                for epoch in range(self.epoch + 1, epochs + 1):
                    start = time.perf_counter()
                    train_metrics, step_losses = self.train_epoch(
                        train_batches(epoch),
                        epoch=epoch,
                        epochs=epochs,
                        steps=steps_per_epoch,
                        bar=bar,
                    )
                    record: dict[str, Any] = {"epoch": epoch, "step": self.step}
                    record.update({f"train_{k}": v for k, v in train_metrics.items()})
                    if "train_loss" in record:
                        self._check_finite(record["train_loss"], epoch, self.step)
                    if val_batches is not None:
                        record.update(
                            {f"val_{k}": v for k, v in self.evaluate(val_batches()).items()}
                        )
                    if validate is not None:
                        record.update(validate(self))
                    if self.learning_rate_fn is not None:
                        record["lr"] = float(self.learning_rate_fn(self.step - 1))
                    epoch_seconds = time.perf_counter() - start
                    self.seconds += epoch_seconds
                    record.update(epoch_seconds=epoch_seconds, seconds=self.seconds)
                    if step_losses:
                        record["step_losses"] = step_losses  # for `jaxnets compare`

                    improved = self._improved(record)
                    if improved:
                        self.best_value, self.best_epoch = record.get(self.best_metric), epoch
                    self.epoch = epoch
                    # Log first, then checkpoint: a crash in between leaves a record that resume
                    # drops (it keeps records up to the checkpoint's epoch) and recomputes.
                    self.run.log(record)
                    checkpoint_meta = {
                        **(meta or {}),
                        "epoch": epoch,
                        "best_value": self.best_value,
                        "best_epoch": self.best_epoch,
                        "best_metric": self.best_metric,
                        "seconds": self.seconds,
                    }
                    self.checkpoints.save(epoch, self.state(), checkpoint_meta, is_best=improved)
                    self.console.print(_summary(record, epochs, improved), soft_wrap=True)
                    if on_epoch_end is not None:
                        on_epoch_end(epoch, record)

        except KeyboardInterrupt:
            if self.checkpoints is not None:
                self.checkpoints.wait()  # let a save under way finish: it stays usable
            kept = (
                f"the epoch {self.epoch} checkpoint in {self.run.checkpoint_dir} is kept: "
                "resume with --resume"
                if self.epoch
                else "no epoch had finished, so there is nothing to resume"
            )
            raise TrainingInterrupted(f"interrupted in epoch {self.epoch + 1}; {kept}") from None
        return self.run.records()

    def train_step(self, batch: Batch) -> dict[str, Any]:
        """One jitted optimizer step on `batch`; its metrics, still on the device."""
        return self._train_step(self._shard(batch))

    def train_epoch(
        self,
        batches: Iterable[Batch],
        *,
        epoch: int = 1,
        epochs: int = 1,
        steps: int | None = None,
        bar: Progress | None = None,
    ) -> tuple[dict[str, float], list[float]]:
        """One epoch of train steps (under `bar`, a rich Progress, when given); the epoch's
        train metrics and each step's training loss, read from the device once, at the end of
        the epoch. `fit` runs it; `jaxnets bench train` times it alone."""
        if bar is None:
            with Progress(disable=True) as quiet:
                return self.train_epoch(batches, epoch=epoch, epochs=epochs, steps=steps, bar=quiet)
        total = steps or (len(batches) if hasattr(batches, "__len__") else None)
        task = bar.add_task(f"epoch {epoch}/{epochs}", total=total, info="")
        results = []
        for i, batch in enumerate(batches):
            results.append(self.train_step(batch))
            if (i + 1) % self.log_every == 0 and "loss" in results[-1]:
                # This reading waits for the device anyway: check the loss while here.
                loss = _scalar(results[-1]["loss"])
                self._check_finite(loss, epoch, self.step)
                bar.update(task, info=f"loss {loss:.4f}")
            bar.advance(task)
        bar.remove_task(task)
        if not results:
            raise ValueError(f"epoch {epoch}: train_batches yielded no batch")
        results = jax.device_get(results)
        return reduce_means(results), [_mean_value(r["loss"]) for r in results if "loss" in r]

    def _check_finite(self, loss: float, epoch: int, step: int) -> None:
        """Stop at a NaN, infinite or exploded training loss: nothing after it can be trusted."""
        if not loss_diverged(loss):
            return
        kept = (
            f"the epoch {self.epoch} checkpoint is kept in {self.run.checkpoint_dir}"
            if self.epoch
            else "no epoch had finished"
        )
        self.run.set_status("diverged", diverged_at={"epoch": epoch, "step": step})
        raise TrainingDiverged(
            f"training diverged in epoch {epoch} (by step {step}): the training loss is "
            f"{loss:.3g}; "
            f"{kept}. Try a lower learning rate (--lr)"
        )


def _mean_value(value: Any) -> float:
    """A step's metric as a float: a `Mean`'s total / count, or the scalar itself."""
    if isinstance(value, Mean):
        return float(value.total) / max(float(value.count), 1e-30)
    return float(value)


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys where two JSON-like values differ (tuples and lists compare alike)."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = list(new) + [k for k in old if k not in new]
        return [d for k in keys for d in _differences(old.get(k), new.get(k), f"{prefix}{k}.")]
    same = json.loads(json.dumps(old, default=str)) == json.loads(json.dumps(new, default=str))
    return [] if same else [prefix.rstrip(".")]


def _summary(record: dict[str, Any], epochs: int, improved: bool) -> str:
    """One line per epoch: 'epoch 3/12 | train loss 0.31 acc 0.89 | val ... | lr | 35.2s *'."""
    parts = [f"epoch {record['epoch']:>3}/{epochs}"]
    for split in ("train", "val"):
        names = [k.removeprefix(split + "_") for k in record if k.startswith(split + "_")]
        names.sort(key=lambda n: (n != "loss", n))  # loss first, then alphabetical
        values = [f"{n.replace('accuracy', 'acc')} {record[f'{split}_{n}']:.4f}" for n in names]
        if values:
            parts.append(f"{split} " + " ".join(values))
    if "lr" in record:
        parts.append(f"lr {record['lr']:.3g}")
    parts.append(f"{record['epoch_seconds']:.1f}s" + (" *" if improved else ""))
    return " | ".join(parts)
