"""The audit itself: rel_error, numerical gradients, and that a wrong backward is caught."""

from __future__ import annotations

import json

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


def test_gradcheck_command_prints_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "audit.json"
    status = cli.main(["gradcheck", "--only", "softmax", "--json", str(out)])
    printed = capsys.readouterr().out
    assert status == 0
    assert "manual~autodiff" in printed and "PASS" in printed
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
    assert "FAIL" in capsys.readouterr().out


def test_gradcheck_unknown_filter_is_an_error(capsys):
    assert cli.main(["gradcheck", "--only", "no-such-layer"]) == 2
    assert "No audit case matches" in capsys.readouterr().out
