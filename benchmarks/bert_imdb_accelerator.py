"""BERT on IMDB on an accelerator within a time budget: MLM pretraining, then fine-tuning.

    python benchmarks/bert_imdb_accelerator.py --data-dir ../shared/data --out runs/bert-gpu \
        --pretrain-minutes 4

The "gpu" presets of `jaxnets pretrain bert` / `jaxnets finetune bert`, with the number of
pretraining steps fitted to `--pretrain-minutes`: a 200-step calibration run measures the step
time on this machine first. Writes OUT/pretrain/ and OUT/finetune/ (the usual run folders) and
OUT/summary.json; with `--scratch` also OUT/scratch/, the same fine-tuning from a fresh encoder,
to show what the pretraining adds. This is how the issue's accelerator figures were made.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import time

from rich.console import Console

from jaxnets.experiments.bert.config import get_finetune_config, get_pretrain_config
from jaxnets.experiments.bert.train import finetune, pretrain


def _steady_step_seconds(run: pathlib.Path) -> float:
    """Seconds per step of the calibration run's later logging epochs (the first compiles)."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    if len(records) == 1:
        return records[0]["epoch_seconds"] / records[0]["step"]
    seconds = sum(r["epoch_seconds"] for r in records[1:])
    return seconds / (records[-1]["step"] - records[0]["step"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--out", default="runs/bert-gpu")
    parser.add_argument("--preset", default="gpu", help="pretrain and finetune preset")
    parser.add_argument("--pretrain-minutes", type=float, default=4.0)
    parser.add_argument("--calibration-steps", type=int, default=200)
    parser.add_argument("--max-steps", type=int, default=20_000)
    parser.add_argument("--scratch", action="store_true", help="also fine-tune from scratch")
    parser.add_argument("--compute-dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--limit", type=int, help="quick check: use only N documents / reviews")
    args = parser.parse_args()

    console = Console()
    out = pathlib.Path(args.out)
    pretrain_overrides = {"limit_documents": args.limit, "compute_dtype": args.compute_dtype}
    finetune_overrides = {"limit_train": args.limit, "limit_eval": args.limit}
    finetune_overrides["compute_dtype"] = args.compute_dtype
    started = time.perf_counter()

    calibration = out / "calibration"
    cal_steps = args.calibration_steps
    pretrain(
        get_pretrain_config(
            args.preset,
            steps=cal_steps,
            steps_per_epoch=cal_steps // 2,
            warmup_steps=cal_steps // 4,
            data_dir=args.data_dir,
            **pretrain_overrides,
        ),
        calibration,
        progress=False,
        console=console,
    )
    step_seconds = _steady_step_seconds(calibration)
    shutil.rmtree(calibration)
    steps = int(args.pretrain_minutes * 60 / step_seconds) // 100 * 100
    steps = max(cal_steps, min(args.max_steps, steps))
    console.print(f"calibration: {step_seconds * 1e3:.1f} ms per step -> {steps} steps")

    pre = pretrain(
        get_pretrain_config(
            args.preset,
            steps=steps,
            steps_per_epoch=max(1, steps // 10),
            warmup_steps=min(1000, steps // 10),
            data_dir=args.data_dir,
            **pretrain_overrides,
        ),
        out / "pretrain",
        progress=False,
        console=console,
    )
    fine = finetune(
        get_finetune_config(
            args.preset,
            pretrained=str(out / "pretrain"),
            data_dir=args.data_dir,
            **finetune_overrides,
        ),
        out / "finetune",
        progress=False,
        console=console,
    )
    summary = {
        "device": fine["device"],
        "step_ms": step_seconds * 1e3,
        "pretrain_steps": steps,
        "pretrain_wall_seconds": pre["wall_seconds"],
        "val_mlm_loss": pre["val_mlm_loss"],
        "val_mlm_accuracy": pre["val_mlm_accuracy"],
        "finetune_wall_seconds": fine["wall_seconds"],
        "test_accuracy": fine["test_accuracy"],
        "val_accuracy": fine["val_accuracy"],
        "best_epoch": fine["best_epoch"],
    }
    if args.scratch:
        scratch = finetune(
            get_finetune_config(
                args.preset, pretrained="none", data_dir=args.data_dir, **finetune_overrides
            ),
            out / "scratch",
            progress=False,
            console=console,
        )
        summary["scratch_test_accuracy"] = scratch["test_accuracy"]
        summary["scratch_wall_seconds"] = scratch["wall_seconds"]
    summary["total_wall_seconds"] = time.perf_counter() - started
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    console.print_json(data=summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
