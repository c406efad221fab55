"""Training speed of two small CNNs: jaxnets (jit) against PyTorch (eager and torch.compile).

One run, one machine, synthetic batches (data loading is not timed), Adam, lr 1e-3:
- the course's three-layer conv net on 3x32x32 (conv 32 7x7 same - relu - pool - 100 - 10);
- the Fashion-MNIST CNN on 1x28x28 (conv 32 3x3 - pool - conv 64 3x3 - pool - 128 - dropout - 10),
  the NNX `jaxnets.models.cnn.FashionCNN` itself.

Contenders per model: jaxnets with its hand-derived backward (manual_vjp layers, the conv -
relu - pool blocks as the fused `conv.conv2d_relu_pool`, on the native CPU kernels where they
were built), the same forward on XLA's kernels differentiated by `jax.grad`, the hand-derived
step with the `lax` convolution kernel and with XLA's CPU kernels instead of the native ones,
PyTorch eager with its default threads and with one thread (on a loaded machine the default
one-thread-per-core can be far slower), and `torch.compile` where it works. They are timed in
interleaved rounds (each round runs every contender in turn), so a change of machine load hits
all of them alike; the figures are medians over rounds and ratios come from the same run.
Also: a large float32 matmul in jnp and torch (achieved FLOP/s of each step are reported as a
fraction of it), and the naive loop convolution against the fast kernels.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxnets import optim
from jaxnets.bench.machine import (
    cpu_ticks,
    load_average,
    machine_info,
    steal_percent,
    torch_available,
)
from jaxnets.layers import conv, core, losses
from jaxnets.models import three_layer_convnet as three_layer
from jaxnets.models.cnn import FashionCNN
from jaxnets.nn import set_gradients

Array = jax.Array
Runner = Callable[[int], None]  # run k training steps and wait for them to finish

LEARNING_RATE = 1e-3
MATMUL_SIZE = 2048


# ----------------------------------------------------------------------------- models
@dataclasses.dataclass(frozen=True)
class Layer:
    """One conv (kernel > 0) or dense layer, for counting FLOPs."""

    n_in: int
    n_out: int
    positions: int = 1  # output pixels of a conv
    kernel: tuple[int, int] = (1, 1)  # (kh, kw) of a conv


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    input_hwc: tuple[int, int, int]
    layers: tuple[Layer, ...]
    # jaxnets losses (params, x, y, key) -> scalar: hand-derived, and plain for jax.grad.
    init: Callable[[Array], Any]
    loss: Callable
    plain_loss: Callable
    torch_model: Callable[[], Any]
    # More hand-derived jaxnets variants to time: contender name -> loss.
    variants: dict[str, Callable] = dataclasses.field(default_factory=dict)

    def train_flops(self, batch: int) -> float:
        """Multiply-adds x 2 of one training step: forward, weight gradient, input gradient
        (not for the first layer, whose input gradient nobody needs). Elementwise work (relu,
        pooling, softmax, Adam) is not counted."""
        total = 0.0
        for i, layer in enumerate(self.layers):
            kh, kw = layer.kernel
            forward = 2.0 * batch * layer.positions * kh * kw * layer.n_in * layer.n_out
            total += forward * (2 if i == 0 else 3)
        return total


def _torch_three_layer():
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(3, 32, 7, padding=3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 16 * 16, 100),
        nn.ReLU(),
        nn.Linear(100, 10),
    )


def _torch_fashion():
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(128, 10),
    )


def three_layer_loss(params: Any, x: Array, y: Array, key: Array | None = None) -> Array:
    """`three_layer_convnet_loss` (reg 0) with its conv - relu - pool as the fused sandwich
    `conv.conv2d_relu_pool`: the same parameters, function and gradients, fewer passes."""
    h = conv.conv2d_relu_pool(x, params["conv"], padding="same", pool=2)
    h = core.relu(core.affine(h, params["fc1"]))
    return losses.softmax_cross_entropy(core.affine(h, params["fc2"]), y)


def three_layer_plain_loss(params: Any, x: Array, y: Array, key: Array | None = None) -> Array:
    """`three_layer_loss` from the plain forwards, for `jax.grad` to differentiate (the
    convolution with XLA's kernels: the native CPU kernel is opaque to autodiff)."""
    h = conv.conv2d_relu_pool_forward(x, params["conv"], padding="same", pool=2, impl="xla")[0]
    h = core.relu_forward(core.affine_forward(h, params["fc1"])[0])[0]
    scores = core.affine_forward(h, params["fc2"])[0]
    return losses.softmax_cross_entropy_forward(scores, y)[0]


def nnx_model_losses(make_model: Callable[[nnx.Rngs], nnx.Module]) -> tuple[Callable, ...]:
    """The runners' functional interface over an NNX model: `init(key)` gives its nnx.Param
    state, and each loss merges a parameter state back into the model (dropout seeded by `key`).
    The first loss runs every layer's hand-derived backward, the second is the same model with
    gradients="autodiff", for `jax.grad` to differentiate on XLA's kernels."""
    graphdef, _, rest = nnx.split(make_model(nnx.Rngs(0)), nnx.Param, ...)

    def init(key: Array) -> nnx.State:
        return nnx.state(make_model(nnx.Rngs(key)), nnx.Param)

    def loss_with(gradients: str) -> Callable:
        def loss(params: nnx.State, x: Array, y: Array, key: Array | None = None) -> Array:
            # copy=True: fresh variables in this trace, so dropout may advance its RNG count.
            model = set_gradients(nnx.merge(graphdef, params, rest, copy=True), gradients)
            if key is not None:
                nnx.reseed(model, default=key)
            return losses.softmax_cross_entropy(model(x), y)

        return loss

    return init, loss_with("manual"), loss_with("autodiff")


JAX_MODULE = "jaxnets (hand-derived, separate conv/relu/pool layers)"

MODELS: dict[str, ModelSpec] = {
    "three_layer_convnet": ModelSpec(
        "three_layer_convnet",
        (32, 32, 3),
        (Layer(3, 32, 32 * 32, (7, 7)), Layer(32 * 16 * 16, 100), Layer(100, 10)),
        lambda key: three_layer.init_three_layer_convnet(key, weight_scale=1e-2),
        three_layer_loss,
        three_layer_plain_loss,
        _torch_three_layer,
        # The model module's own loss: conv2d, relu and max_pool as three manual_vjp layers.
        {JAX_MODULE: lambda p, x, y, key: three_layer.three_layer_convnet_loss(p, x, y)},
    ),
    "fashion_cnn": ModelSpec(
        "fashion_cnn",
        (28, 28, 1),
        (
            Layer(1, 32, 28 * 28, (3, 3)),
            Layer(32, 64, 14 * 14, (3, 3)),
            Layer(64 * 7 * 7, 128),
            Layer(128, 10),
        ),
        *nnx_model_losses(lambda rngs: FashionCNN(rngs=rngs)),
        _torch_fashion,
    ),
}


# ----------------------------------------------------------------------------- runners
def jax_runner(spec: ModelSpec, loss: Callable, batch: int, seed: int = 0) -> Runner:
    """A jitted Adam step on one fixed synthetic batch; params and optimizer state are donated,
    so XLA updates them in place."""
    optimizer = optim.adam(LEARNING_RATE)

    def step(params, opt_state, key, x, y):
        key, sub = jax.random.split(key)
        value, grads = jax.value_and_grad(loss)(params, x, y, sub)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, key, value

    step = jax.jit(step, donate_argnums=(0, 1, 2))
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((batch, *spec.input_hwc)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, batch), jnp.int32)
    params = spec.init(jax.random.key(seed))
    state = [params, optimizer.init(params), jax.random.key(seed + 1)]

    def run(k: int) -> None:
        value = None
        for _ in range(k):
            state[0], state[1], state[2], value = step(*state, x, y)
        jax.block_until_ready(value)

    return run


