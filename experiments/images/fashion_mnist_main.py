"""`jaxnets train fashion-mnist`: a CNN on Fashion-MNIST (IDX files or a prepared TFDS copy)."""

from __future__ import annotations

import argparse

from jaxnets.experiments.images import main

NAME = "fashion-mnist"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    main.add_arguments(parser, NAME)


def run(args: argparse.Namespace) -> int:
    return main.run(args, NAME)
