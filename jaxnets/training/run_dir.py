"""The run folder every experiment writes: run.json, metrics.jsonl, results.json, plots,
checkpoints.

`run.json` says what made the folder (the command, e.g. "train digits", and its config) and
whether the run finished. `RunDir.claim` reads it before anything is written, so a run never
lands silently in a folder that holds another experiment's run or a finished one; `--resume`
continues a run with the settings it was started with (`resume_config`).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import pathlib
import shutil
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from jaxnets.errors import RunFolderError

RUN_FILE = "run.json"


def _plain(value: Any) -> Any:
    # JSON cannot hold numpy/jax scalars or arrays: turn them into Python numbers and lists.
    # NaN and infinities are not JSON either (JSON.parse and jq reject them): they become null.
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, str):
        return _plain(np.asarray(value).tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_json(data: Any, **kwargs: Any) -> str:
    """Strict JSON text of `data` (numpy values as numbers, NaN as null)."""
    return json.dumps(_plain(data), allow_nan=False, **kwargs)


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write JSON through a temporary file and a rename, so a crash never leaves half a file."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    text = to_json(data, indent=2) + "\n"
    # os.open with 0o666 gives the file the umask's usual mode (0644), as the other run files;
    # tempfile.mkstemp would make it private (0600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON object from a file, or RunFolderError naming the file."""
    if not pathlib.Path(path).is_file():
        raise RunFolderError(
            f"{path} does not exist: is {pathlib.Path(path).parent} a finished run folder?"
        )
    try:
        data = json.loads(pathlib.Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunFolderError(f"{path}: unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise RunFolderError(f"{path}: expected a JSON object")
    return data


def read_results(run_dir: str | os.PathLike) -> dict[str, Any]:
    """A finished run's results.json, or RunFolderError naming what is missing."""
    path = pathlib.Path(run_dir) / "results.json"
    if not path.is_file():
        raise RunFolderError(f"{path} not found: is {run_dir} a finished run folder?")
    return read_json(path)


class RunDir:
    """A folder holding one run's outputs, created on the first write.

    `metrics.jsonl` gets one JSON object per line (per epoch, usually); `results.json` the final
    metrics under plain names (`test_accuracy`, `test_loss`, ...); `run.json` what made it.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = pathlib.Path(path)
        self.metrics_path = self.path / "metrics.jsonl"
        self.results_path = self.path / "results.json"
        self.info_path = self.path / RUN_FILE
        self.checkpoint_dir = self.path / "checkpoints"
        self.stored: dict[str, Any] | None = None  # run.json of the run being resumed
        self._claim: tuple[str, Any, bool] | None = None

    # ------------------------------------------------------------------ the folder's owner
    def claim(
        self,
        command: str,
        config: Any,
        *,
        resume: bool = False,
        overwrite: bool = False,
        resumable: bool = True,
    ) -> RunDir:
        """Check that this folder may take a `command` run; writes nothing (see `start`).

        A new or empty folder takes any run. A folder holding a run of `command` takes it
        with `resume` (then `self.stored` is that run's run.json) or `overwrite`. Anything else
        raises RunFolderError saying what is there and how to go on (`--resume` only for a
        `resumable` command).
        """
        if resume and overwrite:
            raise RunFolderError("--resume and --overwrite contradict each other: choose one")
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"--out {self.path} is a file, not a folder")
        if self.path.is_dir() and any(self.path.iterdir()):
            if not self.info_path.is_file():
                raise RunFolderError(
                    f"--out {self.path} is not empty and holds no jaxnets run ({RUN_FILE} "
                    "missing): choose a new or empty folder"
                )
            stored = read_json(self.info_path)
            held = stored.get("command", "?")
            if held != command and not overwrite:
                raise RunFolderError(
                    f"--out {self.path} holds a `jaxnets {held}` run, not `jaxnets {command}`: "
                    "choose another --out, or --overwrite to delete that run"
                )
            if held == command and not (resume or overwrite):
                finished = stored.get("status") == "finished"
                hint = "choose" if finished or not resumable else "--resume to continue it,"
                raise RunFolderError(
                    f"--out {self.path} holds {_describe(stored)} `jaxnets {command}` run: "
                    f"{hint} a new --out, or --overwrite to delete it and start afresh"
                )
            if resume:
                self.stored = stored
        self._claim = (command, config, overwrite)
        return self

    def start(self) -> None:
        """Create the folder (emptied first with --overwrite) and write run.json. Call it once
        the data has loaded, so a failed start leaves no folder behind."""
        if self._claim is None:
            raise RuntimeError("RunDir.start() needs claim() first")
        command, config, overwrite = self._claim
        if overwrite and self.path.is_dir():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        info = {
            "command": command,
            "status": "running",
            "argv": sys.argv[1:],
            "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "config": config,
        }
        if self.stored is not None:  # resuming: keep what the run was made with
            info = {**self.stored, "status": "running", "resumed": info["started"]}
        write_json_atomic(self.info_path, info)

    def set_status(self, status: str, **fields: Any) -> None:
        """Record "finished", "diverged", ... in run.json (a no-op for unclaimed folders)."""
        if self.info_path.is_file():
            info = read_json(self.info_path)
            write_json_atomic(self.info_path, {**info, "status": status, **fields})

    def finish(self, results: dict[str, Any]) -> None:
        """Write results.json, then mark the run finished."""
        self.write_results(results)
        self.set_status("finished")

    # ------------------------------------------------------------------ files
    def _mkdir(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def log(self, record: dict[str, Any]) -> None:
        self._mkdir()
        with self.metrics_path.open("a") as f:
            f.write(to_json(record) + "\n")

    def records(self) -> list[dict[str, Any]]:
        """The records of metrics.jsonl. A torn last line (a kill during an append) is
        dropped; a bad line before it is an error."""
        if not self.metrics_path.exists():
            return []
        lines = [line for line in self.metrics_path.read_text().splitlines() if line.strip()]
        records = []
        for number, line in enumerate(lines, start=1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if number == len(lines):
                    break  # written only in part: the epoch is redone on resume
                raise RunFolderError(f"{self.metrics_path}: line {number} is not JSON") from None
        return records

    def keep_records(self, keep: Any) -> None:
        """Rewrite metrics.jsonl with only the records `keep(record)` accepts (used on resume to
        drop epochs logged after the checkpoint that training goes on from)."""
        kept = [r for r in self.records() if keep(r)]
        self._mkdir()
        tmp = self.metrics_path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(to_json(r) + "\n" for r in kept))
        os.replace(tmp, self.metrics_path)

    def reset_metrics(self) -> None:
        self.metrics_path.unlink(missing_ok=True)

    def write_results(self, results: dict[str, Any]) -> None:
        write_json_atomic(self.results_path, results)

    def file(self, name: str) -> pathlib.Path:
        """The path of a file to write in the folder (which this creates)."""
        self._mkdir()
        return self.path / name


def _describe(stored: dict[str, Any]) -> str:
    status = stored.get("status", "unfinished")
    if status == "finished":
        return "a finished"
    if status == "running":
        return "an unfinished (interrupted or still running)"
    return f"a {status}"


def resume_config(
    config: Any,
    stored: dict[str, Any] | None,
    free: tuple[str, ...] = (),
    *,
    say: Callable[[str], Any] = print,
) -> Any:
    """The config a resumed run trains with.

    A resumed run continues exactly the run it resumes: its schedule, data split and seed come
    from the run's own config (run.json), so every field is taken from there except those in
    `free` (where the data lives, how much of the test set to score, ...). Each setting of
    `config` that differs and is ignored is named through `say`.
    """
    if stored is None or "config" not in stored:
        return config
    saved = stored["config"]
    values, ignored = {}, []
    for field in dataclasses.fields(config):
        if field.name in free or field.name not in saved:
            continue
        asked = getattr(config, field.name)
        value = _like(asked, saved[field.name])
        if to_json(value) != to_json(asked):
            ignored.append(f"{field.name}={asked} (run: {value})")
        values[field.name] = value
    if ignored:
        say(f"--resume goes on with the run's own settings; ignored: {', '.join(ignored)}")
    return dataclasses.replace(config, **values)


def _like(template: Any, value: Any) -> Any:
    # JSON turned tuples into lists: give them back the config's own container types.
    if isinstance(template, tuple) and isinstance(value, list):
        inner = template[0] if template else None
        return tuple(_like(inner, v) for v in value)
    return value