_TORCH_THREADS: list[int] = []  # PyTorch's default intra-op thread count, read once


def torch_default_threads() -> int:
    import torch

    if not _TORCH_THREADS:
        _TORCH_THREADS.append(torch.get_num_threads())
    return _TORCH_THREADS[0]


def torch_runner(
    spec: ModelSpec, batch: int, compiled: bool = False, threads: int | None = None, seed: int = 0
) -> Runner:
    """PyTorch's Adam step on one fixed synthetic NCHW batch (train mode: dropout on), with
    `threads` intra-op threads (None: PyTorch's default, one per core)."""
    import torch

    threads = threads or torch_default_threads()
    torch.manual_seed(seed)
    model = spec.torch_model().train()
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    forward = torch.compile(model) if compiled else model
    h, w, c = spec.input_hwc
    x, y = torch.randn(batch, c, h, w), torch.randint(0, 10, (batch,))

    def run(k: int) -> None:
        torch.set_num_threads(threads)  # the setting is global: set it for each contender
        for _ in range(k):
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(forward(x), y)
            loss.backward()
            optimizer.step()

    return run


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise TimeoutError if the block runs longer (SIGALRM: main thread on Unix; elsewhere no
    limit)."""
    usable = hasattr(signal, "SIGALRM") and seconds > 0
    try:
        usable = usable and signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None)
    except ValueError:  # not the main thread
        usable = False
    if not usable:
        yield
        return

    def expire(signum, frame):
        raise TimeoutError(f"gave up after {seconds:.0f} s")

    signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)


def time_interleaved(runners: dict[str, Runner], steps: int, repeats: int) -> dict[str, list]:
    """Seconds per step of each runner in `repeats` rounds; every round runs each in turn."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run(steps)
            times[name].append((time.perf_counter() - start) / steps)
    return times


