"""Keep freed host memory for reuse, so large CPU buffers are not page-faulted in every step.

XLA's CPU runtime allocates a training step's intermediates afresh on every call. glibc serves
a large block (over 32 MiB at most, and anything a worker thread's 64 MiB arena cannot hold)
with its own `mmap` and returns it with `munmap` when freed, so the next step gets new pages
and the kernel zero-fills each 4 KiB page on first touch: thousands of page faults and tens
of milliseconds of system time per step of the course's three-layer conv net
(benchmarks/README.md, "Measurements behind design choices"). `mallopt` can make glibc keep
such blocks in its heap instead:
- M_ARENA_MAX = 1: every thread allocates from the main arena, which grows with `brk` and has
  no size cap (a worker thread's arena does, and falls back to `mmap` above it);
- M_MMAP_MAX = 0: no block is served by its own `mmap`;
- M_TRIM_THRESHOLD = 1 GiB: freed memory at the top of the heap stays mapped for the next step.
The cost: the process keeps its peak heap until it exits, which suits a training run, and as
XLA frees a step's buffers a little after the next step allocates, the heap settles at a few
copies of them before reusing them (tests/test_host_memory.py). PyTorch's CPU tensors go through
the same malloc, so `jaxnets bench` runs both frameworks under the same setting.
One arena serialises malloc across threads, though: training a WordPiece tokenizer took twice
as long (the Rust tokenizers allocate from many threads). So `jaxnets bench` calls it (unless
JAXNETS_DEFAULT_MALLOC=1), the training commands do not (their steps showed no gain). Call it
first thing in a process, before JAX or PyTorch start their threads. Only glibc (Linux) has
`mallopt`; elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

OPT_OUT = "JAXNETS_DEFAULT_MALLOC"

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_TRIM_THRESHOLD = 1 << 30

_applied: list[bool] = []  # the outcome of the first call


def reuse_freed_memory() -> bool:
    """Tune glibc's malloc as above; True if it now keeps freed memory. Idempotent."""
    if _applied:
        return _applied[0]
    ok = False
    if os.environ.get(OPT_OUT) != "1" and platform.system() == "Linux":
        libc_name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(libc_name) if libc_name else None
            mallopt = getattr(libc, "mallopt", None)  # absent in musl
        except OSError:
            mallopt = None
        if mallopt is not None:
            settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
            ok = all(mallopt(option, value) == 1 for option, value in settings)
    _applied.append(ok)
    return ok


def reused() -> bool:
    """Whether `reuse_freed_memory` has taken effect in this process (for benchmark reports)."""
    return bool(_applied and _applied[0])
