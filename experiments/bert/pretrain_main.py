"""`jaxnets pretrain bert`: masked-language-model pretraining of a small BERT.

jaxnets pretrain bert                                  # the CPU default, ~2.5 minutes
jaxnets pretrain bert --preset gpu --out runs/bert-pretrain-gpu
jaxnets pretrain bert --corpus imdb,wikitext2 --steps 2000 --data-dir ../shared/data
"""

from __future__ import annotations

import argparse

from jaxnets.experiments.bert.config import PRETRAIN_PRESETS, PretrainConfig, get_pretrain_config
from jaxnets.flags import (
    add_gradients_argument,
    add_run_folder_arguments,
    config_overrides,
    non_negative_int,
    positive_float,
    positive_int,
    unit_fraction,
)
from jaxnets.training.precision import add_compute_dtype_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("model", choices=["bert"], help="what to pretrain")
    add("--preset", default="cpu", choices=sorted(PRETRAIN_PRESETS), help="default: cpu")
    add_run_folder_arguments(parser, "runs/bert-pretrain")
    add("--corpus", help="comma-separated: imdb, tinyshakespeare, wikitext2 (default: imdb)")
    add("--vocab-size", type=positive_int, help="WordPiece vocabulary to train (default: 8192)")
    add(
        "--vocab",
        help="a BERT vocab.txt, or an earlier run's tokenizer.json, to use instead of training "
        "a tokenizer (training can break frequency ties differently from run to run)",
    )
    add("--max-len", type=positive_int, help="tokens per sequence (default: 128)")
    add("--embed-dim", type=positive_int)
    add("--num-heads", type=positive_int)
    add("--num-layers", type=positive_int)
    add("--ff-dim", type=positive_int)
    add("--dropout", type=unit_fraction)
    add("--positions", choices=["sinusoidal", "learned"])
    add("--norm-first", action=argparse.BooleanOptionalAction, help="pre-LN blocks")
    add("--batch-size", type=positive_int)
    add("--steps", type=positive_int, help="optimizer steps (default: 400)")
    add("--steps-per-epoch", type=positive_int, help="steps between validations/checkpoints")
    add("--lr", "--learning-rate", dest="learning_rate", type=positive_float)
    add("--warmup-steps", type=non_negative_int)
    add("--limit-documents", type=positive_int, metavar="N", help="use the first N documents")
    add(
        "--data-dir",
        help="folder with imdb/, tinyshakespeare/, wikitext2/ (default: ../shared/data)",
    )
    add_compute_dtype_argument(parser)
    add_gradients_argument(parser)
    add("--seed", type=non_negative_int)
    add("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from jaxnets.experiments.bert.train import pretrain

    overrides = config_overrides(args, PretrainConfig)
    if args.corpus:
        overrides["corpus"] = tuple(c.strip() for c in args.corpus.split(",") if c.strip())
    config = get_pretrain_config(args.preset, **overrides)
    console = Console()
    results = pretrain(
        config,
        args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        console=console,
    )
    console.print(
        f"validation MLM loss [bold]{results['val_mlm_loss']:.3f}[/] (started at "
        f"{results['initial_val_mlm_loss']:.3f}), masked-token accuracy "
        f"{results['val_mlm_accuracy']:.3f}, {results['wall_seconds'] / 60:.1f} min"
    )
    console.print(
        f"Wrote {args.out}/: model/, tokenizer.json, config.json, results.json, mlm_loss.png, "
        "attention.png"
    )
    return 0