# ----------------------------------------------------------------------------- matmul
def matmul_gflops(repeats: int, size: int = MATMUL_SIZE, with_torch: bool = True) -> dict:
    """Best and median GFLOP/s of a (size x size) float32 matmul, jnp and torch interleaved."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size), np.float32) for _ in range(2))
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    dot = jax.jit(jnp.dot)
    runners: dict[str, Runner] = {
        "jax": lambda k: [jax.block_until_ready(dot(ja, jb)) for _ in range(k)] and None
    }
    if with_torch:
        import torch

        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        threads = torch_default_threads()

        def torch_mm(k: int) -> None:
            torch.set_num_threads(threads)
            for _ in range(k):
                torch.mm(ta, tb)

        runners["torch"] = torch_mm
    for run in runners.values():
        run(1)
    times = time_interleaved(runners, 2, repeats)
    flops = 2.0 * size**3
    return {
        "size": size,
        **{f"{k}_gflops": flops / min(v) / 1e9 for k, v in times.items()},
        **{f"{k}_gflops_median": flops / statistics.median(v) / 1e9 for k, v in times.items()},
    }


# ----------------------------------------------------------------------------- naive conv
def conv_kernels(repeats: int, shape=(32, 8, 8, 16), filters: int = 32, kernel: int = 3) -> dict:
    """Forward + backward of the naive loop conv against the fast kernels on one small input."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    params = {
        "w": jnp.asarray(rng.standard_normal((kernel, kernel, shape[-1], filters)), jnp.float32),
        "b": jnp.zeros((filters,), jnp.float32),
    }

    def timed(layer: Callable, **config) -> Runner:
        grad = jax.jit(
            jax.grad(lambda x, p: jnp.sum(layer(x, p, padding="same", **config) ** 2), (0, 1))
        )
        return lambda k: [jax.block_until_ready(grad(x, params)) for _ in range(k)] and None

    runners = {
        "naive": timed(conv.conv2d_naive),
        "lax": timed(conv.conv2d, impl="lax"),
        "matmul": timed(conv.conv2d, impl="matmul"),
        "auto": timed(conv.conv2d),  # what this backend picks: "native" where it was built
    }
    start = time.perf_counter()
    runners["naive"](1)
    naive_compile = time.perf_counter() - start
    for name in ("lax", "matmul", "auto"):
        runners[name](1)
    times = time_interleaved(runners, 2, repeats)
    ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    return {
        "x_shape": list(shape),
        "kernel": [kernel, kernel, shape[-1], filters],
        "padding": "same",
        "ms_forward_backward": ms,
        "naive_compile_s": naive_compile,
        "auto_kernel": conv.default_impl(shape[-1], kernel, filters, jnp.float32),
        "fast_speedup_vs_naive": ms["naive"] / min(ms["lax"], ms["matmul"], ms["auto"]),
    }


