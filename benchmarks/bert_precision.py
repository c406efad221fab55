"""Speed of one BERT MLM training step (the `gpu` preset's sizes) in float32 and bfloat16.

    python benchmarks/bert_precision.py [--small]

Synthetic token ids, Adam, jitted; the median over 5 rounds of 20 steps per variant:
- float32 (on NVIDIA GPUs the matmuls run as TF32);
- bfloat16 compute by `set_compute_dtype` (float32 parameters and embedding tables);
- the same with bfloat16 embedding tables too (what `set_compute_dtype` did first);
- bfloat16 with the attention core (scores, softmax, weighted sum) in float32.
`--small` shrinks the model for a quick check on a CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import time
from collections.abc import Iterator

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxnets.models.bert as bert_module
from jaxnets.experiments.bert.train import mlm_loss
from jaxnets.models.bert import BertConfig, BertModel
from jaxnets.training.precision import set_compute_dtype

VARIANTS = ("float32", "bfloat16", "bfloat16, bfloat16 embeddings", "bfloat16, float32 attention")


@contextlib.contextmanager
def float32_attention() -> Iterator[None]:
    original = bert_module.scaled_dot_product

    def upcast(q, k, v, *args, **kwargs):
        f32 = [a.astype(jnp.float32) for a in (q, k, v)]
        values, weights = original(*f32, *args, **kwargs)
        return values.astype(q.dtype), weights

    bert_module.scaled_dot_product = upcast
    try:
        yield
    finally:
        bert_module.scaled_dot_product = original


def time_variant(name: str, config: BertConfig, batch: dict, loss_fn) -> tuple[float, float]:
    model = BertModel(config, rngs=nnx.Rngs(0))
    if name != "float32":
        set_compute_dtype(model, jnp.bfloat16)
    if name == "bfloat16, bfloat16 embeddings":
        for _, node in nnx.iter_graph(model):
            if isinstance(node, nnx.Embed):
                node.dtype = jnp.bfloat16
    optimizer = nnx.Optimizer(model, optax.adamw(1e-4), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, batch):
        (loss, _), grads = nnx.value_and_grad(lambda m: loss_fn(m, batch), has_aux=True)(model)
        optimizer.update(model, grads)
        return loss

    with float32_attention() if "float32 attention" in name else contextlib.nullcontext():
        for _ in range(3):
            step(model, optimizer, batch).block_until_ready()
        rounds = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(20):
                loss = step(model, optimizer, batch)
            loss.block_until_ready()
            rounds.append((time.perf_counter() - start) / 20)
    return float(np.median(rounds)), float(loss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a tiny model, for a CPU check")
    args = parser.parse_args()
    v, e, layers, ff, t, b = (
        (512, 32, 1, 64, 32, 8) if args.small else (16384, 256, 4, 1024, 256, 128)
    )
    config = BertConfig(
        vocab_size=v, embed_dim=e, num_heads=4, num_layers=layers, ff_dim=ff, max_len=t,
        mask_token_id=4, pad_id=0,
    )  # fmt: skip
    p = 0.15 * t
    loss_fn = functools.partial(
        mlm_loss,
        train=True,
        seed=0,
        mask_kwargs={"mask_id": 4, "vocab_size": v, "pad_id": 0, "random_low": 5},
        max_predictions=min(t, math.ceil(p + 3 * math.sqrt(p * 0.85))),
    )
    ids = np.random.default_rng(0).integers(5, v, (b, t)).astype(np.int32)
    batch = {"ids": jnp.asarray(ids), "seed": jnp.int32(0), "mask": jnp.ones(b, bool)}
    for name in VARIANTS:
        seconds, loss = time_variant(name, config, batch, loss_fn)
        print(f"{name:32s} {seconds * 1e3:8.2f} ms/step   loss {loss:.4f}", flush=True)


if __name__ == "__main__":
    main()
