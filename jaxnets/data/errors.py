"""The data readers' errors, and the check that compares a dataset with its published size.

`jaxnets.data.images` re-exports both error classes (their historical home); the CLI catches them
and prints the message as one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class DatasetNotFoundError(FileNotFoundError):
    """The data is not on this machine; the message says where we looked and how to get it."""


class DatasetFormatError(ValueError):
    """A data file exists but is truncated, corrupt or not in the expected layout."""


@dataclass(frozen=True)
class Count:
    """How many items one part of a dataset holds (`got`) and how many the full dataset has."""

    where: str  # the file (or archive and split) the count comes from
    what: str  # what is counted, plural: "train images", "rows", "graphs"
    got: int
    expected: int


def check_known_counts(full: str, counts: Sequence[Count], *, hint: str = "") -> None:
    """Refuse a dataset that is partly full size and partly not. `full` names the full size in
    the message: "the full Cora", "a full CIFAR-10 batch".

    A part holding exactly the published count means the data claims to be the full dataset;
    then every part must hold its published count, and one that does not was cut short (or
    comes from another dataset). Data where no part has its full count is a deliberate sample
    (the tests' tiny fixtures, a user's subset): it passes, as no count can show truncation.
    """
    if not any(c.got == c.expected for c in counts):
        return
    for c in counts:
        if c.got != c.expected:
            raise DatasetFormatError(
                f"{c.where}: {c.got:,} {c.what}, but {full} has {c.expected:,} (other files here "
                f"are complete); {hint or 'the file looks truncated or comes from another dataset'}"
            )
