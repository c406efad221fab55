"""The `jaxnets` command: `jaxnets --help` lists the subcommands.

Experiments and the heavier commands live in their own modules, imported only when they run,
so `jaxnets --help` is quick. Each such module has `add_arguments(parser)` and `run(args) -> int`.

Errors the user can act on (a bad flag, file, dataset or run folder: `jaxnets.errors`, and the
data readers' DatasetNotFoundError / DatasetFormatError) print one line and exit 2; Ctrl-C prints
one line and exits 130. `--debug` anywhere on the line (or JAXNETS_DEBUG=1) shows tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from jaxnets import host_memory

# `jaxnets train NAME`: name -> (module, one-line help).
EXPERIMENTS: dict[str, tuple[str, str]] = {
    "iris": (
        "jaxnets.experiments.iris.main",
        "two-layer net on Iris, several (lr, hidden) settings",
    ),
    "digits": (
        "jaxnets.experiments.images.digits_main",
        "small CNN on scikit-learn's 8x8 digits (ships with it)",
    ),
    "fashion-mnist": (
        "jaxnets.experiments.images.fashion_mnist_main",
        "Fashion-MNIST CNN (IDX files or TFDS)",
    ),
    "cifar10": (
        "jaxnets.experiments.images.cifar10_main",
        "CIFAR-10 from scratch with augmentation",
    ),
    "images": (
        "jaxnets.experiments.images.images_main",
        "CNN on your own image folder (train/<class>/*, test/<class>/*), any classes and size",
    ),
    "gcn": ("jaxnets.experiments.gcn.main", "GCN on Cora, ENZYMES or OGB datasets (jraph)"),
    "transfer": (
        "jaxnets.experiments.transfer.main",
        "CIFAR-10 transfer: AlexNet/ResNet backbone, frozen vs unfrozen",
    ),
}

# Other subcommands backed by a module: name -> (module, one-line help).
COMMANDS: dict[str, tuple[str, str]] = {
    "gradcheck": (
        "jaxnets.gradcheck.main",
        "check hand-derived gradients: every jaxnets layer and model, or yours (FILE.py)",
    ),
    "compare": (
        "jaxnets.compare",
        "train an experiment on hand-derived and on autodiff gradients; overlay the two runs",
    ),
    "bench": ("jaxnets.bench.main", "speed benchmarks (e.g. `jaxnets bench cnn`) against PyTorch"),
    "data": ("jaxnets.data.main", "dataset facts, e.g. `jaxnets data info enzymes --data-dir DIR`"),
    "submit": (
        "jaxnets.experiments.submit",
        "write a Kaggle submission.csv (Id, Category) from a run",
    ),
    "pretrain": (
        "jaxnets.experiments.bert.pretrain_main",
        "masked-language-model pretraining: `pretrain bert`",
    ),
    "finetune": (
        "jaxnets.experiments.bert.finetune_main",
        "IMDB sentiment fine-tuning: `finetune bert`",
    ),
    "predict": (
        "jaxnets.experiments.bert.predict_main",
        'sentiment of texts from a fine-tuned run: `predict sentiment "text" --run DIR`',
    ),
}


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a bad flag reported in one line (no usage block above it)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _user_errors() -> tuple[type[BaseException], ...]:
    # Imported only when an error is being handled: the data readers pull in numpy.
    from jaxnets.data.images import DatasetFormatError, DatasetNotFoundError
    from jaxnets.errors import JaxnetsError
    from jaxnets.models.torch_import import StateDictMismatchError

    return JaxnetsError, DatasetNotFoundError, DatasetFormatError, StateDictMismatchError


def _run_module(module_name: str, prog: str, description: str, argv: Sequence[str]) -> int:
    module = importlib.import_module(module_name)
    parser = ArgumentParser(prog=prog, description=description)
    module.add_arguments(parser)
    args = parser.parse_args(argv)
    debug = os.environ.get("JAXNETS_DEBUG", "") not in ("", "0")
    try:
        return module.run(args)
    except KeyboardInterrupt as exc:
        if debug:
            raise
        print(f"{prog}: {str(exc) or 'interrupted'}", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug or not isinstance(exc, _user_errors()):
            raise
        print(f"{prog}: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="jaxnets",
        description="Neural-network coursework in JAX with hand-derived backprop you can audit.",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the full traceback of an error (also JAXNETS_DEBUG=1)",
    )
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="call jax.distributed.initialize() first (multi-host: same command on every host)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        # Its own parser (built in main) reads the flags, --help included.
        sub.add_parser(name, help=help_text, add_help=False)

    listing = "\n".join(f"  {name:<16}{help_text}" for name, (_, help_text) in EXPERIMENTS.items())
    train = sub.add_parser(
        "train",
        help="run an experiment; writes DIR/results.json, metrics.jsonl, plots, checkpoints",
        description="Run an experiment. `jaxnets train NAME --help` shows its flags.\n\n"
        f"experiments:\n{listing}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("experiment", choices=sorted(EXPERIMENTS), metavar="NAME")
    train.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in argv:  # accepted after the subcommand too, where users type it
        argv.remove("--debug")
        os.environ["JAXNETS_DEBUG"] = "1"
    args, rest = build_parser().parse_known_args(argv)
    if args.distributed:
        import jax

        jax.distributed.initialize()
    if args.command == "train":
        module_name, help_text = EXPERIMENTS[args.experiment]
        return _run_module(
            module_name, f"jaxnets train {args.experiment}", help_text, args.rest + rest
        )
    module_name, help_text = COMMANDS[args.command]
    return _run_module(module_name, f"jaxnets {args.command}", help_text, rest)


def entry() -> int:
    """The `jaxnets` console script. For `jaxnets bench`, first make malloc keep freed memory
    for reuse (`host_memory`, before JAX or PyTorch start a thread), so the timed steps are not
    page-faulted afresh; not for the other commands (nor for `bench train`, which times them as
    they run), whose multi-threaded tokenizers and data readers it would slow down."""
    args, rest = build_parser().parse_known_args()
    if args.command == "bench" and rest[:1] != ["train"]:
        host_memory.reuse_freed_memory()
    return main()


if __name__ == "__main__":
    sys.exit(entry())
