"""`jaxnets bench train`: whole training epochs of the real commands against PyTorch scripts.

    jaxnets bench train [--recipes fashion-mnist resnet9] [--repeats 3] [--json FILE]
    python benchmarks/train.py ...                    # the same, from a checkout

What users wait for is an epoch, not a step. For each recipe this times one training epoch
(data pipeline, host-to-device copies and the step's Python included; evaluation and
checkpoints excluded) of the very trainer `jaxnets train` builds (`make_trainer` in
experiments/images/train.py), with hand-derived and with autodiff gradients, and of the eager
PyTorch script of the same recipe in benchmarks/train_torch.py, on the same training split.
Contenders run one epoch each per round, in interleaved rounds, so a change of machine load hits
all of them alike; figures are medians over rounds. Each contender's step alone (k steps on one
batch already in memory) is timed too, so the report shows how much of an epoch is not the step.

Recipes and their peers:
- fashion-mnist: the course's CNN, batch 64, Adam 1e-3, cosine; 54,000 images
  (benchmarks/train_torch.py);
- resnet9: Page's ResNet-9 at --width, batch 512, SGD Nesterov, one-cycle, crop + flip, on the
  CIFAR-10 copy --cifar-dir points to (benchmarks/train_torch.py);
- bert-mlm: `jaxnets pretrain bert`'s CPU preset, an "epoch" being its 50-step logging epoch of
  32 x 128 tokens, on random token rows of its 8,192-piece vocabulary: the step's time does not
  depend on the text (benchmarks/bert_torch.py);
- gcn-molhiv: `jaxnets train gcn --dataset ogbg-molhiv`'s course model and recipe (batch 32) on
  the training graphs of the copy --ogb-dir points to, against PyTorch Geometric
  (benchmarks/gcn_pyg.py; `pip install torch-geometric`).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

RECIPES = ("fashion-mnist", "resnet9", "bert-mlm", "gcn-molhiv")
GRADIENTS = ("manual", "autodiff")
TORCH = "PyTorch eager"
PYG = "PyTorch Geometric"
UNITS = {"bert-mlm": "seq", "gcn-molhiv": "graph"}  # what one training example is (else img)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipes", nargs="+", choices=RECIPES, default=list(RECIPES))
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument(
        "--gradients", nargs="+", choices=GRADIENTS, default=list(GRADIENTS), metavar="MODE"
    )
    parser.add_argument("--width", type=int, default=16, help="ResNet-9 base width (64: Page's)")
    parser.add_argument(
        "--limit-train", type=int, help="train on this many images (default: the whole split)"
    )
    parser.add_argument("--fashion-dir", help="Fashion-MNIST files (default: the usual search)")
    parser.add_argument("--cifar-dir", help="CIFAR-10 files (default: the usual search)")
    parser.add_argument(
        "--ogb-dir", help="the folder holding ogbg_molhiv/ (default: ../shared/data/ogb)"
    )
    parser.add_argument("--no-torch", action="store_true", help="time jaxnets only")
    parser.add_argument("--json", type=pathlib.Path, help="write every figure to this file")


# ----------------------------------------------------------------------------- contenders
class JaxContender:
    """A recipe's jaxnets `Trainer` (the one its command builds), with one gradient mode:
    subclasses give the trainer, batch size, steps per epoch and the batches of an epoch."""

    trainer: Any
    batch_size: int
    steps_per_epoch: int

    def batches(self, epoch: int) -> Iterator[dict]:
        raise NotImplementedError

    def epoch(self, epoch: int) -> float:
        start = time.perf_counter()
        self.trainer.train_epoch(self.batches(epoch), epoch=epoch, steps=self.steps_per_epoch)
        return time.perf_counter() - start

    def steps(self, k: int) -> float:
        import jax

        batches = iter(self.batches(1))
        batch = next(batches)
        getattr(batches, "close", lambda: None)()  # stop a prefetching thread
        jax.block_until_ready(self.trainer.train_step(batch))
        start = time.perf_counter()
        for _ in range(k):
            metrics = self.trainer.train_step(batch)
        jax.block_until_ready(metrics)
        return time.perf_counter() - start


class ImageContender(JaxContender):
    """`jaxnets train fashion-mnist|cifar10`: `make_trainer` of experiments/images/train.py."""

    def __init__(self, config: Any, data: Any, workdir: str):
        from rich.console import Console

        from jaxnets.experiments.images.train import make_trainer

        self.config, self.data = config, data
        self.trainer, self.batch_size = make_trainer(
            config, data, workdir, console=Console(quiet=True), progress=False
        )
        self.steps_per_epoch = data.steps_per_epoch(self.batch_size)

    def batches(self, epoch: int) -> Iterator[dict]:
        from jaxnets.experiments.images.train import train_batches

        return train_batches(self.config, self.data, self.batch_size, epoch)


class BertContender(JaxContender):
    """`jaxnets pretrain bert`: the model, optimizer and MLM loss of `make_mlm`."""

    def __init__(self, config: Any, sequences: Any, special: dict, workdir: str):
        from types import SimpleNamespace

        from rich.console import Console

        from jaxnets.experiments.bert.train import make_mlm
        from jaxnets.training.trainer import Trainer

        self.config, self.sequences = config, sequences
        tokenizer = SimpleNamespace(vocab_size=config.vocab_size, **special)
        _, model, schedule, tx, loss_fn = make_mlm(config, tokenizer)
        self.trainer = Trainer(
            model,
            tx,
            loss_fn,
            workdir,
            learning_rate_fn=schedule,
            console=Console(quiet=True),
            progress=False,
        )
        self.batch_size, self.steps_per_epoch = config.batch_size, config.steps_per_epoch

    def batches(self, epoch: int) -> list[dict]:
        from jaxnets.experiments.bert.input_pipeline import pretrain_batches

        return pretrain_batches(self.sequences, self.config, epoch)


class GraphContender:
    """`jaxnets train gcn` on graph batches: its Task's epoch and jitted train step (GCN keeps
    its own loop; see experiments/gcn/train.py)."""

    def __init__(self, config: Any, dataset: Any, train: Any):
        import jax.numpy as jnp
        import numpy as np

        from jaxnets.experiments.gcn.train import Steps, Task, create_model_and_optimizer

        self.task = Task(dataset, config)
        self.task.splits = {**self.task.splits, "train": train}
        model, optimizer = create_model_and_optimizer(self.task, jnp.asarray(config.seed))
        self.steps_of_model = Steps(model, optimizer, self.task.task)
        self.batch_size = config.batch_size
        self.steps_per_epoch = -(-len(train) // self.batch_size)
        self.examples_per_epoch = len(train)
        self.rng = np.random.default_rng(config.seed)

    def epoch(self, epoch: int) -> float:
        start = time.perf_counter()
        self.task.train_epoch(self.steps_of_model, self.rng)
        return time.perf_counter() - start

    def steps(self, k: int) -> float:
        import jax

        graphs, real = next(self.task.batches(self.task.splits["train"], self.batch_size))
        args = (graphs, graphs.globals, jax.device_put(real))
        train_step = self.steps_of_model.train
        jax.block_until_ready(train_step(*args))
        start = time.perf_counter()
        for _ in range(k):
            loss = train_step(*args)
        jax.block_until_ready(loss)
        return time.perf_counter() - start


def _image_config(recipe: str, args: argparse.Namespace, gradients: str) -> Any:
    from jaxnets.experiments.images.config import get_config

    if recipe == "fashion-mnist":
        return get_config(
            "fashion-mnist",
            data_dir=args.fashion_dir,
            limit_train=args.limit_train,
            gradients=gradients,
        )
    return get_config(
        "cifar10",
        data_dir=args.cifar_dir,
        limit_train=args.limit_train,
        gradients=gradients,
        model_options={"width": args.width},
    )


def contenders(recipe: str, args: argparse.Namespace, workdir: str) -> dict[str, Any]:
    """Contender name -> runner (`.epoch(e)`, `.steps(k)`, `.steps_per_epoch`, `.batch_size`)."""
    make = {"bert-mlm": bert_contenders, "gcn-molhiv": gcn_contenders}.get(recipe, image_contenders)
    return make(recipe, args, workdir)


def image_contenders(recipe: str, args: argparse.Namespace, workdir: str) -> dict[str, Any]:
    from jaxnets.experiments.images.input_pipeline import load_data

    runners: dict[str, Any] = {}
    data = None
    for mode in args.gradients:
        config = _image_config(recipe, args, mode)
        data = data or load_data(config)
        runners[f"jaxnets ({mode})"] = ImageContender(config, data, f"{workdir}/{recipe}-{mode}")
    if _use_torch(args):
        import train_torch

        runners[TORCH] = train_torch.Runner(
            recipe,
            data.train_images,
            data.train_labels,
            epochs=config.epochs,
            seed=config.seed,
            width=args.width,
        )
    return runners


def bert_contenders(recipe: str, args: argparse.Namespace, workdir: str) -> dict[str, Any]:
    import math

    import bert_torch

    from jaxnets.experiments.bert.config import get_pretrain_config
    from jaxnets.text.tokenizer import SPECIAL_TOKENS

    ids = {name: SPECIAL_TOKENS.index(f"[{name.upper()}]") for name in ("pad", "cls", "sep")}
    special = {f"{name}_id": i for name, i in ids.items()}
    special |= {"mask_id": SPECIAL_TOKENS.index("[MASK]"), "first_regular_id": len(SPECIAL_TOKENS)}
    runners: dict[str, Any] = {}
    for mode in args.gradients:
        config = get_pretrain_config("cpu", gradients=mode)
        rows = args.limit_train or config.batch_size * config.steps_per_epoch
        sequences = bert_torch.random_sequences(rows, config.max_len, config.vocab_size)
        runners[f"jaxnets ({mode})"] = BertContender(
            config, sequences, special, f"{workdir}/bert-{mode}"
        )
    if _use_torch(args):
        p = 0.15 * config.max_len  # make_mlm's max_predictions
        runners[TORCH] = bert_torch.Runner(
            sequences,
            vocab_size=config.vocab_size,
            special_ids=(special["cls_id"], special["sep_id"]),
            mask_id=special["mask_id"],
            first_regular_id=special["first_regular_id"],
            embed_dim=config.embed_dim,
            num_heads=config.num_heads,
            ff_dim=config.ff_dim,
            num_layers=config.num_layers,
            batch_size=config.batch_size,
            steps_per_epoch=config.steps_per_epoch,
            total_steps=config.steps,
            warmup_steps=config.warmup_steps,
            learning_rate=config.learning_rate,
            max_predictions=min(config.max_len, math.ceil(p + 3 * math.sqrt(p * 0.85))),
            seed=config.seed,
        )
    return runners


def gcn_contenders(recipe: str, args: argparse.Namespace, workdir: str) -> dict[str, Any]:
    from jaxnets.data.graphs import atom_feature_dims, load_graph_dataset
    from jaxnets.data.text import DEFAULT_DATA_DIR
    from jaxnets.experiments.gcn.config import get_config

    dataset = load_graph_dataset("ogbg-molhiv", args.ogb_dir or DEFAULT_DATA_DIR / "ogb")
    train = dataset.splits["train"][: args.limit_train]
    runners: dict[str, Any] = {}
    for mode in args.gradients:
        config = get_config("ogbg-molhiv", gradients=mode)
        runners[f"jaxnets ({mode})"] = GraphContender(config, dataset, train)
    if _use_torch(args) and _available("torch_geometric"):
        import gcn_pyg

        runners[PYG] = gcn_pyg.Runner(
            gcn_pyg.to_pyg(dataset, train),
            atom_feature_dims(dataset),
            num_tasks=dataset.num_tasks,
            hidden=config.hidden,
            num_layers=config.num_layers,
            dropout=config.dropout,
            batch_size=config.batch_size,
            seed=config.seed,
        )
    return runners


def _use_torch(args: argparse.Namespace) -> bool:
    return not args.no_torch and _available("torch")


def _available(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# ----------------------------------------------------------------------------- timing
def time_recipe(recipe: str, args: argparse.Namespace, log: Callable[[str], None]) -> dict:
    with tempfile.TemporaryDirectory(prefix="jaxnets-bench-train-") as workdir:
        runners = contenders(recipe, args, workdir)
        first = next(iter(runners.values()))
        steps = first.steps_per_epoch
        for name, runner in runners.items():
            log(f"{recipe}: compiling / warming up {name}")
            runner.steps(2)
        epochs: dict[str, list[float]] = {name: [] for name in runners}
        alone: dict[str, list[float]] = {name: [] for name in runners}
        k = min(steps, 40)
        for round_ in range(1, args.repeats + 1):
            for name, runner in runners.items():
                log(f"{recipe}: round {round_}/{args.repeats}, {name}")
                epochs[name].append(runner.epoch(round_))
                alone[name].append(runner.steps(k) / k)
        batch = first.batch_size
        examples = getattr(first, "examples_per_epoch", steps * batch)
    peer = next((name for name in (TORCH, PYG) if name in runners), None)
    figures = {}
    for name in runners:
        epoch_s = statistics.median(epochs[name])
        step_s = statistics.median(alone[name])
        figures[name] = {
            "epoch_seconds": epoch_s,
            "examples_per_s": examples / epoch_s,
            "step_alone_epoch_seconds": step_s * steps,
            # The part of an epoch that is not the step: pipeline, copies, Python, syncs.
            "not_step_fraction": max(0.0, 1 - step_s * steps / epoch_s),
            "epoch_seconds_all": epochs[name],
        }
    peer_s = figures[peer]["epoch_seconds"] if peer else None
    return {
        "unit": UNITS.get(recipe, "img"),
        "examples_per_epoch": examples,
        "batch_size": batch,
        "steps_per_epoch": steps,
        "contenders": figures,
        "peer": peer,
        # jaxnets speed over the peer's, per epoch (> 1: jaxnets is faster).
        "ratios_vs_peer": {
            name: peer_s / f["epoch_seconds"]
            for name, f in figures.items()
            if peer and name != peer
        },
    }


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from jaxnets.bench.machine import cpu_ticks, load_average, machine_info, steal_percent
    from jaxnets.errors import ConfigError

    if args.repeats < 1:
        raise ConfigError(f"--repeats must be >= 1, got {args.repeats}")
    sys.path.insert(0, str(pathlib.Path(__file__).parent))  # for the peers' scripts
    console = Console()
    ticks = cpu_ticks()
    result: dict[str, Any] = {"machine": machine_info(), "load_average_start": load_average()}
    if args.no_torch or not _available("torch"):
        console.print("no PyTorch contender (--no-torch, or PyTorch is not installed)")
    result["settings"] = {k: str(v) if v is not None else None for k, v in vars(args).items()}
    result["recipes"] = {
        recipe: time_recipe(recipe, args, lambda m: console.print(f"[dim]{m}[/dim]"))
        for recipe in args.recipes
    }
    result["load_average_end"] = load_average()
    result["cpu_steal_percent"] = steal_percent(ticks)
    print_report(result, console)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        console.print(f"figures written to {args.json}")
    return 0


def print_report(result: dict, console: Any) -> None:
    from rich.table import Table

    machine = result["machine"]
    console.print(
        f"{machine['cpu_count']} CPUs, jax {machine['jax']} ({machine['jax_backend']}), torch "
        f"{machine.get('torch', 'absent')}; load {result['load_average_start']} -> "
        f"{result['load_average_end']}; stolen {result['cpu_steal_percent']}%"
    )
    for recipe, figures in result["recipes"].items():
        unit = figures["unit"]
        table = Table(
            title=f"{recipe}: an epoch of {figures['examples_per_epoch']:,} {unit}s, "
            f"batch {figures['batch_size']}"
        )
        columns = ("contender", "s/epoch", f"{unit}/s", "step alone", "not step", "vs peer")
        for column in columns:
            table.add_column(column, justify="left" if column == "contender" else "right")
        ratios = figures["ratios_vs_peer"]
        for name, f in figures["contenders"].items():
            ratio = ratios.get(name)
            table.add_row(
                name,
                f"{f['epoch_seconds']:.1f}",
                f"{f['examples_per_s']:,.0f}",
                f"{f['step_alone_epoch_seconds']:.1f} s",
                f"{100 * f['not_step_fraction']:.0f}%",
                "-" if ratio is None else f"{ratio:.2f}x",
            )
        console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/train.py", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
