"""ms per training step of `jaxnets train gcn --dataset ogbg-molhiv --model bond-gcn --hidden 300`
(5 layers, batch 32) over 430 real training batches, for two choices of the GCN loop:

    python benchmarks/gcn_steps.py {old,new} {jit,bound} [DATA_DIR]

- budgets "old": node counts on the 2^k, 1.5 * 2^k ladder and edges tied to them by the
  dataset's largest edges-per-node ratio (before 2026-12-07); "new": `jaxnets.data.graph_batching`
  (nodes and edges on their own 2^k x {1, 1.25, 1.5, 1.75} ladders);
- steps "jit": `nnx.jit` with the model and optimizer passed on every call; "bound": the
  experiment's `Steps` (`jit_bound`: bound once).

Every padded shape is compiled before the timing starts. Run one variant per process, on an
otherwise idle machine.

    python benchmarks/gcn_steps.py parts [DATA_DIR]

times two models in one process, interleaved (rounds of 50 steps each, in turn, best of 5
rounds) on today's budgets and bound steps, for the dropout masks: "bernoulli",
`jax.random.bernoulli` (32 random bits a unit, before 2026-12-07); "bits", 1 bit a unit for
dropout 0.5 (`jaxnets.layers.dropout.keep_mask`).
"""

from __future__ import annotations

import math
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxnets.data import graph_batching as gb
from jaxnets.data.graphs import GraphDataset, load_graph_dataset
from jaxnets.experiments.gcn import train as gcn_train
from jaxnets.experiments.gcn.config import get_config


def old_budgets(dataset: GraphDataset):
    """iterate_batches as it padded before 2026-12-07."""
    nonempty = dataset.n_node > 0
    ratio = float(np.max(dataset.n_edge[nonempty] / dataset.n_node[nonempty]))

    def ladder(n: int) -> int:
        p = gb.next_power_of_two(n)
        return 3 * p // 4 if p >= 4 and 3 * p // 4 >= n else p

    def iterate(dataset, indices, batch_size, *, rng=None, multiple_of=1, **_):
        indices = rng.permutation(indices) if rng is not None else indices
        for start in range(0, len(indices), batch_size):
            graph = dataset.batch(indices[start : start + batch_size])
            n_node = max(64, ladder(int(graph.n_node.sum()) + 1))
            budget = gb.Budget(n_node, math.ceil(ratio * n_node), batch_size + 1)
            yield gb.pad_to_budget(graph, budget), budget

    return iterate


def main(budgets: str, steps: str, data_dir: str) -> None:
    dataset = load_graph_dataset("ogbg-molhiv", data_dir)
    if budgets == "old":
        gcn_train.iterate_batches = old_budgets(dataset)
    task = gcn_train.Task(dataset, get_config("ogbg-molhiv", model="bond-gcn", hidden=300))
    model, optimizer = gcn_train.create_model_and_optimizer(task, jnp.asarray(0))
    if steps == "bound":
        train = gcn_train.Steps(model, optimizer, task.task).train
    else:
        step = nnx.jit(lambda m, o, *a: gcn_train._train_step(m, o, *a, task=task.task))
        model.train()

        def train(*args):
            return step(model, optimizer, *args)

    rng = np.random.default_rng(0)
    batches = list(task.batches(task.splits["train"][: 32 * 430], 32, rng))
    shapes = {}
    for graphs, real in batches:
        shapes.setdefault((graphs.nodes.shape[0], graphs.senders.shape[0]), (graphs, real))
    for graphs, real in shapes.values():  # compile every padded shape first
        loss = train(graphs, graphs.globals, jax.device_put(real))
    jax.block_until_ready(loss)
    start = time.perf_counter()
    for graphs, real in batches:
        loss = train(graphs, graphs.globals, jax.device_put(real))
    jax.block_until_ready(loss)
    ms = (time.perf_counter() - start) / len(batches) * 1e3
    print(f"budgets {budgets}, steps {steps}: {ms:.1f} ms/step ({len(shapes)} shapes)")


def parts(data_dir: str, rounds: int = 5, steps_per_round: int = 50) -> None:
    """ms per step for each choice of dropout mask, each model compiled under its own."""
    from jaxnets.layers import dropout

    dataset = load_graph_dataset("ogbg-molhiv", data_dir)
    task = gcn_train.Task(dataset, get_config("ogbg-molhiv", model="bond-gcn", hidden=300))
    rng = np.random.default_rng(0)
    batches = [
        (graphs, jax.device_put(real))
        for graphs, real in task.batches(task.splits["train"][: 32 * 430], 32, rng)
    ]
    bits_per_unit = dropout._bits_per_unit
    variants = {}
    for masks in ("bernoulli", "bits"):
        model, optimizer = gcn_train.create_model_and_optimizer(task, jnp.asarray(0))
        train = gcn_train.Steps(model, optimizer, task.task).train
        # The choice of mask is made while tracing: compile every shape under it.
        dropout._bits_per_unit = bits_per_unit if masks == "bits" else lambda _: None
        compiled = {}
        for graphs, real in batches:
            if (key := (graphs.nodes.shape[0], graphs.senders.shape[0])) not in compiled:
                compiled[key] = train(graphs, graphs.globals, real)
        jax.block_until_ready(list(compiled.values()))
        dropout._bits_per_unit = bits_per_unit
        variants[f"dropout {masks}"] = train
    best = dict.fromkeys(variants, math.inf)
    for r in range(rounds):
        for name, train in variants.items():
            chunk = batches[r * steps_per_round :][:steps_per_round]
            start = time.perf_counter()
            for graphs, real in chunk:
                loss = train(graphs, graphs.globals, real)
            jax.block_until_ready(loss)
            best[name] = min(best[name], (time.perf_counter() - start) / len(chunk) * 1e3)
    baseline = best["dropout bernoulli"]
    for name, ms in best.items():
        print(f"{name:18s} {ms:6.1f} ms/step  {baseline / ms:4.2f}x")


if __name__ == "__main__":
    if sys.argv[1] == "parts":
        parts(sys.argv[2] if len(sys.argv) > 2 else "../shared/data/ogb")
    else:
        main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "../shared/data/ogb")
