"""`jaxnets gradcheck FILE.py` and `check_pair`: a user's own layer pairs, checked as jaxnets'
own are. Every user file here is written by the test."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from jaxnets import cli
from jaxnets.gradcheck import check_pair
from jaxnets.gradcheck.main import parse_shape_option

# ----------------------------------------------------------------------------- user files
NUMPY_LAYERS = """
import numpy as np

SHAPES = {
    "affine": ((4, 5), (5, 3), (3,)),
    "relu": (4, 6),  # a single input's shape may be given bare
    "batchnorm": ((6, 4), (4,), (4,)),
    "leaky_relu": ((3, 4),),
}
OPTIONS = {"leaky_relu": {"slope": 0.2}}


def affine_forward(x, w, b):
    return np.dot(x.reshape(x.shape[0], -1), w) + b, (x, w)


def affine_backward(dout, cache):
    x, w = cache
    dx = np.dot(dout, w.T).reshape(x.shape)
    return dx, np.dot(x.reshape(x.shape[0], -1).T, dout), dout.sum(0)


def relu_forward(x):
    out = x.copy()
    out[out < 0] = 0  # in place: numpy only, JAX cannot trace it
    return out, x


def relu_backward(dout, x):
    dx = dout.copy()
    dx[x < 0] = 0
    return dx


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    mu, var = x.mean(axis=0), x.var(axis=0)
    inv_std = 1.0 / np.sqrt(var + eps)
    xhat = (x - mu) * inv_std
    return gamma * xhat + beta, (xhat, gamma, inv_std)


def batchnorm_backward(dout, cache):
    xhat, gamma, inv_std = cache
    n = dout.shape[0]
    dxhat = dout * gamma
    dx = inv_std / n * (n * dxhat - dxhat.sum(0) - xhat * (dxhat * xhat).sum(0))
    return dx, (dout * xhat).sum(0), dout.sum(0)


def leaky_relu_forward(x, slope=0.01):
    return np.where(x > 0, x, slope * x), (x, slope)


def leaky_relu_backward(dout, cache):
    x, slope = cache
    return np.where(x > 0, dout, slope * dout)


def helper_forward(x):  # no helper_backward: not a pair
    return x, None
"""

JAX_LAYERS = """
import jax.numpy as jnp

from jaxnets.layers.core import affine_backward, affine_forward  # imported: only with SHAPES

SHAPES = {
    "affine": ((4, 6), {"w": (6, 3), "b": (3,)}),  # jaxnets' dict-of-params form
    "tanh": ((3, 5),),
    "batchnorm": ((5, 3), (3,), (3,)),
    "softmax_loss": ((4, 3), jnp.array([0, 2, 1, 1])),  # integer labels, held fixed
}


def tanh_forward(x):
    y = jnp.tanh(x)
    return y, y


def tanh_backward(dout, y):
    return (dout * (1 - y**2),)


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    mu, var = x.mean(axis=0), x.var(axis=0)
    inv_std = 1.0 / jnp.sqrt(var + eps)
    xhat = (x - mu) * inv_std
    return gamma * xhat + beta, (xhat, gamma, inv_std)


def batchnorm_backward(dout, cache):
    xhat, gamma, inv_std = cache
    n = dout.shape[0]
    dxhat = dout * gamma
    dx = inv_std / n * (n * dxhat - dxhat.sum(0) - xhat * (dxhat * xhat).sum(0))
    return dx, (dout * xhat).sum(0), dout.sum(0)


def softmax_loss_forward(scores, labels):
    shifted = scores - scores.max(axis=1, keepdims=True)
    logp = shifted - jnp.log(jnp.exp(shifted).sum(axis=1, keepdims=True))
    n = scores.shape[0]
    return -logp[jnp.arange(n), labels].mean(), (jnp.exp(logp), labels)


def softmax_loss_backward(dout, cache):
    probs, labels = cache
    n = probs.shape[0]
    onehot = jnp.zeros_like(probs).at[jnp.arange(n), labels].set(1.0)
    return dout * (probs - onehot) / n
