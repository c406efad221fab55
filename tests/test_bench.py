"""`jaxnets bench cnn`: a smoke run with tiny batches writes every figure to JSON (no timing
assertions: the numbers depend on the machine), PyTorch's absence is handled, FLOP counts, and
the benchmark's fused three-layer loss is the model module's loss."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets.bench import cnn
from jaxnets.bench.main import main
from jaxnets.gradcheck.core import rel_error
from jaxnets.models import three_layer_convnet as three_layer

TINY = ["--batch-size", "2", "--steps", "1", "--repeats", "1", "--no-torch-compile"]
TINY += ["--matmul-size", "128", "--no-naive-conv"]
CONTENDER_FIELDS = {
    "img_per_s",
    "img_per_s_best",
    "ms_per_step",
    "gflops",
    "fraction_of_matmul",
    "compile_s",
    "seconds_per_step",
}


def test_bench_cnn_writes_the_figures(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["cnn", *TINY, "--models", "three_layer_convnet", "--no-variants", "--json", str(out)]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert {"machine", "settings", "matmul", "models", "load_average_start"} <= set(result)
    assert result["matmul"]["jax_gflops"] > 0
    model = result["models"]["three_layer_convnet"]
    assert model["batch_size"] == 2 and model["input_shape_hwc"] == [32, 32, 3]
    assert model["conv_kernels"] == [cnn.conv.default_impl(3, 7, 32, jnp.float32)]
    expected = {cnn.JAX_HAND, cnn.JAX_GRAD}
    if cnn.torch_available():
        expected |= {cnn.TORCH_EAGER}
        if (cnn.os.cpu_count() or 1) > 1:
            expected |= {cnn.TORCH_EAGER_1}
        assert model["ratio_vs_torch_eager"] > 0
        assert result["matmul"]["torch_gflops"] > 0
    assert set(model["contenders"]) == expected
    for figures in model["contenders"].values():
        assert CONTENDER_FIELDS <= set(figures)
        assert figures["img_per_s"] > 0 and figures["fraction_of_matmul"] > 0
    assert model["hand_derived_time_vs_jax_grad"] > 0
    assert model["ratio_vs_torch_compile"] is None  # not run
    assert "three_layer_convnet, batch 2" in capsys.readouterr().out


def test_bench_without_torch_degrades_gracefully(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cnn, "torch_available", lambda: False)
    out = tmp_path / "bench.json"
    argv = ["cnn", *TINY, "--models", "fashion_cnn", "--no-variants", "--json", str(out)]
    assert main(argv) == 0
    model = json.loads(out.read_text())["models"]["fashion_cnn"]
    assert set(model["contenders"]) == {cnn.JAX_HAND, cnn.JAX_GRAD}
    assert model["ratio_vs_torch_eager"] is None and model["torch_available"] is False
    assert "PyTorch is not installed" in capsys.readouterr().out


def test_bench_rejects_bad_arguments():
    with pytest.raises(SystemExit):
        main(["cnn", "--models", "resnet"])
    with pytest.raises(SystemExit, match="--steps must be >= 1"):
        main(["cnn", "--steps", "0"])


def test_train_flops_known_answer():
    # Three-layer net, batch 1: conv forward 2*32*32*(7*7*3)*32 plus its weight gradient (no
    # input gradient for the first layer); each dense layer forward, dW and dx, 3 * 2 * in * out.
    conv = 2 * 32 * 32 * 7 * 7 * 3 * 32
    dense = 3 * 2 * (32 * 16 * 16 * 100 + 100 * 10)
    assert cnn.MODELS["three_layer_convnet"].train_flops(1) == 2 * conv + dense
    assert cnn.MODELS["three_layer_convnet"].train_flops(8) == 8 * (2 * conv + dense)


def test_conv_kernel_timing_reports_every_kernel():
    figures = cnn.conv_kernels(1, shape=(2, 4, 4, 2), filters=3)
    assert set(figures["ms_forward_backward"]) == {"naive", "lax", "matmul", "auto"}
    assert figures["fast_speedup_vs_naive"] > 0


def test_benchmark_three_layer_loss_is_the_model_loss(x64):
    # Same function, fused conv-relu-pool vs separate layers: values and gradients to roundoff.
    params = three_layer.init_three_layer_convnet(
        jax.random.key(0), (8, 8, 3), num_filters=4, filter_size=3, hidden_dim=5, dtype=jnp.float64
    )
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(3, 8, 8, 3)))
    y = jnp.asarray([0, 3, 9])
    expected, expected_grads = jax.jit(jax.value_and_grad(three_layer.three_layer_convnet_loss))(
        params, x, y
    )
    for fused in (cnn.three_layer_loss, cnn.three_layer_plain_loss):
        value, grads = jax.jit(jax.value_and_grad(fused))(params, x, y)
        assert rel_error(value, expected) < 1e-12
        assert rel_error(grads, expected_grads) < 1e-9


# ----------------------------------------------------------------------------- bench train
def test_bench_train_times_the_real_trainer(tmp_path, capsys):
    # A few epochs of 270 images (300 less the validation split) in the real IDX files: every
    # contender runs, and the figures are consistent with each other.
    from test_image_experiments import _fake_fashion_mnist

    _fake_fashion_mnist(tmp_path / "fashion")
    out = tmp_path / "bench.json"
    argv = ["train", "--recipes", "fashion-mnist", "--repeats", "1"]
    argv += ["--fashion-dir", str(tmp_path / "fashion"), "--json", str(out)]
    assert main(argv) == 0
    figures = json.loads(out.read_text())["recipes"]["fashion-mnist"]
    assert figures["batch_size"] == 64 and figures["steps_per_epoch"] == 270 // 64
    names = {"jaxnets (manual)", "jaxnets (autodiff)"}
    if cnn.torch_available():
        names.add("PyTorch eager")
        assert figures["peer"] == "PyTorch eager"
        assert set(figures["ratios_vs_peer"]) == names - {"PyTorch eager"}
    assert set(figures["contenders"]) == names
    for f in figures["contenders"].values():
        assert f["examples_per_s"] == pytest.approx(
            figures["examples_per_epoch"] / f["epoch_seconds"]
        )
        assert 0 <= f["not_step_fraction"] < 1
    assert "fashion-mnist: an epoch of" in capsys.readouterr().out


def test_bench_train_rejects_bad_arguments():
    from jaxnets.errors import ConfigError

    with pytest.raises(ConfigError, match="--repeats must be >= 1"):
        main(["train", "--repeats", "0"])
    with pytest.raises(SystemExit):
        main(["train", "--recipes", "bert"])


@pytest.mark.slow
def test_bench_train_bert_and_gcn_recipes(tmp_path, shared_data):
    # The CPU BERT preset's MLM step and the molhiv GCN on 64 graphs, jaxnets only.
    if not (shared_data / "ogb" / "ogbg_molhiv").is_dir():
        pytest.skip("ogbg-molhiv is not in ../shared/data/ogb")
    out = tmp_path / "bench.json"
    argv = ["train", "--recipes", "bert-mlm", "gcn-molhiv", "--repeats", "1", "--no-torch"]
    argv += ["--limit-train", "64", "--ogb-dir", str(shared_data / "ogb"), "--json", str(out)]
    assert main(argv) == 0
    recipes = json.loads(out.read_text())["recipes"]
    assert recipes["bert-mlm"]["examples_per_epoch"] == 50 * 32  # a logging epoch of the preset
    assert recipes["gcn-molhiv"]["examples_per_epoch"] == 64
    assert recipes["gcn-molhiv"]["steps_per_epoch"] == 2
    for figures in recipes.values():
        assert set(figures["contenders"]) == {"jaxnets (manual)", "jaxnets (autodiff)"}
        assert figures["peer"] is None and figures["ratios_vs_peer"] == {}