# ----------------------------------------------------------------------------- the benchmark
JAX_HAND = "jaxnets (hand-derived)"
JAX_GRAD = "jaxnets (jax.grad)"
JAX_LAX = "jaxnets (hand-derived, lax conv)"
JAX_XLA = "jaxnets (hand-derived, XLA conv kernels)"
TORCH_EAGER = "PyTorch eager"
TORCH_EAGER_1 = "PyTorch eager, 1 thread"
TORCH_COMPILE = "PyTorch torch.compile"


@dataclasses.dataclass
class Settings:
    batch_size: int = 128
    steps: int = 2  # training steps per contender per round
    repeats: int = 8  # rounds
    models: tuple[str, ...] = tuple(MODELS)
    torch_compile: bool = True
    compile_timeout: float = 90.0
    jax_variants: bool = True  # also time the lax-kernel step and each model's `variants`
    # On a loaded machine PyTorch's default one-thread-per-core can be much slower than one
    # thread; timing both shows how much of a ratio is due to that.
    torch_one_thread: bool = True
    naive_conv: bool = True
    matmul_size: int = MATMUL_SIZE


def bench_model(
    spec: ModelSpec, settings: Settings, matmul: dict, log: Callable[[str], None]
) -> dict:
    batch = settings.batch_size
    runners: dict[str, Runner] = {}
    notes: dict[str, str] = {}
    compile_s: dict[str, float] = {}

    def add(name: str, make: Callable[[], Runner], timeout: float = 0.0) -> None:
        log(f"{spec.name}: compiling {name}")
        start = time.perf_counter()
        try:
            with time_limit(timeout):
                run = make()
                run(1)  # compile / warm up
        except Exception as error:  # a contender that cannot run is reported, not fatal
            notes[name] = f"{type(error).__name__}: {error}".splitlines()[0][:200]
            log(f"{spec.name}: {name} skipped ({notes[name]})")
            return
        compile_s[name] = time.perf_counter() - start
        runners[name] = run

    add(JAX_HAND, lambda: jax_runner(spec, spec.loss, batch))
    add(JAX_GRAD, lambda: jax_runner(spec, spec.plain_loss, batch))
    if settings.jax_variants:
        for name, loss in spec.variants.items():
            add(name, lambda loss=loss: jax_runner(spec, loss, batch))

        def forced_variant(impl: str) -> Runner:
            run = jax_runner(spec, spec.loss, batch)
            with conv.forced_impl(impl):  # the kernel is chosen when the step is traced
                run(1)
            return run

        add(JAX_LAX, lambda: forced_variant("lax"))
        if "native" in auto_conv_kernels(spec):  # else the XLA kernels are the headline row
            add(JAX_XLA, lambda: forced_variant("xla"))
    has_torch = torch_available()
    if has_torch:
        add(TORCH_EAGER, lambda: torch_runner(spec, batch))
        if settings.torch_one_thread and (os.cpu_count() or 1) > 1:
            add(TORCH_EAGER_1, lambda: torch_runner(spec, batch, threads=1))
        if settings.torch_compile:
            add(
                TORCH_COMPILE,
                lambda: torch_runner(spec, batch, compiled=True),
                settings.compile_timeout,
            )
    log(f"{spec.name}: timing {len(runners)} contenders, {settings.repeats} rounds")
    times = time_interleaved(runners, settings.steps, settings.repeats)

    flops = spec.train_flops(batch)
    contenders = {}
    for name, t in times.items():
        framework = "torch" if name.startswith("PyTorch") else "jax"
        median = statistics.median(t)
        gflops = flops / median / 1e9
        contenders[name] = {
            "img_per_s": batch / median,
            "img_per_s_best": batch / min(t),
            "ms_per_step": 1e3 * median,
            "gflops": gflops,
            "fraction_of_matmul": gflops / matmul[f"{framework}_gflops"],
            "compile_s": compile_s[name],
            "seconds_per_step": t,
        }

    def ratio(a: str, b: str) -> float | None:
        if a in contenders and b in contenders:
            return contenders[a]["img_per_s"] / contenders[b]["img_per_s"]
        return None

    return {
        "batch_size": batch,
        "input_shape_hwc": list(spec.input_hwc),
        "train_gflop_per_step": flops / 1e9,
        # The conv kernel impl="auto" picked for each conv layer on this backend.
        "conv_kernels": auto_conv_kernels(spec),
        "contenders": contenders,
        "ratio_vs_torch_eager": ratio(JAX_HAND, TORCH_EAGER),
        "ratio_vs_torch_eager_1_thread": ratio(JAX_HAND, TORCH_EAGER_1),
        "ratio_vs_torch_compile": ratio(JAX_HAND, TORCH_COMPILE),
        # > 1 means the hand-derived step is slower; the goal is <= 1.1.
        "hand_derived_time_vs_jax_grad": ratio(JAX_GRAD, JAX_HAND),
        # The same with both on XLA's conv kernels (jax.grad cannot see into the native one).
        "hand_derived_xla_kernels_time_vs_jax_grad": ratio(JAX_GRAD, JAX_XLA),
        "cpu_kernel_speedup_vs_lax_kernel": ratio(JAX_HAND, JAX_LAX),
        "native_kernel_speedup_vs_xla_kernels": ratio(JAX_HAND, JAX_XLA),
        "skipped": notes,
        "torch_available": has_torch,
    }


