"""Run folders, divergence, resume and interruptions, as a user meets them on the command line.

Each test builds its bad input itself (another experiment's run folder, a divergent learning
rate, a torn metrics line, a corrupt checkpoint) and checks the one-line message, the exit
status, and that nothing already on disk changed. The runs are digits (a few epochs, seconds)
and Iris, the smallest experiments.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import signal
import stat
import subprocess
import sys
import time

import pytest

from jaxnets import cli
from jaxnets.training.run_dir import RunDir, write_json_atomic

DIGITS = ["train", "digits", "--epochs", "2", "--no-progress"]


def _checksums(folder: pathlib.Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _strict_json(path: pathlib.Path):
    """json.loads that refuses NaN and Infinity, as JSON.parse and jq do."""

    def refuse(name):
        raise ValueError(f"{path} holds {name}")

    return json.loads(path.read_text(), parse_constant=refuse)


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # one line, no traceback
    return err[0]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("digits") / "run"
    assert cli.main([*DIGITS, "--out", str(out)]) == 0
    return out


# ----------------------------------------------------------------------------- run folders
@pytest.mark.parametrize(
    "argv",
    [
        ["train", "fashion-mnist"],
        ["train", "iris"],
        ["train", "gcn"],
        ["train", "cifar10"],
        ["train", "transfer"],
        ["pretrain", "bert"],
        ["finetune", "bert"],
        ["train", "fashion-mnist", "--resume"],
    ],
    ids=lambda a: " ".join(a),
)
def test_another_experiments_folder_is_refused_and_left_unchanged(digits_run, argv, capsys):
    before = _checksums(digits_run)
    assert cli.main([*argv, "--out", str(digits_run)]) == 2
    line = _error_line(capsys)
    assert "holds a `jaxnets train digits` run" in line and "--overwrite" in line
    assert _checksums(digits_run) == before


def test_a_finished_run_is_refused_without_resume_or_overwrite(digits_run, capsys):
    before = _checksums(digits_run)
    assert cli.main([*DIGITS, "--out", str(digits_run)]) == 2
    assert "holds a finished `jaxnets train digits` run" in _error_line(capsys)
    assert _checksums(digits_run) == before
    info = _strict_json(digits_run / "run.json")
    assert info["command"] == "train digits" and info["status"] == "finished"
    assert info["config"]["epochs"] == 2


def test_overwrite_replaces_the_run(tmp_path):
    out = tmp_path / "run"
    assert cli.main(["train", "iris", "--epochs", "3", "--out", str(out)]) == 0
    (out / "stray.txt").write_text("from the old run")
    assert cli.main([*DIGITS, "--out", str(out), "--overwrite"]) == 0
    assert not (out / "stray.txt").exists()
    assert _strict_json(out / "run.json")["command"] == "train digits"
    assert _strict_json(out / "results.json")["experiment"] == "digits"


def test_a_folder_that_is_no_run_or_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert cli.main(["train", "iris", "--out", str(tmp_path)]) == 2
    assert "not empty and holds no jaxnets run" in _error_line(capsys)
    assert cli.main(["train", "iris", "--out", str(tmp_path / "notes.txt")]) == 2
    assert "is a file, not a folder" in _error_line(capsys)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_failed_start_leaves_no_folder(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "fashion-mnist", "--data-dir", str(tmp_path / "none"), "--source", "files"]
    assert cli.main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    # The not-found message goes on with where to get the files, but is no traceback.
    assert "Fashion-MNIST directory" in err.splitlines()[0] and "Traceback" not in err
    assert not out.exists()


def test_run_files_are_world_readable(digits_run):
    umask = os.umask(0)
    os.umask(umask)
    for name in ("results.json", "run.json", "metrics.jsonl"):
        assert stat.S_IMODE((digits_run / name).stat().st_mode) == 0o666 & ~umask, name


# ----------------------------------------------------------------------------- divergence
def test_a_divergent_run_stops_with_a_line_and_writes_no_nan(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [*DIGITS, "--lr", "1e8", "--optimizer", "sgd", "--schedule", "constant"]
    assert cli.main([*argv, "--out", str(out)]) == 3
    line = _error_line(capsys)
    assert "diverged in epoch 1" in line and "lower learning rate" in line
    assert not (out / "results.json").exists()
    assert _strict_json(out / "run.json")["status"] == "diverged"


def test_a_divergent_iris_setting_stops_before_writing(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "iris", "--setting", "1e9:16", "--out", str(out)]) == 3
    assert "lr=1e+09 hidden=16 diverged in epoch 1" in _error_line(capsys)
    assert not out.exists()


def test_json_files_never_hold_nan(tmp_path):
    write_json_atomic(tmp_path / "r.json", {"loss": float("nan"), "x": [float("inf"), 1.0]})
    assert _strict_json(tmp_path / "r.json") == {"loss": None, "x": [None, 1.0]}
    run = RunDir(tmp_path / "run")
    run.log({"epoch": 1, "val_loss": float("nan")})
    assert run.records() == [{"epoch": 1, "val_loss": None}]


# ----------------------------------------------------------------------------- flags
@pytest.mark.parametrize(
    "argv, flag",
    [
        (["train", "digits", "--lr", "nan"], "--lr"),
        (["train", "digits", "--lr", "-0.1"], "--lr"),
        (["train", "digits", "--epochs", "0"], "--epochs"),
        (["train", "digits", "--batch-size", "0"], "--batch-size"),
        (["train", "digits", "--limit-train", "0"], "--limit-train"),
        (["train", "digits", "--val-fraction", "1.5"], "--val-fraction"),
        (["train", "digits", "--optimizer", "adamm"], "--optimizer"),
        (["train", "iris", "--epochs", "0"], "--epochs"),
        (["train", "iris", "--batch-size", "0"], "--batch-size"),
        (["train", "gcn", "--epochs", "0"], "--epochs"),
        (["train", "gcn", "--lr", "inf"], "--lr"),
        (["pretrain", "bert", "--steps", "0"], "--steps"),
        (["finetune", "bert", "--val-fraction", "1"], "--val-fraction"),
        (["train", "transfer", "--epochs", "-1"], "--epochs"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else v,
)
def test_bad_flags_are_refused_when_parsed(argv, flag, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([*argv, "--out", str(tmp_path / "run")])
    assert exit_.value.code == 2
    line = _error_line(capsys)
    assert f"argument {flag}" in line
    assert not (tmp_path / "run").exists()


def test_a_bad_iris_setting_is_one_line(capsys):
    assert cli.main(["train", "iris", "--setting", "0.1"]) == 2
    assert "--setting expects LR:HIDDEN" in _error_line(capsys)
    assert cli.main(["train", "iris", "--setting", "nan:16"]) == 2
    assert "learning rate must be > 0" in _error_line(capsys)


# ----------------------------------------------------------------------------- resume
def _losses(out: pathlib.Path) -> list[float]:
    return [r["train_loss"] for r in RunDir(out).records()]


def test_resume_goes_on_with_the_runs_own_settings(tmp_path, capsys):
    """Interrupted after epoch 1 of 3, resumed with other flags: the flags that would change
    training are named and ignored, and the run ends as an uninterrupted one does."""
    from jaxnets.experiments.images.config import get_config
    from jaxnets.experiments.images.train import train_and_evaluate

    config = get_config("digits", epochs=3)
    whole = train_and_evaluate(config, tmp_path / "whole", progress=False)

    def stop(epoch, record):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt, match=r"the epoch 1 checkpoint .* is kept"):
        train_and_evaluate(config, tmp_path / "cut", progress=False, on_epoch_end=stop)
    capsys.readouterr()
    changed = ["--epochs", "4", "--lr", "0.01", "--batch-size", "64", "--seed", "3"]
    argv = ["train", "digits", "--out", str(tmp_path / "cut"), "--resume", "--no-progress"]
    assert cli.main([*argv, *changed]) == 0
    out = capsys.readouterr().out
    assert "ignored: epochs=4 (run: 3)" in " ".join(out.split())
    for setting in ("batch_size=64", "learning_rate=0.01", "seed=3"):
        assert setting in out
    assert _losses(tmp_path / "cut") == pytest.approx(_losses(tmp_path / "whole"), rel=1e-6)
    resumed = _strict_json(tmp_path / "cut" / "results.json")
    assert resumed["test_accuracy"] == pytest.approx(whole["test_accuracy"], abs=1e-9)
    assert resumed["config"]["seed"] == 0  # the split was not re-drawn with seed 3


def test_resume_drops_a_torn_metrics_line(tmp_path):
    run = RunDir(tmp_path)
    run.log({"epoch": 1, "train_loss": 0.5})
    with run.metrics_path.open("a") as f:
        f.write('{"epoch": 2, "train_lo')  # a kill during the append
    assert run.records() == [{"epoch": 1, "train_loss": 0.5}]
    run.keep_records(lambda r: r["epoch"] <= 1)
    assert run.metrics_path.read_text() == '{"epoch": 1, "train_loss": 0.5}\n'


def test_a_corrupt_checkpoint_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main([*DIGITS, "--epochs", "3", "--out", str(out)]) == 0
    info = _strict_json(out / "run.json")
    write_json_atomic(out / "run.json", {**info, "status": "running"})  # as if interrupted
    for blob in (out / "checkpoints" / "last").rglob("*"):
        if blob.is_file() and "ocdbt" in str(blob):
            blob.write_bytes(b"not a checkpoint")
    capsys.readouterr()
    assert cli.main([*DIGITS, "--out", str(out), "--resume"]) == 2
    assert "cannot restore this checkpoint" in _error_line(capsys)


# ----------------------------------------------------------------------------- other commands
def test_predict_without_a_trained_model_is_one_line(tmp_path, capsys):
    argv = ["predict", "sentiment", "great film", "--run", str(tmp_path / "none")]
    assert cli.main(argv) == 2
    assert "config.json does not exist" in _error_line(capsys)


def test_bert_without_the_imdb_archive_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["finetune", "bert", "--pretrained", "none", "--data-dir", str(tmp_path), "--out"]
    assert cli.main([*argv, str(out), "--source", "files"]) == 2
    err = capsys.readouterr().err  # where to get the data follows, but no traceback
    assert "no IMDB archive" in err.splitlines()[0] and "Traceback" not in err
    assert not out.exists()
    (tmp_path / "aclImdb_v1.tar.gz").write_bytes(b"\x1f\x8b truncated")
    assert cli.main([*argv, str(out), "--source", "files"]) == 2
    assert "aclImdb_v1.tar.gz" in _error_line(capsys)
    assert not out.exists()


def test_submit_to_a_folder_is_one_line(digits_run, tmp_path, capsys):
    assert cli.main(["submit", "--run", str(digits_run), "--out", str(tmp_path)]) == 2
    assert "is a folder" in _error_line(capsys)


# ----------------------------------------------------------------------------- Ctrl-C
@pytest.mark.slow
def test_ctrl_c_prints_one_line_keeps_the_checkpoint_and_resumes(tmp_path):
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "jaxnets.cli", "train", "digits", "--epochs", "60"]
    argv += ["--no-progress", "--out", str(out)]
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A background job may inherit SIGINT ignored; a user's terminal delivers it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not (out / "checkpoints" / "last").is_dir() or len(RunDir(out).records()) < 3:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "resume with --resume" in lines[0], err
    epochs = len(RunDir(out).records())
    assert f"interrupted in epoch {epochs + 1}" in lines[0]
    assert _strict_json(out / "run.json")["status"] == "running"
    resumed = subprocess.run(
        [*argv, "--resume"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from the epoch {epochs} checkpoint" in resumed.stdout
    assert [r["epoch"] for r in RunDir(out).records()] == list(range(1, 61))
    assert _strict_json(out / "run.json")["status"] == "finished"


def test_a_bare_interrupt_prints_one_named_line(monkeypatch, capsys):
    """Ctrl-C outside the trainer (a KeyboardInterrupt with no message, as in `train gcn`) still
    prints a line that says what happened, and exits 130."""
    import types

    def run(args):
        raise KeyboardInterrupt

    module = types.SimpleNamespace(add_arguments=lambda parser: None, run=run)
    monkeypatch.setitem(sys.modules, "fake_command", module)
    monkeypatch.delenv("JAXNETS_DEBUG", raising=False)
    assert cli._run_module("fake_command", "jaxnets fake", "", []) == 130
    assert capsys.readouterr().err == "jaxnets fake: interrupted\n"


def test_an_unfinished_run_of_a_command_without_resume_is_not_offered_resume(tmp_path, capsys):
    # `train iris` and `train gcn` have no --resume: the refusal must not suggest one.
    write_json_atomic(tmp_path / "run.json", {"command": "train iris", "status": "running"})
    assert cli.main(["train", "iris", "--out", str(tmp_path)]) == 2
    line = _error_line(capsys)
    assert "unfinished" in line and "choose a new --out, or --overwrite" in line
    assert "--resume" not in line
