"""The audit itself: rel_error, numerical gradients, and that a wrong backward is caught."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import cli
from jaxnets.gradcheck.core import check_layer, numerical_gradient, rel_error
from jaxnets.layers import core


def test_rel_error_is_the_course_formula():
    x = np.array([1.0, 2.0, 0.0])
    y = np.array([1.1, 2.0, 0.0])
    assert rel_error(x, y) == pytest.approx(0.1 / 2.1)
    assert rel_error({"a": x}, {"a": x}) == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        rel_error(np.ones(2), np.ones(3))


def test_numerical_gradient_of_a_closed_form(x64):
    x = jnp.array([0.3, -1.2, 2.0])
    grad = numerical_gradient(lambda v: jnp.sum(jnp.sin(v) * v**2), x)
    exact = np.cos(np.asarray(x)) * np.asarray(x) ** 2 + 2 * np.sin(np.asarray(x)) * np.asarray(x)
    assert rel_error(grad, exact) < 1e-8


def test_numerical_gradient_refuses_float32():
    with pytest.raises(TypeError, match="float64"):
        numerical_gradient(jnp.sum, jnp.ones(3, jnp.float32))


def _relu_backward_wrong_sign(dout, cache):
    return -core.relu_backward(dout, cache)


def _relu_backward_missing_mask(dout, cache):
    return dout


@pytest.mark.parametrize("broken", [_relu_backward_wrong_sign, _relu_backward_missing_mask])
def test_a_wrong_backward_fails_the_audit(broken, x64):
    x = jax.random.normal(jax.random.key(0), (4, 5), jnp.float64) + 0.05
    result = check_layer("relu", core.relu_forward, broken, (x,))
    assert not result.passed
    assert result.manual_vs_autodiff > 1e-2 and result.manual_vs_numerical > 1e-2


def test_a_nan_gradient_fails(x64):
    x = jax.random.normal(jax.random.key(0), (4, 5), jnp.float64) + 0.05
    result = check_layer("relu", core.relu_forward, lambda d, c: d * jnp.nan, (x,))
    assert not result.passed and [a.grad_name for a in result.failures] == ["dx"]


def test_gradcheck_command_prints_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "audit.json"
    status = cli.main(["gradcheck", "--only", "softmax", "--json", str(out)])
    printed = capsys.readouterr().out
    assert status == 0
    assert "jax.grad" in printed and "numerical" in printed and "PASS" in printed
    report = json.loads(out.read_text())
    names = [c["name"] for c in report["checks"]]
    assert "softmax" in names and all("softmax" in n for n in names)
    assert report["passed"] and all(c["passed"] for c in report["checks"])
    assert all(c["manual_vs_numerical"] < 1e-6 for c in report["checks"])


def test_gradcheck_command_fails_when_a_check_fails(monkeypatch, capsys):
    from jaxnets.gradcheck import audit
    from jaxnets.gradcheck.cases.base import LayerCase

    broken = LayerCase(
        "relu (broken)",
        core.relu_forward,
        _relu_backward_wrong_sign,
        lambda key: (jax.random.normal(key, (3, 4), jnp.float64) + 0.05,),
    )
    monkeypatch.setattr(audit, "all_cases", lambda: [broken])
    assert cli.main(["gradcheck"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "wrong: dx" in out and "relu (broken): dx off by" in out


def test_gradcheck_unknown_filter_is_an_error(capsys):
    assert cli.main(["gradcheck", "--only", "no-such-layer"]) == 2
    assert "No audit case matches" in capsys.readouterr().out


# ----------------------------------------------------------------------------- 80 columns
def _assert_readable_at_80(out: str) -> None:
    assert "…" not in out
    assert all(len(line.rstrip()) <= 80 for line in out.splitlines()), out


def test_table_reads_well_at_80_columns_piped_to_a_file(tmp_path):
    # As a user pipes it: not a terminal, COLUMNS=80 (rich's width then, 80 also without it).
    path = tmp_path / "audit.txt"
    with path.open("w") as f:
        done = subprocess.run(
            [sys.executable, "-m", "jaxnets.cli", "gradcheck", "--only", "softmax"],
            stdout=f,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "COLUMNS": "80"},
            timeout=300,
        )
    assert done.returncode == 0, done.stderr
    out = path.read_text()
    _assert_readable_at_80(out)
    assert out.count("PASS") == 4 and "All 4 gradient checks passed." in out
    assert "(soft) logits:6x5" in out  # the name's detail, on its own line
    assert "\x1b[" not in out  # no colour codes in a file


def test_every_case_name_fits_80_columns():
    """All of the built-in audit's rows, with made-up errors, at 80 columns: each number and
    verdict in full, each case name's words whole (and the numbers still whole at 60)."""
    from rich.console import Console

    from jaxnets.gradcheck.audit import all_cases
    from jaxnets.gradcheck.core import GradCheck
    from jaxnets.gradcheck.report import audit_table

    cases = all_cases()
    results = [
        GradCheck(c.name, "x:2x6x7x3 w:3x2x3x4 b:4", 3.1e-12, 2.5e-8 * (i % 3), 0.0, 1e-8, 1e-6)
        for i, c in enumerate(cases)
    ]
    results[-1] = GradCheck("a failing one", "x:4", 0.5, 0.5, None, 1e-8, 1e-6)
    for width in (80, 60):
        console = Console(width=width, record=True, color_system=None, file=open(os.devnull, "w"))
        console.print(audit_table(results))
        text = console.export_text()
        _assert_readable_at_80(text)
        assert text.count("PASS") == len(cases) - 1 and text.count("FAIL") == 1
        assert text.count("3.1e-12") == len(cases) - 1 and "2.5e-08" in text and "n/a" in text
        for c in cases[:-1] if width == 80 else []:  # narrower, long words fold
            assert all(w in text.split() for w in c.name.split()), c.name
        assert "5.0e-01" in text.split()
        assert width < 80 or "wrong: the largest error above" in text
