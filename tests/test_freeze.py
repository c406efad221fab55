"""Freezing by parameter path: frozen weights stay bit-identical while the head trains."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from jaxnets import nn
from jaxnets.models.alexnet import AlexNet
from jaxnets.models.resnet import BatchNorm2d, resnet18, resnet50
from jaxnets.training.freeze import (
    check_pattern,
    freeze,
    freeze_batch_stats,
    param_labels,
    param_paths,
    trainable_param_count,
)
from jaxnets.training.metrics import classification_metrics
from jaxnets.training.trainer import Trainer, count_params


class Tiny(nnx.Module):
    """A backbone [conv, batch norm] and a linear head, named as the real backbones are."""

    def __init__(self, rngs: nnx.Rngs):
        self.features = nnx.List(
            [nn.Conv2d(3, 8, 3, padding=1, rngs=rngs), BatchNorm2d(8, rngs=rngs)]
        )
        self.fc = nnx.Linear(8, 4, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.features[1](self.features[0](x)))
        return self.fc(x.mean(axis=(1, 2)))


def _loss(model, batch, *, train):
    return classification_metrics(model(batch["image"]), batch["label"], batch["mask"])


def _batches(n=5, size=16):
    rng = np.random.default_rng(0)
    return [
        {
            "image": rng.normal(1.0, 2.0, size=(size, 8, 8, 3)).astype(np.float32),
            "label": rng.integers(0, 4, size).astype(np.int32),
            "mask": np.ones(size, bool),
        }
        for _ in range(n)
    ]


def _flat(model):
    return {"/".join(map(str, p)): np.array(v[...]) for p, v in nnx.to_flat_state(nnx.state(model))}


def _train(trainable, tmp_path):
    model = Tiny(nnx.Rngs(0))
    before = _flat(model)
    frozen_bn = freeze_batch_stats(model, trainable)
    with Trainer(
        model, freeze(optax.adam(1e-2), trainable), _loss, tmp_path, progress=False
    ) as trainer:
        records = trainer.fit(lambda epoch: _batches(), 2)  # 10 steps
        opt_values = sum(x.size for x in jax.tree.leaves(nnx.state(trainer.optimizer)))
    assert records[-1]["step"] == 10
    return before, _flat(model), frozen_bn, opt_values


def test_frozen_backbone_is_bit_identical_after_training(tmp_path):
    before, after, frozen_bn, opt_values = _train("fc/.*", tmp_path / "frozen")
    assert frozen_bn == 1
    backbone = [k for k in before if k.startswith("features/")]
    assert "features/1/mean" in backbone and "features/1/var" in backbone  # statistics too
    for key in backbone:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    for key in ("fc/kernel", "fc/bias"):
        assert np.abs(after[key] - before[key]).max() > 1e-3, key
    # Adam moments exist for the head only: 2 x 36 values, plus the step counters.
    assert 2 * 36 <= opt_values <= 2 * 36 + 4


def test_unfrozen_model_trains_everything(tmp_path):
    before, after, frozen_bn, opt_values = _train(None, tmp_path / "unfrozen")
    assert frozen_bn == 0
    for key in before:
        if key.startswith(("features/", "fc/")):
            assert np.abs(after[key] - before[key]).max() > 1e-4, key
    assert opt_values >= 2 * count_params(Tiny(nnx.Rngs(0)))


def test_labels_follow_paths():
    model = Tiny(nnx.Rngs(0))
    assert param_paths(model) == [
        "fc/bias", "fc/kernel", "features/0/bias", "features/0/kernel",
        "features/1/bias", "features/1/scale",
    ]  # fmt: skip
    labels = param_labels(nnx.state(model, nnx.Param), "fc/.*")
    assert labels["fc"]["kernel"] == "trainable" and labels["features"][0]["kernel"] == "frozen"
    sgd = optax.sgd(0.1)
    assert freeze(sgd, None) is sgd  # nothing frozen: the optimizer itself, unwrapped
    with pytest.raises(ValueError, match="matches none"):
        check_pattern(model, "head/.*")


def test_trainable_counts_of_the_course_models(capsys):
    alexnet = nnx.eval_shape(lambda: AlexNet(10, hidden=(4096, 1024), rngs=nnx.Rngs(0)))
    frozen, unfrozen = (
        trainable_param_count(alexnet, "classifier/.*"),
        trainable_param_count(alexnet),
    )
    print(f"AlexNet trainable parameters: frozen {frozen:,}, unfrozen {unfrozen:,}")
    assert (frozen, unfrozen) == (41_958_410, 44_428_106)  # the course's numbers
    # A new 10-class fc on ResNet: 512*10 + 10 and 2048*10 + 10 trainable when frozen.
    r18 = nnx.eval_shape(lambda: resnet18(10, rngs=nnx.Rngs(0)))
    r50 = nnx.eval_shape(lambda: resnet50(10, rngs=nnx.Rngs(0)))
    assert trainable_param_count(r18, "fc/.*") == 5_130
    assert trainable_param_count(r50, "fc/.*") == 20_490
    assert trainable_param_count(r50) == 25_557_032 - 2048 * 990 - 990
    assert "frozen 41,958,410" in capsys.readouterr().out
