"""`jaxnets compare EXPERIMENT [flags]`: train one experiment twice from the same seed, once on
the layers' hand-derived gradients and once on autodiff's, and show how the two runs differ.

    jaxnets compare digits --epochs 3 --out runs/compare-digits

runs `jaxnets train digits --epochs 3 --gradients manual --out OUT/manual` and the same with
`--gradients autodiff --out OUT/autodiff`, then writes into OUT:
- `compare.png`: the two training-loss curves overlaid (every step where the trainer records
  them, else every epoch), and their difference below;
- `compare.json`: the largest per-step loss difference (absolute, and relative to the loss),
  and each run's final metrics side by side (also printed as a table).
The two runs compute the same function with the same parameters, batches and dropout masks;
they differ only in who computes the backward, so their losses agree up to floating-point
rounding of two orders of summation, which training then compounds.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
from typing import Any

from jaxnets.errors import ConfigError
from jaxnets.training.run_dir import read_results

MODES = ("manual", "autodiff")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from jaxnets.cli import EXPERIMENTS

    parser.add_argument("experiment", choices=sorted(EXPERIMENTS), metavar="EXPERIMENT")
    parser.add_argument(
        "flags",
        nargs=argparse.REMAINDER,
        help="the experiment's own flags (see `jaxnets train EXPERIMENT --help`), and --out DIR "
        "(both runs and the comparison; default runs/compare-EXPERIMENT) and --overwrite "
        "(replace an earlier comparison there)",
    )


def _take(flags: list[str], name: str, has_value: bool) -> str | bool | None:
    """Remove `name` (and its value) from `flags`; its value, True for a bare flag, or None."""
    for i, flag in enumerate(flags):
        if flag == name:
            if not has_value:
                del flags[i]
                return True
            if i + 1 == len(flags):
                raise ConfigError(f"{name} needs a value")
            value = flags[i + 1]
            del flags[i : i + 2]
            return value
        if has_value and flag.startswith(name + "="):
            del flags[i]
            return flag.split("=", 1)[1]
    return None


def run(args: argparse.Namespace) -> int:
    from jaxnets import cli

    flags = list(args.flags)
    out = pathlib.Path(_take(flags, "--out", True) or f"runs/compare-{args.experiment}")
    extra = ["--overwrite"] if _take(flags, "--overwrite", False) else []
    for taken in ("--gradients", "--resume"):
        if any(f == taken or f.startswith(taken + "=") for f in flags):
            raise ConfigError(f"compare sets {taken} itself; leave it out")
    module, help_text = cli.EXPERIMENTS[args.experiment]
    for mode in MODES:
        print(f"== {args.experiment} with {mode} gradients -> {out / mode}")
        argv = [*flags, "--gradients", mode, "--out", str(out / mode), *extra]
        code = cli._run_module(module, f"jaxnets train {args.experiment}", help_text, argv)
        if code:
            return code
    report = compare_runs(out / "manual", out / "autodiff")
    _write(out, report, args.experiment)
    _print(report, out)
    return 0


# ----------------------------------------------------------------------------- comparing runs
def loss_curves(run_dir: pathlib.Path) -> dict[str, list[float]]:
    """Training-loss curves of a run folder, one per metrics.jsonl (and per Iris setting): each
    step's loss where the records hold `step_losses`, else each epoch's `train_loss`."""
    curves: dict[str, list[float]] = {}
    for path in sorted(run_dir.rglob("metrics.jsonl")):
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            if "train_loss" not in record and "step_losses" not in record:
                continue
            name = str(path.parent.relative_to(run_dir))
            if "setting" in record:
                name = f"{name}/{record['setting']}"
            losses = record.get("step_losses") or [record["train_loss"]]
            curves.setdefault(name, []).extend(float(v) for v in losses)
    return curves


def _final_metrics(run_dir: pathlib.Path) -> dict[str, float]:
    results = read_results(run_dir)
    return {
        k: float(v)
        for k, v in results.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and "seconds" not in k
    } | {k: float(v) for k, v in results.items() if "seconds" in k and isinstance(v, int | float)}


def compare_runs(manual: pathlib.Path, autodiff: pathlib.Path) -> dict[str, Any]:
    """The comparison of two run folders (see the module docstring), as JSON-ready data."""
    a, b = loss_curves(manual), loss_curves(autodiff)
    if not a or a.keys() != b.keys():
        raise ConfigError(f"{manual} and {autodiff} do not hold the same training curves")
    largest = {"absolute": 0.0, "relative": 0.0, "curve": None, "step": None}
    steps = 0
    for name, ca in a.items():
        cb = b[name]
        if len(ca) != len(cb):
            raise ConfigError(f"{name}: {len(ca)} against {len(cb)} recorded losses")
        steps += len(ca)
        for i, (x, y) in enumerate(zip(ca, cb)):
            diff = abs(x - y)
            if diff > largest["absolute"] or not math.isfinite(diff):
                largest = {
                    "absolute": diff,
                    "relative": diff / max(abs(x), 1e-30),
                    "curve": name,
                    "step": i + 1,
                }
    fa, fb = _final_metrics(manual), _final_metrics(autodiff)
    metrics = {k: {"manual": fa[k], "autodiff": fb[k]} for k in fa if k in fb}
    return {
        "largest_loss_difference": largest,
        "recorded_losses": steps,
        "final_metrics": metrics,
        "curves": {name: {"manual": a[name], "autodiff": b[name]} for name in a},
        "runs": {"manual": str(manual), "autodiff": str(autodiff)},
    }


def _write(out: pathlib.Path, report: dict[str, Any], experiment: str) -> None:
    from jaxnets.training.plots import plt
    from jaxnets.training.run_dir import write_json_atomic

    curves = report.pop("curves")
    write_json_atomic(out / "compare.json", report)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, height_ratios=(3, 1))
    for name, pair in curves.items():
        label = "" if len(curves) == 1 else f" {name}"
        steps = range(1, len(pair["manual"]) + 1)
        top.plot(steps, pair["manual"], label=f"manual{label}", lw=2, alpha=0.7)
        top.plot(steps, pair["autodiff"], "--", label=f"autodiff{label}", lw=1)
        diff = [x - y for x, y in zip(pair["manual"], pair["autodiff"])]
        bottom.plot(steps, diff, lw=1)
    top.set_ylabel("training loss")
    top.set_title(f"{experiment}: hand-derived (manual) against autodiff gradients")
    top.legend(fontsize="small")
    bottom.set_ylabel("manual - autodiff")
    bottom.set_xlabel("recorded step")
    fig.tight_layout()
    fig.savefig(out / "compare.png", dpi=120)
    plt.close(fig)


def _print(report: dict[str, Any], out: pathlib.Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="final metrics")
    for column in ("metric", "manual", "autodiff"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for name, pair in report["final_metrics"].items():
        table.add_row(name, f"{pair['manual']:.6g}", f"{pair['autodiff']:.6g}")
    console.print(table)
    d = report["largest_loss_difference"]
    console.print(
        f"largest loss difference over {report['recorded_losses']} recorded losses: "
        f"{d['absolute']:.3g} ({d['relative']:.3g} of the loss) at step {d['step']} of "
        f"{d['curve']}"
    )
    console.print(f"wrote {out / 'compare.png'} and {out / 'compare.json'}")
