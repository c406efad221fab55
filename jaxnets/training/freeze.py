"""Freeze parameters by path, in the optimizer: big_vision's way.

A parameter's path is its NNX state path joined with "/", e.g. `features/3/kernel` or
`layer4/1/bn2/scale`. A regex `trainable` (matched with `re.fullmatch` against those paths)
labels each parameter "trainable" or "frozen", and `freeze(tx, trainable)` is

    optax.multi_transform({"trainable": tx, "frozen": optax.set_to_zero()}, labels)

so frozen parameters get exactly zero updates (they stay bit-identical) and no optimizer state
(no Adam moments for a frozen backbone). The gradients of frozen parameters are never used, so
under jit XLA drops their computation: a frozen-backbone step costs about a forward pass of the
backbone. `trainable=None` trains everything.

Frozen weights are not the whole story for batch norm: in training mode it normalises with batch
statistics and moves its running averages. `freeze_batch_stats` makes the batch norms of the
frozen part (`jaxnets.models.resnet.BatchNorm2d`) use and keep their running statistics.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx

TRAINABLE, FROZEN = "trainable", "frozen"


def _key_name(key: Any) -> str:
    for attr in ("key", "name", "idx"):  # DictKey, GetAttrKey, SequenceKey
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def path_name(path: tuple) -> str:
    """An NNX state path or a JAX key path as "a/b/0/kernel"."""
    return "/".join(_key_name(k) if not isinstance(k, str | int) else str(k) for k in path)


def param_paths(model: nnx.Module) -> list[str]:
    """The "/"-joined paths of every `nnx.Param` of `model`, sorted."""
    return [path_name(p) for p, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))]


def is_trainable(path: str, trainable: str | None) -> bool:
    return trainable is None or re.fullmatch(trainable, path) is not None


def param_labels(params: Any, trainable: str | None) -> Any:
    """ "trainable"/"frozen" per leaf of `params`: a tree of arrays or of `nnx.Variable`s (the
    optimizer initialises from Variables and updates with plain arrays; both map the same)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: TRAINABLE if is_trainable(path_name(path), trainable) else FROZEN,
        params,
        is_leaf=lambda x: isinstance(x, nnx.Variable),
    )


def freeze(tx: optax.GradientTransformation, trainable: str | None) -> optax.GradientTransformation:
    """`tx` on the parameters whose path fully matches `trainable`, zero updates on the rest."""
    if trainable is None:
        return tx
    re.compile(trainable)  # a bad pattern fails here, not inside jit
    return optax.multi_transform(
        {TRAINABLE: tx, FROZEN: optax.set_to_zero()}, lambda p: param_labels(p, trainable)
    )


def trainable_param_count(model: nnx.Module, trainable: str | None = None) -> int:
    """Scalars in the parameters that `freeze(tx, trainable)` trains (works on nnx.eval_shape
    models too: only shapes are read)."""
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    return sum(int(np.prod(v.shape)) for p, v in flat if is_trainable(path_name(p), trainable))


def check_pattern(model: nnx.Module, trainable: str | None) -> None:
    """Raise if `trainable` matches no parameter (a typo would silently freeze everything)."""
    if trainable is not None and trainable_param_count(model, trainable) == 0:
        raise ValueError(
            f"trainable pattern {trainable!r} matches none of the parameters "
            f"({', '.join(param_paths(model)[:4])}, ...)"
        )


def freeze_batch_stats(model: nnx.Module, trainable: str | None, frozen: bool = True) -> int:
    """Set `frozen_stats` on every batch norm whose parameters are frozen (outside `trainable`);
    returns how many. Only layers that have the flag (jaxnets.models.resnet.BatchNorm2d) count."""
    count = 0
    for path, module in nnx.iter_graph(model):
        if hasattr(module, "frozen_stats") and isinstance(module, nnx.Module):
            if not is_trainable(path_name((*path, "scale")), trainable):
                module.frozen_stats = frozen
                count += 1
    return count
