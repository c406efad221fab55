"""Orbax checkpoints, the one way jaxnets saves and restores state:

- `Checkpoints`: a run's checkpoints, the last epoch (for --resume) and the best by a validation
  metric, each with its JSON meta (the `Trainer` keeps them; `Trainer.restore` loads one);
- `save_module` / `load_module`: one module's variables (its parameters, or any NNX filter of
  them, such as a backbone without its head) as a standalone checkpoint folder.

Orbax writes each checkpoint into a temporary folder and renames it when complete, so an
interrupted save never replaces a good checkpoint with half of one.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx

from jaxnets.errors import CheckpointError


def _manager(directory: pathlib.Path) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True, cleanup_tmp_directories=True)
    return ocp.CheckpointManager(directory.absolute(), options=options)


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """Hold a Ctrl-C that arrives inside the block until the block is done, then raise it.

    A KeyboardInterrupt inside orbax's save would cut it short: its finalize thread logs a
    failure with a traceback, and the step's checkpoint may be lost. Saving takes a fraction
    of a second, so the wait is not felt.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received and previous is signal.default_int_handler:
        raise KeyboardInterrupt


def _cannot_restore(where: pathlib.Path, exc: Exception) -> CheckpointError:
    """One line for a checkpoint orbax could not restore: where, and orbax's first line."""
    reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else repr(exc)
    return CheckpointError(
        f"{where}: cannot restore this checkpoint (corrupt, or saved by a different model or "
        f"settings): {type(exc).__name__}: {reason}"
    )


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
        with _interrupts_held():
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
        try:
            restored = manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
                ),
            )
        except Exception as exc:  # orbax raises many kinds; the user needs one line
            raise _cannot_restore(manager.directory / str(step), exc) from exc
        return step, restored["state"], restored["meta"]

    def restore_last(self, abstract: Any) -> tuple[int, Any, dict[str, Any]] | None:
        """(step, state, meta) of the last checkpoint, or None when there is none."""
        return self._restore(self._last, abstract)

    def restore_best(self, abstract: Any) -> tuple[int, Any, dict[str, Any]] | None:
        return self._restore(self._best, abstract)

    def close(self) -> None:
        self._last.close()
        self._best.close()


# ----------------------------------------------------------------------------- one module
def save_module(path: str | os.PathLike, module: nnx.Module, what: Any = nnx.Param) -> None:
    """The variables of `module` that the NNX filter `what` selects (default: the parameters,
    not the optimizer or RNG state) as an orbax checkpoint folder at `path`, replacing one
    that is there."""
    with _interrupts_held(), ocp.StandardCheckpointer() as checkpointer:
        state = nnx.to_pure_dict(nnx.state(module, what))
        checkpointer.save(pathlib.Path(path).absolute(), state, force=True)


def load_module(path: str | os.PathLike, module: nnx.Module, what: Any = nnx.Param) -> None:
    """Load what `save_module` saved into a module of the same architecture."""
    path = pathlib.Path(path).absolute()
    if not path.exists():
        raise FileNotFoundError(f"no saved model state in {path}")
    abstract = nnx.state(module, what)
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, nnx.to_pure_dict(abstract))
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            restored = checkpointer.restore(path, target)
    except (ValueError, KeyError, TypeError) as exc:
        raise _cannot_restore(path, exc) from exc
    nnx.replace_by_pure_dict(abstract, restored)
    nnx.update(module, abstract)
