"""Every model family trains the same on the hand-derived and on autodiff's gradients.

For each family (image CNNs, the batch-norm ResNet-9, ResNet-18 and AlexNet at small inputs,
BERT, the node GCN and the graph GCN), built once from `jaxnets.nn` layers:
- float64: one training step's per-parameter gradients with `gradients="manual"` (the layers'
  hand-derived backwards) and `"autodiff"` (jax.grad of the same forwards) agree to a relative
  error <= 1e-10. The two compute the same sums in a different order, so they differ by a few
  ulps of the largest terms (measured: <= 1e-13 here); 1e-10 leaves room for deeper nets while
  any wrong term of a backward (a missing 1/N, a transposed gradient) gives errors of order 1.
- float32: a few Adam steps from the same seed give the same losses (rtol 1e-4: float32
  rounding of the two orders of summation, compounded over the steps; measured <= 2e-6).
Dropout is on (both modes draw the same masks from the same RNG stream) and batch norm uses
batch statistics and updates its running averages, as in training.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import jraph
import numpy as np
import optax
import pytest
from flax import nnx

from jaxnets import nn
from jaxnets.models.alexnet import AlexNet
from jaxnets.models.bert import BertClassifier, BertConfig, BertModel
from jaxnets.models.cnn import FashionCNN, LeNet5, ResNet9
from jaxnets.models.gcn import BondGCNGraphClassifier, GCNGraphClassifier, GCNNodeClassifier
from jaxnets.models.resnet import resnet18
from jaxnets.models.three_layer_convnet import ThreeLayerConvNet


def _images(rng, n: int, hwc: tuple[int, int, int], classes: int = 10):
    x = rng.standard_normal((n, *hwc))
    return {"x": x, "y": rng.integers(0, classes, n)}


def _ce(model, batch):
    logits = model(jnp.asarray(batch["x"]))
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()


def _graph_batch(rng):
    """Two small molecules (atom and bond categories) padded as jraph.pad_with_graphs does (a
    padding graph last)."""
    n_node, n_edge = np.array([5, 4]), np.array([8, 6])
    senders = np.concatenate([rng.integers(0, 5, 8), 5 + rng.integers(0, 4, 6)])
    receivers = np.concatenate([rng.integers(0, 5, 8), 5 + rng.integers(0, 4, 6)])
    graphs = jraph.GraphsTuple(
        nodes=rng.integers(0, 3, (9, 2)).astype(np.int32),
        edges=rng.integers(0, 2, (14, 2)).astype(np.int32),
        senders=senders.astype(np.int32),
        receivers=receivers.astype(np.int32),
        n_node=n_node.astype(np.int32),
        n_edge=n_edge.astype(np.int32),
        globals=None,
    )
    return {"graphs": jraph.pad_with_graphs(graphs, 12, 16, 3), "y": np.array([0, 1, 0])}


def _graph_loss(model, batch):
    logits = model(batch["graphs"])[:2, 0]  # the last row is the padding graph
    return optax.sigmoid_binary_cross_entropy(logits, batch["y"][:2]).mean()


def _node_batch(rng):
    n = 12
    senders, receivers = rng.integers(0, n, 30), rng.integers(0, n, 30)
    return {
        "x": rng.standard_normal((n, 6)),
        "senders": np.concatenate([senders, receivers]).astype(np.int32),
        "receivers": np.concatenate([receivers, senders]).astype(np.int32),
        "y": rng.integers(0, 3, n),
    }


def _node_loss(model, batch):
    logp = model(jnp.asarray(batch["x"]), batch["senders"], batch["receivers"])
    return -jnp.take_along_axis(logp, batch["y"][:, None], 1).mean()


def _bert_batch(rng):
    ids = rng.integers(1, 40, (3, 9)).astype(np.int32)
    mask = np.zeros((3, 9), np.int32)
    mask[1, 6:] = 1
    return {"ids": ids, "mask": mask, "y": np.array([0.0, 1.0, 1.0])}


def _bert_loss(model, batch):
    logits = model(batch["ids"], batch["mask"])
    return optax.sigmoid_binary_cross_entropy(logits, batch["y"]).mean()


def _bert(norm_first: bool):
    def build(rngs):
        config = BertConfig(
            vocab_size=40,
            embed_dim=16,
            num_heads=2,
            num_layers=2,
            max_len=16,
            norm_first=norm_first,
            dropout_rate=0.2,
        )
        return BertClassifier(BertModel(config, rngs=rngs), head="cls", rngs=rngs)

    return build


# name -> (build(rngs), batch, loss(model, batch))
FAMILIES: dict[str, tuple[Callable, Callable, Callable]] = {
    "fashion_cnn": (
        lambda r: FashionCNN((12, 12, 1), 10, channels=(16, 16), hidden_dim=16, rngs=r),
        lambda rng: _images(rng, 4, (12, 12, 1)),
        _ce,
    ),
    "lenet5": (
        lambda r: LeNet5((12, 12, 2), 5, rngs=r),
        lambda rng: _images(rng, 3, (12, 12, 2), 5),
        _ce,
    ),
    "three_layer": (
        lambda r: ThreeLayerConvNet((8, 8, 3), 4, 3, 10, 10, rngs=r),
        lambda rng: _images(rng, 3, (8, 8, 3)),
        _ce,
    ),
    "resnet9": (
        lambda r: ResNet9((16, 16, 3), 10, width=4, rngs=r),
        lambda rng: _images(rng, 4, (16, 16, 3)),
        _ce,
    ),
    "resnet18": (lambda r: resnet18(10, rngs=r), lambda rng: _images(rng, 2, (32, 32, 3)), _ce),
    "alexnet": (
        lambda r: AlexNet(10, hidden=(32, 16), rngs=r),
        lambda rng: _images(rng, 2, (63, 63, 3)),
        _ce,
    ),
    "bert_post_ln": (_bert(False), _bert_batch, _bert_loss),
    "bert_pre_ln": (_bert(True), _bert_batch, _bert_loss),
    "gcn_node": (
        lambda r: GCNNodeClassifier(6, 8, 3, num_layers=3, dropout=0.3, rngs=r),
        _node_batch,
        _node_loss,
    ),
    "gcn_graph": (
        lambda r: GCNGraphClassifier(1, hidden=8, num_layers=3, atom_feature_dims=(3, 3), rngs=r),
        _graph_batch,
        _graph_loss,
    ),
    "bond_gcn_graph": (
        lambda r: BondGCNGraphClassifier(
            1, atom_feature_dims=(3, 3), bond_feature_dims=(2, 2), hidden=8, num_layers=3, rngs=r
        ),
        _graph_batch,
        _graph_loss,
    ),
}
SLOW = {"resnet18", "alexnet"}
CASES = [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in FAMILIES]


def _train_view(model):
    return nnx.view(model, deterministic=False, use_running_average=False, raise_if_not_found=False)


def _one_step_grads(name: str, gradients: str, dtype):
    build, batch_fn, loss = FAMILIES[name]
    model = build(nnx.Rngs(0))
    if dtype == jnp.float64:
        variables = nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))
        nnx.update(model, jax.tree.map(lambda a: a.astype(dtype), variables))
    nn.set_gradients(model, gradients)
    batch = batch_fn(np.random.default_rng(1))
    value, grads = nnx.value_and_grad(loss)(_train_view(model), batch)
    return value, grads, nnx.state(model, nnx.BatchStat)


@pytest.mark.parametrize("name", CASES)
def test_one_step_gradients_agree_in_float64(name, x64):
    manual = _one_step_grads(name, "manual", jnp.float64)
    auto = _one_step_grads(name, "autodiff", jnp.float64)
    np.testing.assert_allclose(manual[0], auto[0], rtol=1e-12)
    flat_m = dict(nnx.to_flat_state(manual[1]))
    flat_a = dict(nnx.to_flat_state(auto[1]))
    assert flat_m.keys() == flat_a.keys() and flat_m
    largest = max(float(np.abs(g[...]).max()) for g in flat_a.values())
    for path, g in flat_m.items():
        g, h = np.asarray(g[...]), np.asarray(flat_a[path][...])
        assert g.dtype == np.float64
        # A bias before batch norm has an exact gradient of 0 and gets only rounding noise
        # (~1e-16): such tensors are measured against a thousandth of the model's largest.
        scale = max(np.abs(h).max(), 1e-3 * largest)
        err = np.abs(g - h).max() / scale
        assert err <= 1e-10, f"{name} {'/'.join(map(str, path))}: relative error {err:.2e}"
    for a, b in zip(jax.tree.leaves(manual[2]), jax.tree.leaves(auto[2])):
        np.testing.assert_allclose(a, b, rtol=1e-12)  # running statistics updated alike


def _losses(name: str, gradients: str, steps: int = 4) -> list[float]:
    build, batch_fn, loss = FAMILIES[name]
    model = nn.set_gradients(build(nnx.Rngs(0)), gradients)
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    train = _train_view(model)

    @nnx.jit
    def step(train, optimizer, batch):
        value, grads = nnx.value_and_grad(loss)(train, batch)
        optimizer.update(train, grads)
        return value

    rng = np.random.default_rng(2)
    batches = [jax.tree.map(jnp.asarray, batch_fn(rng)) for _ in range(steps)]
    return [float(step(train, optimizer, b)) for b in batches]


FLOAT32_CASES = [n for n in FAMILIES if n not in SLOW]


@pytest.mark.parametrize("name", FLOAT32_CASES)
def test_training_runs_agree_in_float32(name):
    manual, auto = _losses(name, "manual"), _losses(name, "autodiff")
    np.testing.assert_allclose(manual, auto, rtol=1e-4)
    assert manual[0] != manual[-1]  # the steps did train


def test_switching_gradients_is_one_call_and_is_checked():
    model = FashionCNN((12, 12, 1), 10, channels=(4, 8), hidden_dim=16, rngs=nnx.Rngs(0))
    assert nn.gradients_of(model) == "manual"
    assert nn.gradients_of(nn.set_gradients(model, "autodiff")) == "autodiff"
    assert nn.gradients_of(nnx.view(model, gradients="manual")) == "manual"
    with pytest.raises(ValueError, match="unknown gradients 'auto'"):
        nn.set_gradients(model, "auto")
