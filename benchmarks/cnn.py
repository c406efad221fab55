"""CNN training speed, jaxnets against PyTorch: the same as `jaxnets bench cnn`.

    python benchmarks/cnn.py [--batch-size 128] [--models ...] [--json FILE] [--help]

See benchmarks/README.md for what is measured and the figures on the project's machine.
"""

from __future__ import annotations

import sys

from jaxnets import host_memory

if __name__ == "__main__":
    host_memory.reuse_freed_memory()  # as the `jaxnets` command does, before JAX starts
    from jaxnets.bench.main import main

    sys.exit(main(["cnn", *sys.argv[1:]]))