def auto_conv_kernels(spec: ModelSpec) -> list[str]:
    """The kernel `impl="auto"` picks for each float32 conv layer of `spec` on this backend."""
    return [
        conv.default_impl(layer.n_in, layer.kernel[1], layer.n_out, jnp.float32)
        for layer in spec.layers
        if layer.kernel != (1, 1)
    ]


def run_benchmark(settings: Settings, log: Callable[[str], None] = print) -> dict:
    """All the measurements, as a JSON-ready dict."""
    unknown = set(settings.models) - set(MODELS)
    if unknown:
        raise ValueError(f"unknown model(s) {sorted(unknown)}; known: {list(MODELS)}")
    ticks = cpu_ticks()
    result: dict[str, Any] = {
        "machine": machine_info(),
        "load_average_start": load_average(),
        "settings": dataclasses.asdict(settings),
    }
    if not torch_available():
        log("PyTorch is not installed: timing jaxnets only (pip install 'jaxnets[torch]')")
    log("timing the float32 matmul")
    matmul = matmul_gflops(settings.repeats, settings.matmul_size, torch_available())
    result["matmul"] = matmul
    result["models"] = {
        name: bench_model(MODELS[name], settings, matmul, log) for name in settings.models
    }
    if settings.naive_conv:
        log("timing the naive loop conv against the fast kernels")
        result["conv_kernels"] = conv_kernels(settings.repeats)
    result["load_average_end"] = load_average()
    result["cpu_steal_percent"] = steal_percent(ticks)
    return result
