"""AlexNet and ResNet backbones: torchvision's parameter counts, and weights imported from PyTorch.

The parity tests write their reference networks in PyTorch here (torchvision is not needed),
save the random weights as `.pt` and `.safetensors`, import them, and compare logits. They skip
without torch (and safetensors, optional too); the rest needs only numpy and safetensors.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from jaxnets.models.alexnet import AlexNet, adaptive_avg_pool
from jaxnets.models.resnet import ResNet, resnet18, resnet50
from jaxnets.models.torch_import import (
    StateDictMismatchError,
    export_state_dict,
    import_state_dict,
    load_pretrained,
    load_state_dict,
)
from jaxnets.training.freeze import trainable_param_count
from jaxnets.training.trainer import count_params


def _eval_view(model):
    return nnx.view(model, deterministic=True, use_running_average=True, raise_if_not_found=False)


def _blank(factory):
    """The model with every array zero (RNG keys key(0)), built from shapes alone.

    The tests overwrite all weights by importing them, so no random initialisation needs to be
    compiled and run (for ResNet-18 that alone takes ~5-15 s on a loaded CPU).
    """

    def concrete(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.key(0)
        return np.zeros(x.shape, x.dtype)

    graphdef, state = nnx.split(nnx.eval_shape(factory))
    return nnx.merge(graphdef, jax.tree.map(concrete, state))


def _random_weights(model, seed):
    """A PyTorch-layout state_dict for `model` with random values (numpy, no torch)."""
    rng = np.random.default_rng(seed)
    return {
        k: rng.normal(size=v.shape).astype(np.float32) for k, v in export_state_dict(model).items()
    }


# ----------------------------------------------------------------------------- parameter counts
def test_parameter_counts_equal_torchvision():
    # Shapes only (nnx.eval_shape): nothing is allocated or compiled.
    course = nnx.eval_shape(lambda: AlexNet(10, hidden=(4096, 1024), rngs=nnx.Rngs(0)))
    assert count_params(course.features) == 2_469_696
    assert count_params(course.classifier) == 41_958_410
    assert count_params(course) == 44_428_106
    assert trainable_param_count(course, "classifier/.*") == 41_958_410
    imagenet = nnx.eval_shape(lambda: AlexNet(rngs=nnx.Rngs(0)))
    assert count_params(imagenet) == 61_100_840  # torchvision's alexnet()
    assert count_params(nnx.eval_shape(lambda: resnet18(rngs=nnx.Rngs(0)))) == 11_689_512
    assert count_params(nnx.eval_shape(lambda: resnet50(rngs=nnx.Rngs(0)))) == 25_557_032


def test_resnet_state_names_mirror_torchvision():
    model = nnx.eval_shape(lambda: resnet50(rngs=nnx.Rngs(0)))
    flat = {"/".join(map(str, p)): v for p, v in nnx.to_flat_state(nnx.state(model))}
    assert flat["conv1/kernel"].shape == (7, 7, 3, 64)
    assert flat["layer2/0/downsample/0/kernel"].shape == (1, 1, 256, 512)
    assert flat["layer2/0/downsample/1/var"].shape == (512,)
    assert flat["layer4/2/conv2/kernel"].shape == (3, 3, 512, 512)
    assert flat["fc/kernel"].shape == (2048, 1000)
    assert "layer1/1/downsample/0/kernel" not in flat  # only where the shape changes


def test_adaptive_avg_pool_matches_a_loop():
    # PyTorch's rule: output i averages inputs floor(i*n/m) .. ceil((i+1)*n/m)-1 (overlapping).
    x = np.random.default_rng(0).normal(size=(2, 8, 13, 3)).astype(np.float32)
    out = np.asarray(adaptive_avg_pool(x, (6, 5)))
    want = np.zeros((2, 6, 5, 3))
    for i in range(6):
        for j in range(5):
            h0, h1 = (i * 8) // 6, -(-(i + 1) * 8 // 6)
            w0, w1 = (j * 13) // 5, -(-(j + 1) * 13 // 5)
            want[:, i, j] = x[:, h0:h1, w0:w1].mean(axis=(1, 2))
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
    same = x[:, :6, :6]  # already the output size: passes through unchanged
    np.testing.assert_array_equal(adaptive_avg_pool(same, 6), same)


# ----------------------------------------------------------------------------- import (no torch)
def test_safetensors_round_trip_and_mismatch_errors(tmp_path):
    save_file = pytest.importorskip("safetensors.numpy").save_file  # optional, like torch

    def factory():
        return ResNet("bottleneck", (1, 1, 1, 1), 7, rngs=nnx.Rngs(0))

    model = _blank(factory)
    weights = _random_weights(model, 0)
    assert weights["layer1.0.conv2.weight"].shape == (64, 64, 3, 3)  # OIHW
    assert weights["fc.weight"].shape == (7, 2048)  # (out, in)
    save_file(weights, str(tmp_path / "w.safetensors"))

    report = load_pretrained(model, tmp_path / "w.safetensors")
    assert len(report.loaded) == len(weights) and not report.skipped_model
    # Layouts by hand: HWIO kernels, (in, out) dense kernels, BN names.
    np.testing.assert_array_equal(
        model.layer1[0].conv2.kernel[...], weights["layer1.0.conv2.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(model.fc.kernel[...], weights["fc.weight"].T)
    np.testing.assert_array_equal(model.bn1.var[...], weights["bn1.running_var"])
    np.testing.assert_array_equal(model.bn1.scale[...], weights["bn1.weight"])
    exported = export_state_dict(model)
    assert exported.keys() == weights.keys()
    for key, value in weights.items():
        np.testing.assert_array_equal(exported[key], value, err_msg=key)

    # skip: keep the model's own head, ignore the file's (an ImageNet head of 1000 classes).
    head = np.asarray(model.fc.kernel[...]).copy()
    imagenet = _random_weights(model, 1)
    imagenet["fc.weight"] = np.zeros((1000, 2048), np.float32)
    del imagenet["fc.bias"]
    report = import_state_dict(model, imagenet, skip=r"fc\..*")
    assert report.skipped_model == ["fc.bias", "fc.weight"] and report.skipped_file == ["fc.weight"]
    np.testing.assert_array_equal(model.fc.kernel[...], head)
    conv1 = imagenet["conv1.weight"].transpose(2, 3, 1, 0)
    np.testing.assert_array_equal(model.conv1.kernel[...], conv1)

    # Every problem is named at once, and nothing is copied.
    bad = _random_weights(model, 2)
    bad["fc.weight"] = np.zeros((1000, 2048), np.float32)
    del bad["layer1.0.bn1.running_var"]
    bad["layer9.weight"] = np.zeros(3, np.float32)
    with pytest.raises(StateDictMismatchError) as err:
        import_state_dict(model, bad)
    message = str(err.value)
    assert "missing from the file: layer1.0.bn1.running_var" in message
    assert "unexpected in the file: layer9.weight" in message
    assert "fc.weight: file (1000, 2048), model (7, 2048)" in message
    np.testing.assert_array_equal(model.conv1.kernel[...], conv1)


# ----------------------------------------------------------------------------- torch parity
def _torch_modules():
    """torchvision's AlexNet, BasicBlock, Bottleneck and ResNet, written out (no torchvision)."""
    torch = pytest.importorskip("torch")
    tnn = torch.nn

    class TorchAlexNet(tnn.Module):
        def __init__(self, num_classes, hidden):
            super().__init__()
            self.features = tnn.Sequential(
                tnn.Conv2d(3, 64, 11, stride=4, padding=2), tnn.ReLU(), tnn.MaxPool2d(3, 2),
                tnn.Conv2d(64, 192, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(3, 2),
                tnn.Conv2d(192, 384, 3, padding=1), tnn.ReLU(),
                tnn.Conv2d(384, 256, 3, padding=1), tnn.ReLU(),
                tnn.Conv2d(256, 256, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(3, 2),
            )  # fmt: skip
            self.avgpool = tnn.AdaptiveAvgPool2d((6, 6))
            self.classifier = tnn.Sequential(
                tnn.Dropout(), tnn.Linear(9216, hidden[0]), tnn.ReLU(),
                tnn.Dropout(), tnn.Linear(*hidden), tnn.ReLU(), tnn.Linear(hidden[1], num_classes),
            )  # fmt: skip

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    def conv_bn(c_in, c_out, k, stride):
        return tnn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), tnn.BatchNorm2d(c_out)

    class BasicBlock(tnn.Module):
        expansion = 1

        def __init__(self, c_in, planes, stride):
            super().__init__()
            self.conv1, self.bn1 = conv_bn(c_in, planes, 3, stride)
            self.conv2, self.bn2 = conv_bn(planes, planes, 3, 1)
            self.downsample = None
            if stride != 1 or c_in != planes:
                self.downsample = tnn.Sequential(*conv_bn(c_in, planes, 1, stride))

        def forward(self, x):
            out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            return torch.relu(out + (x if self.downsample is None else self.downsample(x)))

    class Bottleneck(tnn.Module):
        expansion = 4

        def __init__(self, c_in, planes, stride):
            super().__init__()
            self.conv1, self.bn1 = conv_bn(c_in, planes, 1, 1)
            self.conv2, self.bn2 = conv_bn(planes, planes, 3, stride)
            self.conv3, self.bn3 = conv_bn(planes, 4 * planes, 1, 1)
            self.downsample = None
            if stride != 1 or c_in != 4 * planes:
                self.downsample = tnn.Sequential(*conv_bn(c_in, 4 * planes, 1, stride))

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.bn3(self.conv3(torch.relu(self.bn2(self.conv2(out)))))
            return torch.relu(out + (x if self.downsample is None else self.downsample(x)))

    class TorchResNet(tnn.Module):
        def __init__(self, block, layers, num_classes):
            super().__init__()
            self.conv1, self.bn1 = conv_bn(3, 64, 7, 2)
            self.relu, self.maxpool = tnn.ReLU(), tnn.MaxPool2d(3, 2, 1)
            c_in = 64
            for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers), start=1):
                blocks = []
                for j in range(n):
                    blocks.append(block(c_in, planes, 2 if (j == 0 and i > 1) else 1))
                    c_in = planes * block.expansion
                setattr(self, f"layer{i}", tnn.Sequential(*blocks))
            self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
            self.fc = tnn.Linear(c_in, num_classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return torch, TorchAlexNet, TorchResNet, BasicBlock, Bottleneck


def _randomise_batch_norm(torch, model):
    """Non-trivial running statistics and affine parameters, so eval-mode BN is tested."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(0.2 * torch.randn(n, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(n, generator=gen))
                m.weight.copy_(0.5 + 0.5 * torch.rand(n, generator=gen))
                m.bias.copy_(0.1 * torch.randn(n, generator=gen))
    return model.eval()


def _parity(tmp_path, torch_model, jax_model, image_hw):
    """Save torch_model's state_dict as .pt and .safetensors, import each, compare logits."""
    torch = pytest.importorskip("torch")
    save_file = pytest.importorskip("safetensors.torch").save_file

    torch.save(torch_model.state_dict(), tmp_path / "w.pt")
    save_file(torch_model.state_dict(), str(tmp_path / "w.safetensors"))
    x = np.random.default_rng(0).normal(size=(2, *image_hw, 3)).astype(np.float32)
    with torch.no_grad():
        want = torch_model(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()

    forward = nnx.jit(lambda m, x: _eval_view(m)(x))
    for name in ("w.pt", "w.safetensors"):
        report = load_pretrained(jax_model, tmp_path / name)
        assert report.num_values == sum(
            v.size for k, v in load_state_dict(tmp_path / name).items() if "num_batches" not in k
        )
        got = np.asarray(forward(jax_model, x))
        # float32 precision: both frameworks sum the same products in different orders, so
        # the logits agree to a few float32 ulps of their scale.
        scale = np.abs(want).max()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5 * scale, err_msg=name)


def test_alexnet_matches_pytorch(tmp_path):
    torch, TorchAlexNet, *_ = _torch_modules()
    torch.manual_seed(0)
    reference = TorchAlexNet(10, (256, 128)).eval()
    model = _blank(lambda: AlexNet(10, hidden=(256, 128), rngs=nnx.Rngs(0)))
    # 99x131: features end at 2x3, so the adaptive pool's overlapping windows are exercised.
    _parity(tmp_path, reference, model, (99, 131))


def test_resnet18_matches_pytorch(tmp_path):
    torch, _, TorchResNet, BasicBlock, _ = _torch_modules()
    torch.manual_seed(0)
    reference = _randomise_batch_norm(torch, TorchResNet(BasicBlock, (2, 2, 2, 2), 10))
    model = _blank(lambda: resnet18(10, rngs=nnx.Rngs(0)))
    _parity(tmp_path, reference, model, (40, 36))


def test_bottleneck_resnet_matches_pytorch(tmp_path):
    torch, _, TorchResNet, _, Bottleneck = _torch_modules()
    torch.manual_seed(0)
    reference = _randomise_batch_norm(torch, TorchResNet(Bottleneck, (1, 2, 1, 1), 10))
    model = _blank(lambda: ResNet("bottleneck", (1, 2, 1, 1), 10, rngs=nnx.Rngs(0)))
    _parity(tmp_path, reference, model, (32, 32))


@pytest.mark.slow
def test_resnet50_matches_pytorch_at_224(tmp_path):
    torch, _, TorchResNet, _, Bottleneck = _torch_modules()
    torch.manual_seed(0)
    reference = _randomise_batch_norm(torch, TorchResNet(Bottleneck, (3, 4, 6, 3), 1000))
    model = _blank(lambda: resnet50(rngs=nnx.Rngs(0)))
    _parity(tmp_path, reference, model, (224, 224))
