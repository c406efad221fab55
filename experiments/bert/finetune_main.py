"""`jaxnets finetune bert`: IMDB sentiment classification on a pretrained encoder.

jaxnets finetune bert                                  # on runs/bert-pretrain, CPU default
jaxnets finetune bert --preset course --hf-checkpoint bert-base-uncased/   # the course's
jaxnets finetune bert --pretrained none --epochs 2    # no pretraining, for comparison
"""

from __future__ import annotations

import argparse

from jaxnets.experiments.bert.config import FINETUNE_PRESETS, FinetuneConfig, get_finetune_config
from jaxnets.flags import (
    add_gradients_argument,
    add_run_folder_arguments,
    config_overrides,
    fraction,
    non_negative_float,
    non_negative_int,
    optimizer_name,
    positive_float,
    positive_int,
    unit_fraction,
)
from jaxnets.training.precision import add_compute_dtype_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("model", choices=["bert"], help="what to fine-tune")
    add("--preset", default="cpu", choices=sorted(FINETUNE_PRESETS), help="default: cpu")
    add_run_folder_arguments(parser, "runs/bert-imdb")
    add("--pretrained", help="pretrain run folder, or 'none' (default: runs/bert-pretrain)")
    add(
        "--hf-checkpoint", help="a local Hugging Face BERT folder (config.json, weights, vocab.txt)"
    )
    add(
        "--head",
        help="cls, mean or max (pooling), or gru (the course's bidirectional GRU)",
    )
    add("--freeze-encoder", action=argparse.BooleanOptionalAction, help="train the head only")
    add("--max-len", type=positive_int, help="tokens per review (default: 512)")
    add("--truncation", choices=["head", "head+tail"], help="which tokens long reviews keep")
    add(
        "--length-buckets",
        action=argparse.BooleanOptionalAction,
        help="batch reviews of about one length, cut to the longest (default: on)",
    )
    add("--batch-size", type=positive_int)
    add("--epochs", type=positive_int)
    add("--optimizer", type=optimizer_name, help="adam, adamw, ... or optax:<name>")
    add("--lr", "--learning-rate", dest="learning_rate", type=positive_float)
    add("--schedule", choices=["constant", "cosine", "onecycle", "step"])
    add("--weight-decay", type=non_negative_float)
    add("--dropout", type=unit_fraction)
    add(
        "--val-fraction",
        type=fraction,
        help="of the train reviews (default: 0.1; gpu, course: 0.3)",
    )
    add("--limit-train", type=positive_int, metavar="N", help="use N train reviews (quick runs)")
    add("--limit-eval", type=positive_int, metavar="N", help="use N validation and N test reviews")
    add("--data-dir", help="folder with the IMDB archive (default: ../shared/data)")
    add("--source", choices=["auto", "files", "tfds"])
    add_compute_dtype_argument(parser)
    add_gradients_argument(parser)
    add("--seed", type=non_negative_int)
    add("--baseline", action="store_true", help="also fit a TF-IDF bag-of-words baseline")
    add("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from jaxnets.experiments.bert.train import finetune

    config = get_finetune_config(args.preset, **config_overrides(args, FinetuneConfig))
    console = Console()
    results = finetune(
        config,
        args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        console=console,
        baseline=args.baseline,
    )
    console.print(
        f"IMDB test accuracy [bold]{results['test_accuracy']:.4f}[/] "
        f"(loss {results['test_loss']:.4f}); best epoch {results['best_epoch']} by validation "
        f"loss; {results['wall_seconds'] / 60:.1f} min"
    )
    console.print(
        f"Wrote {args.out}/: model/, tokenizer.json, config.json, results.json, curves.png, "
        "attention.png"
    )
    return 0
