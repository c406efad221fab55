"""The gradient audit as a table people enjoy reading, and as JSON.

The table fits 80 columns (a terminal, a notebook, a file it is piped to) with every number and
verdict in full: each check's name is cut at its first " (" and the rest, the input shapes and
any failing arrays go on lines below it, in the one column that wraps.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

from rich import box
from rich.console import Console, Group
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from jaxnets.gradcheck.core import ArrayCheck, GradCheck


def format_error(value: float | None) -> str:
    """Compact and fixed-width: '3.1e-12', 'inf', 'nan', or 'n/a' for no comparison."""
    if value is None:
        return "n/a"
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:.1e}"


def _error_cell(value: float | None, threshold: float) -> Text:
    # Colour by how far under the threshold the error sits: green is comfortably within it.
    if value is None:
        style = "dim"
    elif value > threshold or math.isnan(value):
        style = "bold red"
    elif value > threshold * 1e-2:
        style = "yellow"
    else:
        style = "green"
    return Text(format_error(value), style=style)


def _split_name(name: str) -> tuple[str, str]:
    """'conv2d naive (3x2 kernel, stride 2)' -> ('conv2d naive', '(3x2 kernel, stride 2)')."""
    head, sep, rest = name.partition(" (")
    return (head, f"({rest}") if sep else (name, "")


def _array_problem(a: ArrayCheck) -> str:
    if a.problem:
        return f"{a.grad_name} {a.problem}"
    worst = max(
        (v for v in (a.manual_vs_numerical, a.manual_vs_autodiff) if v is not None),
        key=lambda v: math.inf if math.isnan(v) else v,
    )
    return f"{a.grad_name} {format_error(worst)}"


def _name_cell(r: GradCheck) -> Group:
    # The lines below the name are indented as a block, so that their wrapped parts are too.
    head, detail = _split_name(r.name)
    lines: list = [Text(head)]
    below = " ".join(part for part in (detail, r.shapes) if part)
    if below:
        lines.append(Padding(Text(below, style="dim"), (0, 0, 0, 2)))
    if not r.passed:
        wrong = [_array_problem(a) for a in r.failures] or ["the largest error above"]
        lines.append(Padding(Text("wrong: " + ", ".join(wrong), style="red"), (0, 0, 0, 2)))
    return Group(*lines)


def audit_table(results: Sequence[GradCheck]) -> Table:
    autodiff_limits = sorted({r.autodiff_threshold for r in results})
    numerical_limits = sorted({r.numerical_threshold for r in results})
    table = Table(
        title="Gradient audit (float64)",
        caption=(
            "rel_error = max |a-b| / max(1e-8, |a|+|b|) of the hand-derived backward against "
            "jax.grad of the forward, against central differences, and through its custom_vjp "
            "form. Pass: jax.grad and custom_vjp <= "
            + "/".join(f"{t:.0e}" for t in autodiff_limits)
            + ", numerical <= "
            + "/".join(f"{t:.0e}" for t in numerical_limits)
            + "."
        ),
        box=box.SIMPLE_HEAD,
        header_style="bold",
        caption_justify="left",
        pad_edge=False,
    )
    # Only the name column wraps: the numbers and verdicts always show in full.
    table.add_column("layer / model", overflow="fold", min_width=16)
    for header in ("jax.grad", "numerical", "custom_vjp"):
        table.add_column(header, justify="right", no_wrap=True, min_width=7)
    table.add_column("", justify="center", no_wrap=True, min_width=4)
    for r in results:
        table.add_row(
            _name_cell(r),
            _error_cell(r.manual_vs_autodiff, r.autodiff_threshold),
            _error_cell(r.manual_vs_numerical, r.numerical_threshold),
            _error_cell(r.custom_vjp_vs_manual, r.autodiff_threshold),
            Text("PASS", style="bold green") if r.passed else Text("FAIL", style="bold red"),
        )
    return table


def _failure_line(r: GradCheck) -> str:
    parts = []
    for a in r.failures:
        if a.problem:
            parts.append(f"{a.grad_name} {a.problem}")
            continue
        errors = [f"{format_error(a.manual_vs_numerical)} vs central differences"]
        if a.manual_vs_autodiff is not None:
            errors.append(f"{format_error(a.manual_vs_autodiff)} vs jax.grad")
        if a.custom_vjp_vs_manual is not None and a.custom_vjp_vs_manual > r.autodiff_threshold:
            errors.append(f"{format_error(a.custom_vjp_vs_manual)} through custom_vjp")
        parts.append(f"{a.grad_name} off by {', '.join(errors)}")
    right = [a.grad_name for a in r.arrays if a not in r.failures]
    if right and parts:
        parts.append(f"{', '.join(right)} agree{'s' if len(right) == 1 else ''}")
    return "; ".join(parts) or "over the thresholds (see the table)"


def print_summary(results: Sequence[GradCheck], console: Console) -> None:
    notes: dict[str, list[str]] = {}
    for r in results:
        for note in filter(None, r.note.split("; ")):
            notes.setdefault(note, []).append(r.name)
    for note, names in notes.items():
        console.print(f"[dim]{', '.join(names)}: {note}[/]", highlight=False)
    failed = [r for r in results if not r.passed]
    if failed:
        console.print(f"[bold red]{len(failed)} of {len(results)} checks failed:[/]")
        for r in failed:
            console.print(Padding(Text(f"{r.name}: {_failure_line(r)}"), (0, 0, 0, 2)))
    else:
        console.print(f"[bold green]All {len(results)} gradient checks passed.[/]")


def render_text(results: Sequence[GradCheck], width: int = 80) -> str:
    """The table and summary as plain text (what `print(check_pair(...))` shows)."""
    buffer = io.StringIO()
    console = Console(
        file=buffer, width=width, color_system=None, force_terminal=False, force_jupyter=False
    )
    console.print(audit_table(results))
    print_summary(results, console)
    return buffer.getvalue()
