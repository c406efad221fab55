"""`jaxnets gradcheck`: run the audit, print the table, exit non-zero on any failure."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--only", metavar="NAME", help="only cases whose name contains NAME")
    parser.add_argument("--seed", type=int, default=0, help="seed for inputs and upstream grads")


def run(args: argparse.Namespace) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)  # central differences need float64

    from rich.console import Console
    from rich.progress import Progress

    from jaxnets.gradcheck.audit import all_cases, run_audit
    from jaxnets.gradcheck.report import audit_table, print_summary
    from jaxnets.training.run_dir import write_json_atomic

    # Wide enough for the table even when piped (rich falls back to 80 columns then).
    console = Console(width=max(Console().width, 120))
    selected = [c for c in all_cases() if not args.only or args.only.lower() in c.name.lower()]
    if not selected:
        console.print(f"[red]No audit case matches {args.only!r}.[/]")
        return 2
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("checking gradients", total=len(selected))
        results = list(run_audit(args.only, args.seed, lambda _: progress.advance(task)))
    console.print(audit_table(results))
    print_summary(results, console)
    if args.json:
        passed = all(r.passed for r in results)
        write_json_atomic(args.json, {"checks": [r.as_dict() for r in results], "passed": passed})
        console.print(f"Wrote {args.json}")
    return 0 if all(r.passed for r in results) else 1
