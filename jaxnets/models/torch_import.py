"""Import a PyTorch state_dict (`.pth`/`.pt` or `.safetensors`) into an NNX module of like names.

The NNX modules of `jaxnets.models.alexnet` and `jaxnets.models.resnet` (`jaxnets.nn` layers, or
flax's own nnx.Conv / Linear / BatchNorm, which hold the same names) mirror torchvision's
module names, so the PyTorch key of every NNX variable follows from its path and its module's type:

    Conv2d         kernel (kh, kw, C_in, C_out)  <- weight (C_out, C_in, kh, kw)   OIHW -> HWIO
                   bias                          <- bias
    Linear         kernel (in, out)              <- weight (out, in)              transposed
                   bias                          <- bias
    BatchNorm      scale, bias, mean, var        <- weight, bias, running_mean, running_var
                                                    (num_batches_tracked is not needed)

e.g. `layer1/0/bn2/var` <- `layer1.0.bn2.running_var`. Any mismatch raises a
`StateDictMismatchError` that lists every missing, unexpected and mis-shaped key at once.

`.safetensors` files are read with `safetensors.numpy` (no PyTorch needed); `.pt`/`.pth` files
need torch and are read with `torch.load(weights_only=True)`, which unpickles tensors only.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxnets import nn

StateDict = dict[str, np.ndarray]

# NNX leaf name -> (PyTorch name, layout conversion), per module type.
_CONV = {"kernel": ("weight", lambda w: np.transpose(w, (2, 3, 1, 0))), "bias": ("bias", None)}
_LINEAR = {"kernel": ("weight", lambda w: np.transpose(w)), "bias": ("bias", None)}
_BATCH_NORM = {
    "scale": ("weight", None),
    "bias": ("bias", None),
    "mean": ("running_mean", None),
    "var": ("running_var", None),
}
_IGNORED = ("num_batches_tracked",)
_WEIGHTS = nnx.Any(
    nnx.Param, nnx.BatchStat
)  # what a state_dict holds  # a PyTorch counter with no NNX counterpart


class StateDictMismatchError(ValueError):
    """The state_dict's keys or shapes do not fit the model; the message lists all problems."""


@dataclasses.dataclass
class ImportReport:
    """What `import_state_dict` did: PyTorch keys loaded, and those left out by `skip`."""

    loaded: list[str]
    skipped_model: list[str]  # model variables kept as they were
    skipped_file: list[str]  # file entries not used
    num_values: int  # scalars copied

    def describe(self) -> str:
        text = f"imported {len(self.loaded)} tensors ({self.num_values:,} values)"
        if self.skipped_model:
            text += f"; kept the model's own {', '.join(_abbreviate(self.skipped_model))}"
        return text


def _abbreviate(keys: list[str], limit: int = 6) -> list[str]:
    return keys if len(keys) <= limit else [*keys[:limit], f"... ({len(keys) - limit} more)"]


