"""`jaxnets gradcheck [TARGET]`: run the audit (of jaxnets' layers, or of the layer pairs in a
user's file or module), print the table, exit 1 on any failure and 2 on bad input."""

from __future__ import annotations

import argparse
import re

EPILOG = """\
With TARGET (a .py file or a dotted module name) it checks your own layers instead: every
pair NAME_forward(x, *params, **options) -> (out, cache) with NAME_backward(dout, cache) ->
(dx, *dparams), one gradient per positional input of the forward, in its order (just dx for
a single input). jaxnets' dict form works too: NAME_forward(x, params) with a backward
returning (dx, dparams). Input shapes, one per positional input, come from the file,
SHAPES = {"affine": ((4, 5), (5, 3), (3,))}, or from --shape affine=4x5,5x3,3
(affine=4x5,w:5x3,b:3 for a dict of params); OPTIONS = {"affine": {...}} sets keyword options.
Inputs are random float64. The backward is compared with central differences always, and
with jax.grad of the forward when JAX can trace it (jax.numpy code; n/a for numpy code).

Importing TARGET runs its code, as `python FILE.py` would (all but its
`if __name__ == "__main__":` block): give it only code you trust, e.g. your own.

examples:
  jaxnets gradcheck                         every jaxnets layer and model
  jaxnets gradcheck --only conv             those whose name contains "conv"
  jaxnets gradcheck my_layers.py            the pairs in my_layers.py (SHAPES in the file)
  jaxnets gradcheck my_layers.py --shape relu=4x10 --shape affine=4x5,5x3,3
  jaxnets gradcheck homework.layers         the pairs in an importable module
"""


_DIMS = re.compile(r"\d+(?:x\d+)*|scalar")
_SHAPE_HELP = (
    "expected NAME=DIMS,DIMS,... such as affine=4x5,5x3,3: one DIMS per input of "
    "NAME_forward, integers joined by x ('scalar' for shape ()), KEY:DIMS for the entries "
    "of a dict-of-params input (affine=4x5,w:5x3,b:3)"
)


def parse_shape_option(text: str) -> tuple[str, tuple]:
    """`--shape affine=4x5,5x3,3` -> ('affine', ((4, 5), (5, 3), (3,))); keyed items in a row
    form one dict input: `affine=4x5,w:5x3,b:3` -> ('affine', ((4, 5), {'w': .., 'b': ..}))."""
    name, sep, spec = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier() or not spec.strip():
        raise argparse.ArgumentTypeError(f"bad --shape {text!r}: {_SHAPE_HELP}")
    inputs: list = []
    for item in spec.split(","):
        key, colon, dims = item.strip().rpartition(":")
        if not _DIMS.fullmatch(dims) or (colon and not key.isidentifier()):
            raise argparse.ArgumentTypeError(
                f"bad --shape {text!r}: {item.strip()!r} is not DIMS or KEY:DIMS; {_SHAPE_HELP}"
            )
        shape = () if dims == "scalar" else tuple(int(d) for d in dims.split("x"))
        if not colon:
            inputs.append(shape)
        elif inputs and isinstance(inputs[-1], dict):
            if key in inputs[-1]:
                raise argparse.ArgumentTypeError(f"bad --shape {text!r}: {key!r} given twice")
            inputs[-1][key] = shape
        else:
            inputs.append({key: shape})
    return name, tuple(inputs)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument(
        "target",
        nargs="?",
        metavar="TARGET",
        help="your own layers to check: a FILE.py or a module.path (imports it: runs its code)",
    )
    parser.add_argument(
        "--shape",
        action="append",
        type=parse_shape_option,
        default=[],
        metavar="NAME=DIMS,...",
        help="input shapes of NAME_forward, one per input, e.g. affine=4x5,5x3,3 (repeatable; "
        "overrides SHAPES in the file)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--only", metavar="NAME", help="only cases whose name contains NAME")
    parser.add_argument("--seed", type=int, default=0, help="seed for inputs and upstream grads")


def run(args: argparse.Namespace) -> int:
    import jax

    from jaxnets.errors import JaxnetsError

    if args.shape and not args.target:
        raise JaxnetsError("--shape is for your own layers: give the FILE.py or module first")

    jax.config.update("jax_enable_x64", True)  # central differences need float64

    from rich.console import Console
    from rich.progress import Progress

    from jaxnets.gradcheck.report import audit_table, print_summary
    from jaxnets.training.run_dir import write_json_atomic

    # The table fits 80 columns, what rich uses when piped (or $COLUMNS): no forced width.
    console = Console()
    if args.target:
        from jaxnets.gradcheck.user import user_checks

        selected, check = user_checks(args.target, args.shape, args.only, args.seed)
    else:
        from jaxnets.gradcheck.audit import all_cases

        selected = [c for c in all_cases() if not args.only or args.only.lower() in c.name.lower()]
        if not selected:
            console.print(f"[red]No audit case matches {args.only!r}.[/]")
            return 2

        def check(case):
            return case.run(args.seed)

    results = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("checking gradients", total=len(selected))
        for item in selected:
            results.append(check(item))
            progress.advance(task)
    console.print(audit_table(results))
    print_summary(results, console)
    if args.json:
        passed = all(r.passed for r in results)
        write_json_atomic(args.json, {"checks": [r.as_dict() for r in results], "passed": passed})
        console.print(f"Wrote {args.json}")
    return 0 if all(r.passed for r in results) else 1
