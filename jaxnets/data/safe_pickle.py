"""Unpickling data files with an allow-list, so a crafted file cannot run code.

A pickle names the callables that rebuild its objects (`os.system` as easily as
`numpy.ndarray`), and `pickle.load` imports and calls whatever it names. The two pickled formats
jaxnets reads (CIFAR-10's python batches, Planetoid's `ind.*` files) need only a handful of
numpy and scipy rebuilders, so `load` resolves only the globals its caller allows and refuses the
file at the first other one, before anything is called.
"""

from __future__ import annotations

import _compat_pickle
import importlib
import pickle
import warnings
from collections.abc import Collection
from pathlib import Path

from jaxnets.data.errors import DatasetFormatError

Global = tuple[str, str]

# What numpy arrays, dtypes and scalars need, under both module paths numpy has used (numpy 2
# moved numpy.core to numpy._core; old files name the first).
NUMPY_GLOBALS: frozenset[Global] = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),  # protocol 5 arrays
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # how protocol 2, written by python 3, stores bytes
    }
)


class UnsafePickleError(DatasetFormatError):
    """The pickle names a global outside the allow-list; nothing it names was called."""

    def __init__(self, path: Path, refused: str, allowed_desc: str):
        self.path, self.refused = path, refused
        super().__init__(f"{path}: refusing to unpickle {refused} ({allowed_desc})")


class _Refused(pickle.UnpicklingError):
    def __init__(self, refused: str):
        super().__init__(refused)
        self.refused = refused


class _AllowListUnpickler(pickle.Unpickler):
    def __init__(self, file, allowed: Collection[Global], encoding: str):
        super().__init__(file, encoding=encoding)
        self._allowed = allowed

    def find_class(self, module: str, name: str):
        # Python 2 pickles say __builtin__.list; translate to the python 3 name, check that,
        # and import exactly what was checked (never the name as the file spells it).
        key = _compat_pickle.NAME_MAPPING.get(
            (module, name), (_compat_pickle.IMPORT_MAPPING.get(module, module), name)
        )
        if key not in self._allowed:
            raise _Refused(f"{module}.{name}")
        with warnings.catch_warnings():  # numpy 2 warns on the numpy.core alias old files use
            warnings.simplefilter("ignore", DeprecationWarning)
            return getattr(importlib.import_module(key[0]), key[1])


def load(
    path: str | Path,
    allowed_globals: Collection[Global],
    *,
    encoding: str = "ASCII",
    kind: str = "data",
    allowed_desc: str = "only arrays may be unpickled",
) -> object:
    """The object pickled in `path`, built from allowed globals only.

    `allowed_globals` holds (module, name) pairs under their python 3 names (builtins.list, not
    __builtin__.list). A refused global raises `UnsafePickleError` naming the file and the global;
    any other failure (truncated, not a pickle) a `DatasetFormatError` saying the file is not a
    readable `kind` file. Both are one line.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            return _AllowListUnpickler(f, allowed_globals, encoding).load()
    except _Refused as exc:
        raise UnsafePickleError(path, exc.refused, allowed_desc) from None
    except Exception as exc:  # any other failure inside the unpickler means a bad file
        raise DatasetFormatError(
            f"{path}: corrupt or truncated pickle, not a readable {kind} file "
            f"({type(exc).__name__}: {exc})"
        ) from exc
