"""argparse `type=` checks shared by every command, so a bad flag is refused when it is parsed
with one line naming it (`argument --lr: must be a finite number > 0, got 'nan'`), not deep
inside a training run. None of them imports JAX: building and parsing flags stays quick."""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable
from typing import Any


def _number(kind: type, test: Callable[[float], bool], rule: str) -> Callable[[str], float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}") from None
        if not (math.isfinite(value) and test(value)):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}")
        return value

    parse.__name__ = rule  # argparse names the type in some messages
    return parse


positive_int = _number(int, lambda v: v >= 1, "a whole number >= 1")
non_negative_int = _number(int, lambda v: v >= 0, "a whole number >= 0")
positive_float = _number(float, lambda v: v > 0, "a finite number > 0")
non_negative_float = _number(float, lambda v: v >= 0, "a finite number >= 0")
# A share of the data held out (validation): some must stay for training.
fraction = _number(float, lambda v: 0 <= v < 1, "a fraction in [0, 1)")
# Dropout, label smoothing, momentum: a probability-like value below 1.
unit_fraction = _number(float, lambda v: 0 <= v < 1, "a number in [0, 1)")


def optimizer_name(text: str) -> str:
    """A jaxnets.optim name or optax:<name> (checked against optax when it is one)."""
    from jaxnets.optim import OPTIMIZERS  # imports optax and JAX: only when the flag is given

    if text in OPTIMIZERS:
        return text
    if text.startswith("optax:"):
        import optax

        name = text.removeprefix("optax:")
        if not name.startswith("_") and callable(getattr(optax, name, None)):
            return text
        raise argparse.ArgumentTypeError(f"optax has no optimizer {name!r}")
    raise argparse.ArgumentTypeError(
        f"unknown optimizer {text!r}; use one of {', '.join(OPTIMIZERS)} or optax:<name>"
    )


def add_run_folder_arguments(
    parser: argparse.ArgumentParser, default: str | None, *, resume: bool = True
) -> None:
    """--out, --resume (for experiments that checkpoint every epoch) and --overwrite: where a
    run goes, and what to do with a folder that already holds one."""
    parser.add_argument("--out", default=default, help=f"run folder (default: {default})")
    if resume:
        parser.add_argument(
            "--resume",
            action="store_true",
            help="continue the run in --out from its last checkpoint, with that run's settings",
        )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the run already in --out and start afresh",
    )


# Who computes the backward of the jaxnets layers (jaxnets.nn): "auto" picks the faster on
# the backend in use (`jaxnets.nn.default_gradients`).
GRADIENTS = ("manual", "autodiff")


def add_gradients_argument(parser: argparse.ArgumentParser) -> None:
    """The `--gradients` flag every training command shares."""
    parser.add_argument(
        "--gradients",
        choices=(*GRADIENTS, "auto"),
        help="manual: train on the layers' hand-derived backward passes; autodiff: on jax.grad "
        "of the same forwards; auto: the faster on this backend (manual on CPU) (default: auto)",
    )


def config_overrides(args: argparse.Namespace, config_class: type) -> dict[str, Any]:
    """The fields of the config dataclass `config_class` that the command line sets: every flag
    whose `dest` is a field's name and that was given (not None). A flag that sets a field is
    declared with that field's name as its dest (`--lr` with `dest="learning_rate"`), so no
    command keeps a second, hand-written map from flags to fields."""
    fields = {field.name for field in dataclasses.fields(config_class)}
    return {
        name: value for name, value in vars(args).items() if name in fields and value is not None
    }
