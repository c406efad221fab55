"""`jaxnets pretrain bert`: masked-language-model pretraining of a small BERT.

jaxnets pretrain bert                                  # the CPU default, < 15 minutes
jaxnets pretrain bert --preset gpu --out runs/bert-pretrain-gpu
jaxnets pretrain bert --corpus imdb,wikitext2 --steps 2000 --data-dir ../shared/data
"""

from __future__ import annotations

import argparse

from experiments.bert.config import PRETRAIN_PRESETS, get_pretrain_config
from jaxnets.training.precision import add_compute_dtype_argument

_FIELDS = (
    "vocab_size", "vocab", "max_len", "embed_dim", "num_heads", "num_layers", "ff_dim", "dropout",
    "positions", "norm_first", "batch_size", "steps", "steps_per_epoch", "learning_rate",
    "warmup_steps", "limit_documents", "data_dir", "compute_dtype", "seed",
)  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("model", choices=["bert"], help="what to pretrain")
    add("--preset", default="cpu", choices=sorted(PRETRAIN_PRESETS), help="default: cpu")
    add("--out", default="runs/bert-pretrain", help="run folder (default: runs/bert-pretrain)")
    add("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    add("--corpus", help="comma-separated: imdb, tinyshakespeare, wikitext2 (default: imdb)")
    add("--vocab-size", type=int, help="WordPiece vocabulary to train (default: 8192)")
    add(
        "--vocab",
        help="a BERT vocab.txt, or an earlier run's tokenizer.json, to use instead of training "
        "a tokenizer (training can break frequency ties differently from run to run)",
    )
    add("--max-len", type=int, help="tokens per sequence (default: 128)")
    add("--embed-dim", type=int)
    add("--num-heads", type=int)
    add("--num-layers", type=int)
    add("--ff-dim", type=int)
    add("--dropout", type=float)
    add("--positions", choices=["sinusoidal", "learned"])
    add("--norm-first", action=argparse.BooleanOptionalAction, help="pre-LN blocks")
    add("--batch-size", type=int)
    add("--steps", type=int, help="optimizer steps (default: 600)")
    add("--steps-per-epoch", type=int, help="steps between validations/checkpoints")
    add("--lr", "--learning-rate", dest="learning_rate", type=float)
    add("--warmup-steps", type=int)
    add("--limit-documents", type=int, metavar="N", help="use the first N documents")
    add(
        "--data-dir",
        help="folder with imdb/, tinyshakespeare/, wikitext2/ (default: ../shared/data)",
    )
    add_compute_dtype_argument(parser)
    add("--seed", type=int)
    add("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from experiments.bert.train import pretrain

    overrides = {f: getattr(args, f) for f in _FIELDS}
    if args.corpus:
        overrides["corpus"] = tuple(c.strip() for c in args.corpus.split(",") if c.strip())
    config = get_pretrain_config(args.preset, **overrides)
    console = Console()
    results = pretrain(
        config, args.out, resume=args.resume, progress=not args.no_progress, console=console
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
