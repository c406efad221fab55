"""The gradient audit: `check_pair` for your own forward/backward pair, `core.check_layer` and
`core.check_model` for jaxnets' own, `jaxnets gradcheck [FILE.py]` on the command line."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # Lazily: `jaxnets gradcheck --help` should not wait for JAX to import.
    if name == "check_pair":
        from jaxnets.gradcheck.user import check_pair

        return check_pair
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["check_pair"]