# ----------------------------------------------------------------------------- reading files
def load_state_dict(path: str | os.PathLike) -> StateDict:
    """Read a PyTorch state_dict from `.safetensors` (numpy only) or `.pt`/`.pth`/`.bin` (torch).

    A checkpoint dict that wraps the weights under "state_dict" or "model" is unwrapped; values
    come back as numpy arrays (float16/bfloat16 as float32).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file {path}")
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        return dict(load_file(path))
    if path.suffix not in (".pt", ".pth", ".bin"):
        raise ValueError(f"{path}: expected a .safetensors, .pt, .pth or .bin file")
    try:
        import torch
    except ImportError as exc:
        raise ImportError(
            f"reading {path} needs PyTorch; convert it to .safetensors to load it without"
        ) from exc
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: expected a state_dict (a dict of tensors), got {type(obj)}")
    out = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
        value = value.detach().cpu()
        if value.dtype in (torch.float16, torch.bfloat16):
            value = value.float()
        out[key] = value.numpy()
    return out


# ----------------------------------------------------------------------------- name mapping
def _module_rules(module: Any) -> dict[str, tuple[str, Callable | None]] | None:
    if isinstance(module, nn.Conv2d | nnx.Conv):
        return _CONV
    if isinstance(module, nn.Linear | nnx.Linear):
        return _LINEAR
    if isinstance(module, nn.BatchNorm | nnx.BatchNorm):
        return _BATCH_NORM
    return None


def torch_names(model: nnx.Module) -> dict[str, tuple[tuple, Callable | None]]:
    """PyTorch key -> (NNX variable path, conversion) for every Param and BatchStat of `model`."""
    modules = {p: m for p, m in nnx.iter_graph(model) if isinstance(m, nnx.Module)}
    names = {}
    for path, _ in nnx.to_flat_state(nnx.state(model, _WEIGHTS)):
        *owner, leaf = path
        rules = _module_rules(modules.get(tuple(owner)))
        if rules is None or leaf not in rules:
            kind = type(modules.get(tuple(owner))).__name__
            raise NotImplementedError(
                f"no PyTorch name for {'/'.join(map(str, path))} (a {kind}); only Conv, Linear "
                "and BatchNorm variables are mapped"
            )
        torch_leaf, convert = rules[leaf]
        names[".".join(map(str, (*owner, torch_leaf)))] = (tuple(path), convert)
    return names


def import_state_dict(
    model: nnx.Module,
    state_dict: Mapping[str, Any],
    *,
    skip: str | None = None,
    strict: bool = True,
) -> ImportReport:
    """Copy `state_dict` (PyTorch names and layouts) into `model` in place.

    skip: a regex; PyTorch keys it fully matches are left out on both sides, e.g. r"fc\\..*" to
        keep a new 10-class head while importing an ImageNet ResNet's backbone.
    strict: raise on keys missing from the file or unexpected in it (as PyTorch's
        load_state_dict); a wrong shape raises always. Nothing is copied unless all is well.
    """
    names = torch_names(model)
    skipped = (lambda k: re.fullmatch(skip, k) is not None) if skip else (lambda k: False)
    file_keys = [k for k in state_dict if k.rsplit(".", 1)[-1] not in _IGNORED]
    missing = [k for k in names if not skipped(k) and k not in state_dict]
    unexpected = [k for k in file_keys if not skipped(k) and k not in names]

    flat = dict(nnx.to_flat_state(nnx.state(model, _WEIGHTS)))
    updates, misshaped, loaded, count = [], [], [], 0
    for key, (path, convert) in names.items():
        if skipped(key) or key not in state_dict:
            continue
        value = np.asarray(state_dict[key])
        if convert is not None:
            if value.ndim != flat[path].ndim:
                misshaped.append(
                    f"{key}: file {value.shape}, model {_torch_shape(flat[path], convert)}"
                )
                continue
            value = convert(value)
        if value.shape != flat[path].shape:
            misshaped.append(
                f"{key}: file {tuple(state_dict[key].shape)}, model "
                f"{_torch_shape(flat[path], convert)} (NNX {'/'.join(map(str, path))} "
                f"{tuple(flat[path].shape)})"
            )
            continue
        updates.append((path, flat[path].replace(jnp.asarray(value, flat[path].dtype))))
        loaded.append(key)
        count += value.size

    problems = []
    if misshaped:
        problems.append("mis-shaped: " + "; ".join(misshaped))
    if strict and missing:
        problems.append("missing from the file: " + ", ".join(missing))
    if strict and unexpected:
        problems.append("unexpected in the file: " + ", ".join(unexpected))
    if problems:
        raise StateDictMismatchError(
            f"state_dict does not fit {type(model).__name__}: " + " | ".join(problems)
        )
    if updates:
        nnx.update(model, nnx.from_flat_state(updates))
    return ImportReport(
        loaded=loaded,
        skipped_model=[k for k in names if skipped(k) or k in missing],
        skipped_file=[k for k in file_keys if skipped(k) or k in unexpected],
        num_values=count,
    )


def _torch_shape(variable: Any, convert: Callable | None = None) -> tuple[int, ...]:
    """The PyTorch shape that would fit `variable` (kernels are stored transposed)."""
    shape = tuple(variable.shape)
    if convert is _CONV["kernel"][1]:
        return (shape[3], shape[2], shape[0], shape[1])
    if convert is _LINEAR["kernel"][1]:
        return shape[::-1]
    return shape


def export_state_dict(model: nnx.Module) -> StateDict:
    """The inverse: `model`'s variables under PyTorch names and layouts (numpy arrays), e.g. for
    `safetensors.numpy.save_file`. `import_state_dict(model, export_state_dict(model))` is exact."""
    flat = dict(nnx.to_flat_state(nnx.state(model, _WEIGHTS)))
    out = {}
    for key, (path, convert) in torch_names(model).items():
        value = np.asarray(flat[path][...])
        if convert is _CONV["kernel"][1]:
            value = np.transpose(value, (3, 2, 0, 1))  # HWIO -> OIHW
        elif convert is _LINEAR["kernel"][1]:
            value = value.T
        out[key] = np.ascontiguousarray(value)
    return out


def load_pretrained(
    model: nnx.Module, path: str | os.PathLike, *, skip: str | None = None, strict: bool = True
) -> ImportReport:
    """`import_state_dict(model, load_state_dict(path), skip=skip, strict=strict)`."""
    return import_state_dict(model, load_state_dict(path), skip=skip, strict=strict)
