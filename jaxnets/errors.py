"""Errors a user can act on: the `jaxnets` command prints their message as one line and exits
with their `exit_code` (2 for bad input), not a traceback. `jaxnets --debug ...` (or
JAXNETS_DEBUG=1) shows the traceback instead."""

from __future__ import annotations


class JaxnetsError(Exception):
    """Bad input: a flag, a file, a run folder. The message names what is wrong."""

    exit_code = 2


class ConfigError(JaxnetsError, ValueError):
    """Settings that cannot work together (caught where flags alone cannot see it)."""


class RunFolderError(JaxnetsError):
    """The --out folder cannot take this run (another experiment's, a finished run, a file)."""


class CheckpointError(JaxnetsError):
    """A checkpoint that cannot be restored: corrupt, or made by another model."""


class UserCodeError(JaxnetsError):
    """The user's own code (a layer file given to `jaxnets gradcheck`) failed to import, or one
    of its functions raised: the message names the function and the exception."""


class TrainingDiverged(JaxnetsError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""

    exit_code = 3


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, with where it stopped and what was kept (exit status 130)."""