"""


# The planted bugs, in numpy (the course's language): name -> (forward, backward, shapes, the
# gradient array that must be named as wrong).
def _affine_forward(x, w, b):
    return x @ w + b, (x, w)


def _affine_wrong_sign(dout, cache):
    x, w = cache
    return dout @ w.T, -(x.T @ dout), dout.sum(0)


def _affine_transposed_dw(dout, cache):
    x, w = cache
    return dout @ w.T, (x.T @ dout).T, dout.sum(0)


def _mean_forward(x):
    return x.mean(axis=0), x.shape


def _mean_missing_1_over_n(dout, shape):
    return np.broadcast_to(dout, shape).copy()


def _batchnorm_forward(x, gamma, beta, eps=1e-5):
    mu, var = x.mean(axis=0), x.var(axis=0)
    inv_std = 1.0 / np.sqrt(var + eps)
    xhat = (x - mu) * inv_std
    return gamma * xhat + beta, (xhat, gamma, inv_std)


def _batchnorm_missing_term(dout, cache):
    xhat, gamma, inv_std = cache
    n = dout.shape[0]
    dxhat = dout * gamma
    dx = inv_std / n * (n * dxhat - dxhat.sum(0))  # forgot - xhat * sum(dxhat * xhat)
    return dx, (dout * xhat).sum(0), dout.sum(0)


PLANTED = {
    "wrong sign": (_affine_forward, _affine_wrong_sign, [(4, 5), (5, 3), (3,)], "dw"),
    "missing 1/N": (_mean_forward, _mean_missing_1_over_n, [(5, 3)], "dx"),
    "batchnorm missing term": (
        _batchnorm_forward,
        _batchnorm_missing_term,
        [(6, 4), (4,), (4,)],
        "dx",
    ),
    # Square w: the transposed gradient has the right shape and wrong values.
    "transposed dw": (_affine_forward, _affine_transposed_dw, [(4, 5), (5, 5), (5,)], "dw"),
}

JAX_BUGS = """
import jax.numpy as jnp

SHAPES = {
    "sign": ((4, 5), (5, 3), (3,)),
    "mean": ((5, 3),),
    "bn": ((6, 4), (4,), (4,)),
    "transposed": ((4, 5), (5, 3), (3,)),  # not square: dw comes back 3x5
}


def sign_forward(x, w, b):
    return x @ w + b, (x, w)


def sign_backward(dout, cache):
    x, w = cache
    return dout @ w.T, x.T @ dout, -dout.sum(0)


def mean_forward(x):
    return x.mean(axis=0), x.shape


def mean_backward(dout, shape):
    return jnp.broadcast_to(dout, shape)


def bn_forward(x, gamma, beta, eps=1e-5):
    mu, var = x.mean(axis=0), x.var(axis=0)
    inv_std = 1.0 / jnp.sqrt(var + eps)
    xhat = (x - mu) * inv_std
    return gamma * xhat + beta, (xhat, gamma, inv_std)


def bn_backward(dout, cache):
    xhat, gamma, inv_std = cache
    n = dout.shape[0]
    dxhat = dout * gamma
    return inv_std / n * (n * dxhat - dxhat.sum(0)), (dout * xhat).sum(0), dout.sum(0)


transposed_forward = sign_forward


def transposed_backward(dout, cache):
    x, w = cache
    return dout @ w.T, dout.T @ x, dout.sum(0)
