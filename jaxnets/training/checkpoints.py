"""Orbax checkpoints of a run: the last epoch (for --resume) and the best by a validation metric.

Orbax writes each checkpoint into a temporary folder and renames it when complete, so an
interrupted save never replaces a good checkpoint with half of one.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp


def _manager(directory: pathlib.Path) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True, cleanup_tmp_directories=True)
    return ocp.CheckpointManager(directory.absolute(), options=options)


class Checkpoints:
    """`save(step, state, meta, is_best)` after each epoch; `restore_last(abstract)` to resume;
    `restore_best(abstract)` to evaluate the best model.

    `state` is any pytree of arrays (e.g. `nnx.state(model)` with the optimizer's state);
    `meta` is JSON (epoch, best metric so far, the config) saved beside it.
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = pathlib.Path(directory)
        self._last = _manager(self.directory / "last")
        self._best = _manager(self.directory / "best")

    def save(self, step: int, state: Any, meta: dict[str, Any], *, is_best: bool) -> None:
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        self._last.save(step, args=args, force=True)
        if is_best:
            self._best.save(step, args=args, force=True)
        self.wait()

    def wait(self) -> None:
        self._last.wait_until_finished()
        self._best.wait_until_finished()

    def _restore(self, manager: ocp.CheckpointManager, abstract: Any):
        step = manager.latest_step()
        if step is None:
            return None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract)
        restored = manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        return step, restored["state"], restored["meta"]

    def restore_last(self, abstract: Any) -> tuple[int, Any, dict[str, Any]] | None:
        """(step, state, meta) of the last checkpoint, or None when there is none."""
        return self._restore(self._last, abstract)

    def restore_best(self, abstract: Any) -> tuple[int, Any, dict[str, Any]] | None:
        return self._restore(self._best, abstract)

    def close(self) -> None:
        self._last.close()
        self._best.close()
