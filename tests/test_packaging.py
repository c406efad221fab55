"""The installed layout: experiments/ installs as `jaxnets.experiments` (no top-level
`experiments` package in site-packages), its `*_test.py` files stay out of the wheel, and every
command's module imports from a regular (non-editable) install."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from jaxnets import cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # No build isolation: it would fetch setuptools, and nothing downloads at test time.
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run(
        [*pip_wheel, str(ROOT), "-w", str(out)],
        check=True,
        capture_output=True,
        cwd=out,
    )
    (path,) = out.glob("jaxnets-*.whl")
    return path


def test_wheel_holds_experiments_inside_jaxnets_and_no_tests(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == {"jaxnets"}
    for module in ("gcn/train.py", "images/train.py", "transfer/train.py", "submit.py"):
        assert f"jaxnets/experiments/{module}" in names
    assert "jaxnets/native/conv_cpu.cc" in names
    assert not [n for n in names if n.endswith("_test.py")]


def test_experiments_is_not_a_top_level_package_outside_the_checkout(tmp_path):
    code = "import importlib.util as u; print(u.find_spec('experiments'))"
    found = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert found.stdout.strip() == "None"


@pytest.mark.slow
def test_every_command_imports_from_a_regular_install(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)],
        check=True,
        capture_output=True,
    )
    modules = [m for m, _ in cli.EXPERIMENTS.values()] + [m for m, _ in cli.COMMANDS.values()]
    code = (
        "import argparse, importlib, sys, jaxnets.experiments as e\n"
        f"assert e.__file__.startswith({str(venv)!r}), e.__file__\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name).add_arguments(argparse.ArgumentParser())\n"
        "print('ok')\n"
    )
    result = subprocess.run([str(python), "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"
