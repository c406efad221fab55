"""`jaxnets train images --data-dir FOLDER [--image-size N]`: a CNN on any image folder
(train/<class>/*, test/<class>/*, or a .tar/.tar.gz of one; `jaxnets.data.image_folder`)."""

from __future__ import annotations

import argparse

from jaxnets.experiments.images import main

NAME = "images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    main.add_arguments(parser, NAME)


def run(args: argparse.Namespace) -> int:
    return main.run(args, NAME)