"""


def _write(folder: pathlib.Path, name: str, text: str) -> pathlib.Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def _cli(*args: str) -> subprocess.CompletedProcess:
    """`jaxnets ...` as a user runs it, piped (not a terminal) at 80 columns."""
    env = {**os.environ, "COLUMNS": "80"}
    return subprocess.run(
        [sys.executable, "-m", "jaxnets.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def _assert_readable_at_80(out: str) -> None:
    assert "…" not in out
    assert all(len(line.rstrip()) <= 80 for line in out.splitlines()), out


# ----------------------------------------------------------------------------- correct pairs
def test_numpy_file_passes_from_the_command_line(tmp_path, capsys, x64):
    path = _write(tmp_path, "my_layers.py", NUMPY_LAYERS)
    report = tmp_path / "report.json"
    assert cli.main(["gradcheck", str(path), "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "All 4 gradient checks passed." in out
    checks = {c["name"]: c for c in json.loads(report.read_text())["checks"]}
    assert list(checks) == ["affine", "relu", "batchnorm", "leaky_relu"]  # file order
    assert all(c["passed"] and c["manual_vs_numerical"] < 1e-6 for c in checks.values())
    # The in-place relu is numpy only: no jax.grad column, said so under the table.
    assert checks["relu"]["manual_vs_autodiff"] is None
    assert "relu" in out and "n/a" in out and "JAX cannot trace the forward" in out
    assert [a["name"] for a in checks["batchnorm"]["arrays"]] == ["x", "gamma", "beta"]


def test_jax_file_passes_with_jax_grad_and_the_dict_form(tmp_path, capsys, x64):
    path = _write(tmp_path, "jax_layers.py", JAX_LAYERS)
    report = tmp_path / "report.json"
    assert cli.main(["gradcheck", str(path), "--json", str(report)]) == 0
    checks = {c["name"]: c for c in json.loads(report.read_text())["checks"]}
    assert sorted(checks) == ["affine", "batchnorm", "softmax_loss", "tanh"]
    for c in checks.values():
        assert c["manual_vs_autodiff"] <= 1e-8 and c["custom_vjp_vs_manual"] <= 1e-8, c
    assert sorted(a["name"] for a in checks["affine"]["arrays"]) == ["b", "w", "x"]
    assert checks["affine"]["shapes"] == "x:4x6 w:6x3 b:3"
    assert "labels held fixed" in checks["softmax_loss"]["note"]
    assert "All 4 gradient checks passed." in capsys.readouterr().out


def test_a_module_path_works_too(tmp_path, monkeypatch, capsys, x64):
    package = tmp_path / "homework"
    package.mkdir()
    (package / "__init__.py").write_text("")
    _write(package, "layers.py", NUMPY_LAYERS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cli.main(["gradcheck", "homework.layers", "--only", "affine"]) == 0
    assert "All 1 gradient checks passed." in capsys.readouterr().out


def test_check_pair_numpy_and_jax(x64):
    import jax.numpy as jnp

    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((4, 5)), rng.standard_normal((5, 3)), rng.standard_normal(3)
    np_result = check_pair(_affine_forward, _affine_correct, x, w, b)
    assert np_result.passed and np_result.name == "_affine"
    assert [a.grad_name for a in np_result.arrays] == ["dx", "dw", "db"]

    def relu_forward(x):
        return jnp.maximum(x, 0), x

    def relu_backward(dout, x):
        return jnp.where(x > 0, dout, 0.0)

    jax_result = check_pair(relu_forward, relu_backward, jnp.asarray(x, jnp.float32))
    assert jax_result.passed and jax_result.manual_vs_autodiff <= 1e-8
    text = str(jax_result)  # printable: the audit's table
    assert "relu" in text and "PASS" in text and "All 1 gradient checks passed." in text


def test_check_pair_runs_in_float64_with_x64_off():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    gamma, beta = rng.uniform(0.5, 1.5, 4), rng.standard_normal(4)
    result = check_pair(_batchnorm_forward, _batchnorm_correct, x, gamma, beta)
    assert result.passed, str(result)


def _affine_correct(dout, cache):
    x, w = cache
    return dout @ w.T, x.T @ dout, dout.sum(0)


def _batchnorm_correct(dout, cache):
    xhat, gamma, inv_std = cache
    n = dout.shape[0]
    dxhat = dout * gamma
    dx = inv_std / n * (n * dxhat - dxhat.sum(0) - xhat * (dxhat * xhat).sum(0))
    return dx, (dout * xhat).sum(0), dout.sum(0)


# ----------------------------------------------------------------------------- planted bugs
@pytest.mark.parametrize("bug", sorted(PLANTED))
def test_each_planted_bug_fails_naming_the_array(bug, x64):
    forward, backward, shapes, wrong = PLANTED[bug]
    rng = np.random.default_rng(3)
    result = check_pair(forward, backward, *(rng.standard_normal(s) for s in shapes))
    assert not result.passed
    assert [a.grad_name for a in result.failures] == [wrong]
    assert result.failures[0].manual_vs_numerical > 1e-2
    text = str(result)
    assert "FAIL" in text and f"wrong: {wrong}" in text
    assert f"{wrong} off by" in text and "vs central differences" in text


def test_planted_bugs_fail_from_the_command_line(tmp_path):
    path = _write(tmp_path, "bugs.py", JAX_BUGS)
    done = _cli("gradcheck", str(path), "--json", str(tmp_path / "bugs.json"))
    assert done.returncode == 1, done.stderr
    out = done.stdout
    _assert_readable_at_80(out)
    assert out.count("FAIL") == 4 and "PASS" not in out
    assert "4 of 4 checks failed:" in out
    for name, wrong in [("sign", "db"), ("mean", "dx"), ("bn", "dx")]:
        assert f"{name}: {wrong} off by" in out
        assert f"wrong: {wrong} " in out
    assert "transposed: dw shape 3x5, expected 5x3" in out
    report = json.loads((tmp_path / "bugs.json").read_text())
    assert report["passed"] is False and not any(c["passed"] for c in report["checks"])


# ----------------------------------------------------------------------------- --shape
def test_shape_option_parses():
    assert parse_shape_option("affine=4x5,5x3,3") == ("affine", ((4, 5), (5, 3), (3,)))
    assert parse_shape_option("loss=scalar") == ("loss", ((),))
    assert parse_shape_option("affine=4x5,w:5x3,b:3") == (
        "affine",
        ((4, 5), {"w": (5, 3), "b": (3,)}),
    )
    for bad in ["affine", "affine=", "=4x5", "affine=4x,3", "affine=4x5,,3", "a b=3", "f=w:3,w:4"]:
        with pytest.raises(argparse.ArgumentTypeError, match="bad --shape"):
            parse_shape_option(bad)


def test_shape_on_the_command_line_replaces_shapes(tmp_path, capsys, x64):
    text = NUMPY_LAYERS.replace('"affine": ((4, 5), (5, 3), (3,)),', "")
    path = _write(tmp_path, "layers.py", text)
    report = tmp_path / "r.json"
    shapes = ["--shape", "affine=2x3,3x7,7", "--shape", "relu=2x2x2"]
    status = cli.main(["gradcheck", str(path), *shapes, "--json", str(report)])
    assert status == 0
    shapes = {c["name"]: c["shapes"] for c in json.loads(report.read_text())["checks"]}
    assert shapes["affine"] == "x:2x3 w:3x7 b:7" and shapes["relu"] == "x:2x2x2"


def test_bad_shape_option_is_one_line(tmp_path, capsys):
    path = _write(tmp_path, "layers.py", NUMPY_LAYERS)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["gradcheck", str(path), "--shape", "affine=4x5;5x3"])
    assert exit_info.value.code == 2
    assert "bad --shape 'affine=4x5;5x3'" in _error_line(capsys)


# ----------------------------------------------------------------------------- bad input: exit 2
BAD_INPUT = {
    "missing file": (None, ["nowhere/layers.py"], "nowhere/layers.py: no such file"),
    "unknown module": (None, ["no_such_homework_module"], "no module named"),
    "no pairs": ("x = 1\n", [], "no layer pairs found"),
    "no shapes": (
        "def relu_forward(x):\n    return x, x\n\n\ndef relu_backward(d, c):\n    return d\n",
        [],
        "no input shapes for relu: add SHAPES",
    ),
    "wrong count": (
        NUMPY_LAYERS.replace("((4, 5), (5, 3), (3,))", "((4, 5), (5, 3))"),
        [],
        "SHAPES['affine'] gives 2 input shapes, but affine_forward takes 3",
    ),
    "unknown name": (NUMPY_LAYERS, ["--shape", "afine=4x5"], "--shape names 'afine'"),
    "forward raises": (
        NUMPY_LAYERS.replace("((4, 5), (5, 3), (3,))", "((4, 5), (6, 3), (3,))"),
        ["--only", "affine"],
        "affine_forward raised ValueError",
    ),
    "import raises": ("import numpy\n1 / 0\n", [], "raised ZeroDivisionError"),
    "shape without a file": (None, ["--shape", "relu=3"], "--shape is for your own layers"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_one_line_and_exit_2(case, tmp_path, monkeypatch, capsys, x64):
    text, extra, message = BAD_INPUT[case]
    monkeypatch.chdir(tmp_path)
    args = ["gradcheck"]
    if text is not None:
        args.append(str(_write(tmp_path, "layers.py", text)))
    if case in ("missing file", "unknown module"):
        args += extra[:1]
        extra = extra[1:]
    assert cli.main(args + extra) == 2
    line = _error_line(capsys)
    assert line.startswith("jaxnets gradcheck: ") and message in line, line
