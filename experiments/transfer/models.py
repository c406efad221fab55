"""The transfer models: a backbone (AlexNet, ResNet-18/50) with a new head, where the head's
parameters are, and the backbone saved and loaded without its head (orbax), or imported from a
PyTorch state_dict."""

from __future__ import annotations

import pathlib
from typing import Any

from flax import nnx

from jaxnets import nn
from jaxnets.errors import ConfigError
from jaxnets.experiments.transfer.config import TransferConfig
from jaxnets.init import create_module
from jaxnets.models.alexnet import AlexNet
from jaxnets.models.resnet import resnet
from jaxnets.models.torch_import import load_pretrained
from jaxnets.training.checkpoints import load_module, save_module
from jaxnets.training.freeze import is_trainable, path_name
from jaxnets.training.run_dir import read_json, write_json_atomic


def head_pattern(backbone: str) -> str:
    """Regex over "/"-joined parameter paths: the head a transfer replaces (and trains when
    frozen)."""
    return "classifier/.*" if backbone == "alexnet" else "fc/.*"


def torch_head_pattern(backbone: str) -> str:
    """The same head in PyTorch state_dict keys: left out when importing ImageNet weights."""
    return r"classifier\..*" if backbone == "alexnet" else r"fc\..*"


def create_model(
    backbone: str,
    num_classes: int,
    seed: int,
    head_hidden: tuple[int, int] = (4096, 1024),
    gradients: str = "auto",
) -> nnx.Module:
    """The backbone with a new head, initialised in one jitted call (`create_module`).
    head_hidden: AlexNet's classifier widths (the course's head: 9216-4096-1024-num_classes).
    gradients: who computes its layers' backward (`jaxnets.nn.default_gradients`)."""

    def create() -> nnx.Module:
        rngs = nnx.Rngs(params=seed, dropout=seed + 1)
        if backbone == "alexnet":
            return AlexNet(num_classes, hidden=tuple(head_hidden), rngs=rngs)
        return resnet(backbone, num_classes, rngs=rngs)

    return nn.set_gradients(create_module(create), nn.default_gradients(gradients))


def backbone_filter(backbone: str):
    """NNX filter: the weights and batch statistics outside the head."""
    head = head_pattern(backbone)

    def keep(path: tuple, value: Any) -> bool:
        weight = isinstance(value, nnx.Param | nnx.BatchStat)
        return weight and not is_trainable(path_name(path), head)

    return keep


def save_backbone(model: nnx.Module, backbone: str, directory: pathlib.Path, meta: dict) -> None:
    """The backbone's state (head left out) with orbax, and `meta` beside it as JSON."""
    save_module(directory, model, backbone_filter(backbone))
    write_json_atomic(directory.with_suffix(".json"), {"backbone": backbone, **meta})


def backbone_meta(directory: pathlib.Path) -> dict[str, Any]:
    """The JSON `save_backbone` wrote beside an orbax backbone folder ({} if none)."""
    path = directory.with_suffix(".json")
    return read_json(path) if path.is_file() else {}


def load_backbone(model: nnx.Module, config: TransferConfig) -> str:
    """Fill `model`'s backbone from `config.weights` (orbax folder or state_dict file); returns
    a description for the log."""
    path = pathlib.Path(config.weights)
    if path.is_dir():
        meta = backbone_meta(path)
        if meta.get("backbone", config.backbone) != config.backbone:
            raise ConfigError(f"{path} holds a {meta['backbone']} backbone, not {config.backbone}")
        load_module(path, model, backbone_filter(config.backbone))
        source = meta.get("source", "an earlier run")
        return f"orbax backbone {path} (pretrained on {source})"
    report = load_pretrained(model, path, skip=torch_head_pattern(config.backbone))
    return f"PyTorch state_dict {path}: {report.describe()}"
