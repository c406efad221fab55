"""The run folder every experiment writes: metrics.jsonl, results.json, plots, checkpoints."""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import Any

import numpy as np


def _plain(value: Any) -> Any:
    # JSON cannot hold numpy/jax scalars or arrays: turn them into Python numbers and lists.
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, str):
        return np.asarray(value).tolist()
    return value


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write JSON through a temporary file and a rename, so a crash never leaves half a file."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(_plain(data), f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


class RunDir:
    """A folder holding one run's outputs.

    `metrics.jsonl` gets one JSON object per line (per epoch, usually); `results.json` the final
    metrics under plain names (`test_accuracy`, `test_loss`, ...).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = pathlib.Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.path / "metrics.jsonl"
        self.results_path = self.path / "results.json"
        self.checkpoint_dir = self.path / "checkpoints"

    def log(self, record: dict[str, Any]) -> None:
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(_plain(record)) + "\n")

    def records(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        lines = self.metrics_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def keep_records(self, keep: Any) -> None:
        """Rewrite metrics.jsonl with only the records `keep(record)` accepts (used on resume to
        drop epochs logged after the checkpoint that training goes on from)."""
        kept = [r for r in self.records() if keep(r)]
        tmp = self.metrics_path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        os.replace(tmp, self.metrics_path)

    def reset_metrics(self) -> None:
        self.metrics_path.unlink(missing_ok=True)

    def write_results(self, results: dict[str, Any]) -> None:
        write_json_atomic(self.results_path, results)

    def file(self, name: str) -> pathlib.Path:
        return self.path / name
