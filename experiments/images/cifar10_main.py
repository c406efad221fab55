"""`jaxnets train cifar10`: a CNN on CIFAR-10 (python batches, .npz, an image folder such as
the JPEG copy, or a prepared TFDS copy)."""

from __future__ import annotations

import argparse

from jaxnets.experiments.images import main

NAME = "cifar10"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    main.add_arguments(parser, NAME)


def run(args: argparse.Namespace) -> int:
    return main.run(args, NAME)
