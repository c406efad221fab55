"""`jaxnets train digits`: a CNN on scikit-learn's 8x8 digits (ships with it; runs anywhere)."""

from __future__ import annotations

import argparse

from jaxnets.experiments.images import main

NAME = "digits"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    main.add_arguments(parser, NAME)


def run(args: argparse.Namespace) -> int:
    return main.run(args, NAME)
