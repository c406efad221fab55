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

Recipes: fashion-mnist (the course's CNN, batch 64, Adam 1e-3, cosine; 54,000 images) and
resnet9 (Page's ResNet-9 at --width, batch 512, SGD Nesterov, one-cycle, crop + flip, on the
CIFAR-10 copy --cifar-dir points to).
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

RECIPES = ("fashion-mnist", "resnet9")
GRADIENTS = ("manual", "autodiff")
TORCH = "PyTorch eager"


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
    parser.add_argument("--no-torch", action="store_true", help="time jaxnets only")
    parser.add_argument("--json", type=pathlib.Path, help="write every figure to this file")


# ----------------------------------------------------------------------------- contenders
class JaxContender:
    """The `jaxnets train` trainer of a recipe, with one gradient mode."""

    def __init__(self, config: Any, data: Any, workdir: str):
        from rich.console import Console

        from experiments.images.train import make_trainer

        self.config, self.data = config, data
        self.trainer, self.batch_size = make_trainer(
            config, data, workdir, console=Console(quiet=True), progress=False
        )
        self.steps_per_epoch = data.steps_per_epoch(self.batch_size)

    def _batches(self, epoch: int) -> Iterator[dict]:
        from experiments.images.train import train_batches

        return train_batches(self.config, self.data, self.batch_size, epoch)

    def epoch(self, epoch: int) -> float:
        start = time.perf_counter()
        self.trainer.train_epoch(self._batches(epoch), epoch=epoch, steps=self.steps_per_epoch)
        return time.perf_counter() - start

    def steps(self, k: int) -> float:
        import jax

        batches = self._batches(0)
        batch = next(batches)
        batches.close()
        jax.block_until_ready(self.trainer.train_step(batch))
        start = time.perf_counter()
        for _ in range(k):
            metrics = self.trainer.train_step(batch)
        jax.block_until_ready(metrics)
        return time.perf_counter() - start


def _image_config(recipe: str, args: argparse.Namespace, gradients: str) -> Any:
    from experiments.images.config import get_config

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
    from experiments.images.input_pipeline import load_data

    runners: dict[str, Any] = {}
    data = None
    for mode in args.gradients:
        config = _image_config(recipe, args, mode)
        data = data or load_data(config)
        runners[f"jaxnets ({mode})"] = JaxContender(config, data, f"{workdir}/{recipe}-{mode}")
    if not args.no_torch and _torch_available():
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


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


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
    figures = {}
    for name in runners:
        epoch_s = statistics.median(epochs[name])
        step_s = statistics.median(alone[name])
        figures[name] = {
            "epoch_seconds": epoch_s,
            "img_per_s": steps * batch / epoch_s,
            "step_alone_epoch_seconds": step_s * steps,
            # The part of an epoch that is not the step: pipeline, copies, Python, syncs.
            "not_step_fraction": max(0.0, 1 - step_s * steps / epoch_s),
            "epoch_seconds_all": epochs[name],
        }
    torch_s = figures.get(TORCH, {}).get("epoch_seconds")
    return {
        "images_per_epoch": steps * batch,
        "batch_size": batch,
        "steps_per_epoch": steps,
        "contenders": figures,
        # jaxnets speed over PyTorch eager's, per epoch (> 1: jaxnets is faster).
        "ratios_vs_torch_eager": {
            name: torch_s / f["epoch_seconds"]
            for name, f in figures.items()
            if torch_s and name != TORCH
        },
    }


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from jaxnets.bench.cnn import cpu_ticks, load_average, machine_info, steal_percent
    from jaxnets.errors import ConfigError

    if args.repeats < 1:
        raise ConfigError(f"--repeats must be >= 1, got {args.repeats}")
    sys.path.insert(0, str(pathlib.Path(__file__).parent))  # for train_torch
    console = Console()
    ticks = cpu_ticks()
    result: dict[str, Any] = {"machine": machine_info(), "load_average_start": load_average()}
    if args.no_torch or not _torch_available():
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
        table = Table(
            title=f"{recipe}: an epoch of {figures['images_per_epoch']:,} images, "
            f"batch {figures['batch_size']}"
        )
        for column in ("contender", "s/epoch", "img/s", "step alone", "not step", "vs PyTorch"):
            table.add_column(column, justify="left" if column == "contender" else "right")
        ratios = figures["ratios_vs_torch_eager"]
        for name, f in figures["contenders"].items():
            ratio = ratios.get(name)
            table.add_row(
                name,
                f"{f['epoch_seconds']:.1f}",
                f"{f['img_per_s']:,.0f}",
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
