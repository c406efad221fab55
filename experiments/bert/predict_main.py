"""`jaxnets predict sentiment "text" ...`: positive probability from a fine-tuned run.

jaxnets predict sentiment "This film is great" "This film is terrible" --run runs/bert-imdb
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", choices=["sentiment"], help="what to predict")
    parser.add_argument("texts", nargs="+", metavar="TEXT", help="one or more reviews")
    parser.add_argument(
        "--run", default="runs/bert-imdb", help="fine-tuned run folder (default: runs/bert-imdb)"
    )


def run(args: argparse.Namespace) -> int:
    from jaxnets.experiments.bert.predict import predict

    for text, p in zip(args.texts, predict(args.run, args.texts)):
        label = "positive" if p >= 0.5 else "negative"
        print(f"{p:.4f}  {label:<8}  {text}")
    return 0
