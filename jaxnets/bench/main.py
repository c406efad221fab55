"""`jaxnets bench cnn|train`: training speed of jaxnets against PyTorch, printed as tables.

jaxnets bench cnn [--batch-size 128] [--steps 3] [--repeats 5] [--models ...] [--json FILE]
jaxnets bench train [--recipes fashion-mnist resnet9] [--repeats 3] [--json FILE]

`cnn` times single training steps on synthetic batches (jaxnets/bench/cnn.py); `train` times
whole epochs of the real training commands against PyTorch scripts of the same recipes. That
one lives beside its PyTorch scripts in the checkout's benchmarks/ folder (benchmarks/train.py),
as it runs the experiments, which the library never imports.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import sys
from types import ModuleType

from jaxnets.errors import ConfigError

SUITES = ("cnn", "train")
TRAIN_SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "train.py"


def train_suite() -> ModuleType | None:
    """benchmarks/train.py of the checkout jaxnets runs from (None in a plain install)."""
    if not TRAIN_SCRIPT.is_file():
        return None
    spec = importlib.util.spec_from_file_location("jaxnets_bench_train", TRAIN_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def add_arguments(parser: argparse.ArgumentParser) -> None:
    suites = parser.add_subparsers(dest="suite", required=True, metavar="SUITE")
    add_cnn_arguments(suites.add_parser("cnn", help="training steps of two small CNNs"))
    train = suites.add_parser("train", help="training epochs of the real commands")
    module = train_suite()
    if module is not None:
        module.add_arguments(train)


def add_cnn_arguments(parser: argparse.ArgumentParser) -> None:
    from jaxnets.bench.cnn import MODELS, Settings

    defaults = Settings()
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument(
        "--steps", type=int, default=defaults.steps, help="training steps per contender per round"
    )
    parser.add_argument(
        "--repeats", type=int, default=defaults.repeats, help="interleaved rounds (median taken)"
    )
    parser.add_argument(
        "--models", nargs="+", choices=list(MODELS), default=list(defaults.models), metavar="NAME"
    )
    parser.add_argument("--json", type=pathlib.Path, help="write every figure to this JSON file")
    parser.add_argument(
        "--matmul-size", type=int, default=defaults.matmul_size, help="n of the n x n matmul"
    )
    parser.add_argument(
        "--no-torch-compile", action="store_true", help="skip torch.compile (slow to compile)"
    )
    parser.add_argument(
        "--compile-timeout",
        type=float,
        default=defaults.compile_timeout,
        help="seconds allowed for torch.compile's first step before it is skipped",
    )
    parser.add_argument(
        "--no-variants",
        action="store_true",
        help="time only the headline jaxnets steps (skip the lax-kernel and separate-layer ones)",
    )
    parser.add_argument(
        "--no-torch-one-thread",
        action="store_true",
        help="skip PyTorch eager with one thread (shown because a loaded machine slows PyTorch's "
        "default one-thread-per-core far more)",
    )
    parser.add_argument(
        "--no-naive-conv", action="store_true", help="skip the naive loop conv timing"
    )


def _positive(name: str, value: int) -> None:
    if value < 1:
        raise SystemExit(f"jaxnets bench: {name} must be >= 1, got {value}")


def run(args: argparse.Namespace) -> int:
    if args.suite == "train":
        module = train_suite()
        if module is None:
            raise ConfigError(
                f"jaxnets bench train runs {TRAIN_SCRIPT.relative_to(TRAIN_SCRIPT.parents[1])} "
                "of a checkout of jaxnets (it is not installed with the package): run it from "
                "a clone"
            )
        return module.run(args)
    return run_cnn(args)


def run_cnn(args: argparse.Namespace) -> int:
    from rich.console import Console

    from jaxnets.bench.cnn import Settings, run_benchmark

    for name in ("batch_size", "steps", "repeats", "matmul_size"):
        _positive("--" + name.replace("_", "-"), getattr(args, name))
    console = Console(width=max(120, Console().width))
    settings = Settings(
        batch_size=args.batch_size,
        steps=args.steps,
        repeats=args.repeats,
        models=tuple(args.models),
        torch_compile=not args.no_torch_compile,
        compile_timeout=args.compile_timeout,
        jax_variants=not args.no_variants,
        torch_one_thread=not args.no_torch_one_thread,
        naive_conv=not args.no_naive_conv,
        matmul_size=args.matmul_size,
    )
    result = run_benchmark(settings, log=lambda m: console.print(f"[dim]{m}[/dim]"))
    print_report(result, console)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        console.print(f"figures written to {args.json}")
    return 0


def _fmt(value: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def print_report(result: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    mm = result["matmul"]
    machine = result["machine"]
    console.print(
        f"{machine['cpu_count']} CPUs, jax {machine['jax']} ({machine['jax_backend']}), "
        f"torch {machine.get('torch', 'absent')}; load average "
        f"{result['load_average_start']} -> {result['load_average_end']}; CPU time stolen by "
        f"the host: {result.get('cpu_steal_percent')}%; malloc keeps freed memory: "
        f"{machine.get('malloc_keeps_freed_memory')}"
    )
    console.print(
        f"float32 {mm['size']}x{mm['size']} matmul: jnp {mm['jax_gflops']:.0f} GFLOP/s"
        + (f", torch {mm['torch_gflops']:.0f} GFLOP/s" if "torch_gflops" in mm else "")
    )
    for name, model in result["models"].items():
        table = Table(
            title=f"{name}, batch {model['batch_size']}, "
            f"{model['train_gflop_per_step']:.2f} GFLOP per training step, conv kernels "
            f"{', '.join(model['conv_kernels'])}"
        )
        for column in ("contender", "img/s", "best img/s", "ms/step", "GFLOP/s", "of matmul"):
            table.add_column(column, justify="left" if column == "contender" else "right")
        table.add_column("vs PyTorch eager", justify="right")
        eager = model["contenders"].get("PyTorch eager")
        for contender, figures in model["contenders"].items():
            vs = figures["img_per_s"] / eager["img_per_s"] if eager else None
            table.add_row(
                contender,
                f"{figures['img_per_s']:.0f}",
                f"{figures['img_per_s_best']:.0f}",
                f"{figures['ms_per_step']:.1f}",
                f"{figures['gflops']:.1f}",
                f"{100 * figures['fraction_of_matmul']:.0f}%",
                _fmt(vs, ".2f", "x"),
            )
        console.print(table)
        console.print(
            f"  jaxnets / PyTorch eager: {_fmt(model['ratio_vs_torch_eager'], '.2f', 'x')}"
            f" (goal >= 1.5x); / PyTorch eager 1 thread: "
            f"{_fmt(model['ratio_vs_torch_eager_1_thread'], '.2f', 'x')}"
            f"; / torch.compile: {_fmt(model['ratio_vs_torch_compile'], '.2f', 'x')}"
            f"; hand-derived step time / jax.grad step time: "
            f"{_fmt(model['hand_derived_time_vs_jax_grad'], '.2f')} (goal <= 1.1; both on XLA's "
            f"conv kernels: {_fmt(model['hand_derived_xla_kernels_time_vs_jax_grad'], '.2f')})"
            f"; CPU conv kernels vs lax kernel: "
            f"{_fmt(model['cpu_kernel_speedup_vs_lax_kernel'], '.2f', 'x')}"
            f"; native conv kernel vs XLA kernels: "
            f"{_fmt(model['native_kernel_speedup_vs_xla_kernels'], '.2f', 'x')}"
        )
        if not model["torch_available"]:
            console.print("  PyTorch is not installed: no PyTorch figures")
        for contender, why in model["skipped"].items():
            console.print(f"  skipped {contender}: {why}")
    kernels = result.get("conv_kernels")
    if kernels:
        ms = kernels["ms_forward_backward"]
        console.print(
            f"conv forward+backward, x {tuple(kernels['x_shape'])}, w {tuple(kernels['kernel'])}: "
            f"naive loop {ms['naive']:.1f} ms, lax {ms['lax']:.1f} ms, "
            f"matmul {ms['matmul']:.1f} ms, auto ({kernels['auto_kernel']}) {ms['auto']:.1f} ms "
            f"(fastest {kernels['fast_speedup_vs_naive']:.0f}x faster than naive; the naive one "
            f"took {kernels['naive_compile_s']:.0f} s to compile)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jaxnets bench", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
