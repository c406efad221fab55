"""`host_memory.reuse_freed_memory`: XLA's large step buffers stop being page-faulted anew."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from jaxnets import host_memory

# Page faults of the median call of a jitted op whose 64 MiB output XLA allocates afresh each
# call. The child process is fresh, so malloc is set before JAX starts its threads, as the CLI does
# (and the test process's own malloc is left alone).
FAULTS_PER_CALL = """
import resource, sys
from jaxnets import host_memory
applied = host_memory.reuse_freed_memory()
# A second call reports the first outcome.
print(applied and host_memory.reuse_freed_memory() is True and host_memory.reused() is True)
import jax, jax.numpy as jnp
double = jax.jit(lambda a: a * 2.0)
a = jnp.ones((16, 1 << 20), jnp.float32)
for _ in range(8):  # XLA frees a result a little after the next call allocates: the heap
    jax.block_until_ready(double(a))  # settles at a few buffers (4 here) before reusing them
faults = []
for _ in range(15):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    jax.block_until_ready(double(a))
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sorted(faults)[len(faults) // 2])  # the median call: a busy machine can delay a free
"""


def _child_env(opt_out: bool = False) -> dict[str, str]:
    """This process's environment, with the opt-out variable set only if asked."""
    env = {k: v for k, v in os.environ.items() if k != host_memory.OPT_OUT}
    return {**env, host_memory.OPT_OUT: "1"} if opt_out else env


def _faults_per_call(opt_out: bool) -> tuple[bool, float]:
    env = _child_env(opt_out)
    out = subprocess.run(
        [sys.executable, "-c", FAULTS_PER_CALL],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split()
    return out[-2] == "True", float(out[-1])


@pytest.mark.skipif(platform.system() != "Linux", reason="mallopt is glibc's (Linux)")
def test_large_buffers_are_reused_instead_of_page_faulted():
    applied, faults = _faults_per_call(opt_out=False)
    opted_out, default_faults = _faults_per_call(opt_out=True)
    assert applied and not opted_out
    # glibc's default maps the 64 MiB output freshly each call: one fault per 4 KiB page
    # (16,384; fewer with larger pages). Reused, most calls take none: under load a free can
    # come late and one call in five may still map a fresh buffer, hence the median.
    assert default_faults > 1000, default_faults
    assert faults < default_faults / 20, (faults, default_faults)


@pytest.mark.skipif(platform.system() != "Linux", reason="mallopt is glibc's (Linux)")
@pytest.mark.parametrize(("command", "tuned"), [("bench", True), ("data", False)])
def test_console_script_tunes_malloc_for_bench_only(command, tuned):
    # Training commands keep glibc's defaults: one arena would slow multi-threaded tokenizers.
    script = (
        "import sys\n"
        "from jaxnets import cli, host_memory\n"
        f"sys.argv = ['jaxnets', {command!r}, '--help']\n"
        "try:\n    cli.entry()\nexcept SystemExit:\n    pass\n"
        "print(host_memory.reused())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=_child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.split()[-1] == str(tuned), done.stdout[-2000:] + done.stderr[-2000:]
