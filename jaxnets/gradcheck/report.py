"""The gradient audit as a table people enjoy reading, and as JSON."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from jaxnets.gradcheck.core import GradCheck


def _error_cell(value: float, threshold: float) -> Text:
    # Colour by how far under the threshold the error sits: green is comfortably within it.
    if value > threshold or math.isnan(value):
        style = "bold red"
    elif value > threshold * 1e-2:
        style = "yellow"
    else:
        style = "green"
    return Text(f"{value:.1e}", style=style)


def audit_table(results: Sequence[GradCheck]) -> Table:
    autodiff_limits = sorted({r.autodiff_threshold for r in results})
    numerical_limits = sorted({r.numerical_threshold for r in results})
    table = Table(
        title="Gradient audit: hand-derived backward vs jax.grad vs central differences (float64)",
        caption=(
            "rel_error = max |a-b| / max(1e-8, |a|+|b|);  pass: autodiff and custom_vjp <= "
            + "/".join(f"{t:.0e}" for t in autodiff_limits)
            + ", numerical <= "
            + "/".join(f"{t:.0e}" for t in numerical_limits)
        ),
        header_style="bold",
        caption_justify="left",
    )
    table.add_column("layer / model", no_wrap=True)
    table.add_column("inputs", style="dim", overflow="fold")
    table.add_column("manual~autodiff", justify="right")
    table.add_column("manual~numerical", justify="right")
    table.add_column("custom_vjp~manual", justify="right")
    table.add_column("", justify="center")
    for r in results:
        table.add_row(
            r.name,
            r.shapes,
            _error_cell(r.manual_vs_autodiff, r.autodiff_threshold),
            _error_cell(r.manual_vs_numerical, r.numerical_threshold),
            _error_cell(r.custom_vjp_vs_manual, r.autodiff_threshold),
            Text("PASS", style="bold green") if r.passed else Text("FAIL", style="bold red"),
        )
    return table


def print_summary(results: Sequence[GradCheck], console: Console) -> None:
    failed = [r.name for r in results if not r.passed]
    if failed:
        console.print(
            f"[bold red]{len(failed)} of {len(results)} checks failed:[/] {', '.join(failed)}"
        )
    else:
        console.print(f"[bold green]All {len(results)} gradient checks passed.[/]")
