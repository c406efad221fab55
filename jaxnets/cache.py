"""Where jaxnets keeps what it builds once per machine (compiled kernels, decoded image folders)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """`$JAXNETS_CACHE_DIR`, else `~/.cache/jaxnets`. Nothing here creates it: the writers do,
    so a read-only home only costs the cache, not the run."""
    return Path(os.environ.get("JAXNETS_CACHE_DIR") or Path.home() / ".cache" / "jaxnets")
