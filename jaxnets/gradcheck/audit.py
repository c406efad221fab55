"""Run every audit case: the layers, then the whole networks."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator

from jaxnets.gradcheck import cases as cases_package
from jaxnets.gradcheck.cases.base import LayerCase, ModelCase
from jaxnets.gradcheck.core import GradCheck

# Layers before networks; any other case module is picked up after these.
_ORDER = ["dense", "norm", "conv", "attention", "graph", "models"]


def all_cases() -> list[LayerCase | ModelCase]:
    names = [m.name for m in pkgutil.iter_modules(cases_package.__path__) if m.name != "base"]
    names.sort(key=lambda n: (_ORDER.index(n) if n in _ORDER else len(_ORDER) - 0.5, n))
    found: list[LayerCase | ModelCase] = []
    for name in names:
        module = importlib.import_module(f"{cases_package.__name__}.{name}")
        found.extend(getattr(module, "CASES", []))
    return found


def run_audit(
    only: str | None = None, seed: int = 0, on_result: Callable[[GradCheck], None] | None = None
) -> Iterator[GradCheck]:
    """Yield one GradCheck per case whose name contains `only` (all when None).

    Call it with float64 enabled; `jaxnets gradcheck` does.
    """
    for case in all_cases():
        if only and only.lower() not in case.name.lower():
            continue
        result = case.run(seed)
        if on_result:
            on_result(result)
        yield result
