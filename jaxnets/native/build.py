"""Compile a native kernel source once per machine into a cache, atomically.

Compiled with the machine's C++ compiler against the XLA FFI headers that jaxlib ships
(`jax.ffi.include_dir()`), for this CPU (`-march=native`); cached under `~/.cache/jaxnets/native`
(or `$JAXNETS_CACHE_DIR/native`) by a hash of the source, compiler, flags, jaxlib and CPU.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jax

from jaxnets.cache import cache_root

FLAGS = ("-O3", "-ffp-contract=fast", "-std=c++17", "-shared", "-fPIC", "-w")


def flags() -> tuple[str, ...]:
    """The compiler flags: FLAGS and the target CPU, this one unless $JAXNETS_NATIVE_ARCH names
    another (e.g. `haswell` for AVX2, `x86-64` for plain SSE2: how the tests cover them)."""
    return (*FLAGS, f"-march={os.environ.get('JAXNETS_NATIVE_ARCH', 'native')}")


class NativeBuildError(RuntimeError):
    """The native library could not be built or loaded (the message says why)."""


def cache_dir() -> Path:
    return cache_root() / "native"


def _compiler() -> str:
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return name
    raise NativeBuildError("no C++ compiler found (set CXX, or install g++)")


def _cpu_signature() -> str:
    # -march=native bakes the CPU's instruction sets in: key the cache on them.
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def build_library(source: Path) -> Path:
    """Compile `source` into the cache (if not there yet) and return the shared library's path.

    The library is written under a temporary name and renamed into place, so concurrent builds
    (pytest workers) and interrupted ones never leave a half-written library behind.
    """
    import jaxlib

    compiler = _compiler()
    version = subprocess.run(
        [compiler, "--version"], capture_output=True, text=True, check=False
    ).stdout
    key = hashlib.sha256(
        b"\0".join(
            s.encode() if isinstance(s, str) else s
            for s in (
                source.read_bytes(),
                version,
                " ".join(flags()),
                jaxlib.__version__,
                _cpu_signature(),
            )
        )
    ).hexdigest()[:16]
    target = cache_dir() / f"{source.stem}-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"jaxnets: compiling {source.name} for this CPU (once, about 20 s)", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        partial = Path(tmp) / target.name
        include = f"-I{jax.ffi.include_dir()}"
        command = [compiler, *flags(), include, str(source), "-o", str(partial)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise NativeBuildError(
                f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}"
            )
        os.replace(partial, target)
    return target
