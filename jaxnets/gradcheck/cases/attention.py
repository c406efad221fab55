"""Audit cases for attention, the feed-forward, positional encoding, embedding, the transformer
encoder block, and a tiny transformer classifier built only from hand-derived layers.

The key projection's bias is left out of the relative comparisons. Adding a constant vector b_k
to every key adds q . b_k to a whole row of scores, which the softmax ignores, so its gradient is
identically zero: hand-derived and autodiff give roundoff (~1e-16) and central differences give
roundoff (~1e-11), and the course's rel_error, floored at 1e-8, turns that into an "error" of
1e-3 whatever the backward does. tests/test_attention.py checks that gradient separately, in
absolute terms. The forwards are jitted so each check compiles a few programs instead of running
every primitive eagerly (seconds each on a small CPU in float64).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxnets.gradcheck.cases.base import LayerCase, ModelCase, normal, randint
from jaxnets.gradcheck.core import GradCheck, check_model
from jaxnets.layers import attention as att
from jaxnets.layers import core, losses

f64 = jnp.float64


# ----------------------------------------------------------------------------- the key bias
def split_key_bias(params: Any) -> tuple[Any, list]:
    """Params with every fused-qkv bias replaced by its q and v thirds, and the k thirds."""
    kept, key_biases = {}, []
    for name, value in params.items():
        if name == "qkv":
            b_q, b_k, b_v = jnp.split(value["b"], 3)
            kept[name] = {"w": value["w"], "b_q": b_q, "b_v": b_v}
            key_biases.append(b_k)
        elif isinstance(value, dict):
            kept[name], found = split_key_bias(value)
            key_biases += found
        elif isinstance(value, list):
            kept[name] = []
            for item in value:
                sub, found = split_key_bias(item)
                kept[name].append(sub)
                key_biases += found
        else:
            kept[name] = value
    return kept, key_biases


def merge_key_bias(params: Any, key_biases: list) -> Any:
    """Inverse of `split_key_bias` (consumes `key_biases` in the same order)."""
    biases = iter(key_biases)

    def merge(tree: Any) -> Any:
        if isinstance(tree, list):
            return [merge(t) for t in tree]
        if not isinstance(tree, dict):
            return tree
        if "b_q" in tree:
            return {"w": tree["w"], "b": jnp.concatenate([tree["b_q"], next(biases), tree["b_v"]])}
        return {k: merge(v) for k, v in tree.items()}

    return merge(params)


def _params_case(forward: Callable, backward: Callable, static: tuple[str, ...]):
    """Forward/backward of a layer `f(x, params, *fixed)` whose params hold a fused qkv, with
    the key biases moved to a fixed argument right after params."""

    def fwd(x, params, key_biases, *fixed, **config):
        return forward(x, merge_key_bias(params, key_biases), *fixed, **config)

    def bwd(dout, cache):
        dx, dparams = backward(dout, cache)
        return dx, split_key_bias(dparams)[0]

    return jax.jit(fwd, static_argnames=static), jax.jit(bwd)


# ----------------------------------------------------------------------------- inputs
def _mask(batch: int, length: int) -> jax.Array:
    """Padding masks (1 = pad) with a short row and, in the second row, only padding: a query
    whose keys are all padded must give zeros, not NaN."""
    lengths = jnp.array([max(length - 1, 1), 0, length, 1][:batch])
    return (jnp.arange(length)[None, :] >= lengths[:, None]).astype(jnp.int32)


def _qkv(key: jax.Array, with_mask: bool, dropout: bool) -> tuple:
    kq, kk, kv = jax.random.split(key, 3)
    b, h, t = 2, 2, 4
    args = (normal(kq, (b, h, t, 3)), normal(kk, (b, h, t, 3)), normal(kv, (b, h, t, 5)))
    mask = _mask(b, t) if with_mask else None
    return (*args, mask, jax.random.fold_in(key, 7) if dropout else None)


def _sequence_params(key: jax.Array, e: int, ff: int, kind: str) -> tuple:
    kx, kp = jax.random.split(key)
    x = normal(kx, (2, 4, e))
    params = att.init_encoder_block(kp, e, ff, f64)
    # Random (not the initial 1 / 0) layer-norm affine and biases exercise every term.
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.fold_in(kp, 1), len(leaves))
    leaves = [leaf + 0.3 * normal(k, leaf.shape) for leaf, k in zip(leaves, keys)]
    params = jax.tree.unflatten(tree, leaves)
    if kind == "attn":
        params = params["attn"]
    elif kind == "ffn":
        return x, params["ffn"]
    kept, key_biases = split_key_bias(params)
    return x, kept, key_biases, _mask(2, 4), jax.random.fold_in(key, 11)


def _one(shape: tuple[int, ...]) -> Callable:
    return lambda key: (normal(key, shape),)


def _embedding_args(key: jax.Array) -> tuple:
    kt, ki = jax.random.split(key)
    return {"table": normal(kt, (7, 4))}, randint(ki, (2, 5), 0, 7)


_SDP = jax.jit(att.scaled_dot_product_forward, static_argnames=("causal", "keep_prob", "train"))
_MHA = _params_case(
    att.multi_head_attention_forward,
    att.multi_head_attention_backward,
    ("num_heads", "causal", "keep_prob", "train"),
)
_BLOCK = _params_case(
    att.encoder_block_forward,
    att.encoder_block_backward,
    ("num_heads", "keep_prob", "train", "norm_first", "eps", "causal", "approximate_gelu"),
)

# Thresholds: sdp, feed-forward, positions and embedding meet the default 1e-6 (worst over
# seeds 0-9: 4e-8). Layer norm inside the block divides by a per-row std and subtracts means,
# so some gradient entries are 1e-3 of the typical size; central differences with h = 1e-5
# are good to ~1e-10 absolute there, and the worst relative error over seeds 0-9 was 3e-6.
_BLOCK_NUMERICAL = 2e-5
_DROP = {"keep_prob": 0.8, "train": True}

CASES = [
    LayerCase(
        "scaled_dot_product",
        _SDP,
        att.scaled_dot_product_backward,
        lambda k: _qkv(k, False, False),
        has_aux=True,
    ),
    LayerCase(
        "scaled_dot_product (padding mask, a fully padded row)",
        _SDP,
        att.scaled_dot_product_backward,
        lambda k: _qkv(k, True, False),
        has_aux=True,
    ),
    LayerCase(
        "scaled_dot_product (causal + padding, dropout)",
        _SDP,
        att.scaled_dot_product_backward,
        lambda k: _qkv(k, True, True),
        {"causal": True, **_DROP},
        has_aux=True,
    ),
    LayerCase(
        "multi_head_attention (mask, dropout)",
        *_MHA,
        lambda k: _sequence_params(k, 8, 16, "attn"),
        {"num_heads": 2, **_DROP},
        has_aux=True,
    ),
    LayerCase(
        "feed_forward (Linear-GELU-Linear)",
        jax.jit(att.feed_forward_forward),
        att.feed_forward_backward,
        lambda k: _sequence_params(k, 8, 16, "ffn"),
    ),
    LayerCase(
        "positional_encoding",
        att.positional_encoding_forward,
        att.positional_encoding_backward,
        _one((2, 4, 6)),
    ),
    LayerCase("embedding", att.embedding_forward, att.embedding_backward, _embedding_args),
    LayerCase(
        "encoder_block post-LN (mask, dropout)",
        *_BLOCK,
        lambda k: _sequence_params(k, 8, 16, "block"),
        {"num_heads": 2, **_DROP},
        numerical_threshold=_BLOCK_NUMERICAL,
    ),
    LayerCase(
        "encoder_block pre-LN (mask, dropout)",
        *_BLOCK,
        lambda k: _sequence_params(k, 8, 16, "block"),
        {"num_heads": 2, "norm_first": True, **_DROP},
        numerical_threshold=_BLOCK_NUMERICAL,
    ),
]


# ----------------------------------------------------------------------------- a tiny transformer
def init_tiny_transformer(
    key: jax.Array,
    vocab_size: int,
    embed_dim: int,
    num_layers: int,
    num_classes: int,
    *,
    ff_dim: int | None = None,
    dtype: Any = jnp.float32,
) -> dict:
    """Embedding, `num_layers` encoder blocks and a linear classifier on the first ([CLS]) token."""
    keys = jax.random.split(key, num_layers + 2)
    return {
        "embed": {"table": 0.5 * jax.random.normal(keys[0], (vocab_size, embed_dim), dtype)},
        "blocks": [att.init_encoder_block(k, embed_dim, ff_dim, dtype) for k in keys[1:-1]],
        "head": {
            "w": 0.3 * jax.random.normal(keys[-1], (embed_dim, num_classes), dtype),
            "b": jnp.zeros(num_classes, dtype),
        },
    }


def _tiny_forward(layers: dict, params, ids, labels, mask, key, config) -> tuple:
    """The network through `layers` (each name -> (callable, returns_cache)), loss and caches."""
    caches = []
    h = layers["embedding"](params["embed"], ids)
    caches.append(h[1] if isinstance(h, tuple) else None)
    h = h[0] if isinstance(h, tuple) else h
    h = layers["positional_encoding"](h)
    h = h[0] if isinstance(h, tuple) else h
    for i, block in enumerate(params["blocks"]):
        k = None if key is None else jax.random.fold_in(key, i)
        out = layers["encoder_block"](h, block, mask, k, **config)
        h, c = out if isinstance(out, tuple) else (out, None)
        caches.append(c)
    logits = layers["affine"](h[:, 0], params["head"])
    logits, c_head = logits if isinstance(logits, tuple) else (logits, None)
    loss = layers["softmax_cross_entropy"](logits, labels)
    loss, c_loss = loss if isinstance(loss, tuple) else (loss, None)
    return loss, (caches, c_head, c_loss, h.shape)


_PLAIN = {
    "embedding": att.embedding_forward,
    "positional_encoding": att.positional_encoding_forward,
    "encoder_block": att.encoder_block_forward,
    "affine": core.affine_forward,
    "softmax_cross_entropy": losses.softmax_cross_entropy_forward,
}
_CUSTOM = {
    "embedding": att.embedding,
    "positional_encoding": att.positional_encoding,
    "encoder_block": att.encoder_block,
    "affine": core.affine,
    "softmax_cross_entropy": losses.softmax_cross_entropy,
}


def tiny_transformer_loss(params, ids, labels, mask=None, key=None, **config) -> jax.Array:
    """Mean cross-entropy, through `manual_vjp` layers: jax.grad of it runs only hand-derived
    backwards (the only other op, taking token 0, is a slice)."""
    return _tiny_forward(_CUSTOM, params, ids, labels, mask, key, config)[0]


def tiny_transformer_plain_loss(params, ids, labels, mask=None, key=None, **config) -> jax.Array:
    """The same loss through the plain forwards, for `jax.grad` to differentiate by itself."""
    return _tiny_forward(_PLAIN, params, ids, labels, mask, key, config)[0]


def tiny_transformer_loss_and_grads(params, ids, labels, mask=None, key=None, **config):
    """(loss, grads) with the backward chained by hand, layer by layer."""
    loss, (caches, c_head, c_loss, shape) = _tiny_forward(
        _PLAIN, params, ids, labels, mask, key, config
    )
    dlogits = losses.softmax_cross_entropy_backward(jnp.ones((), loss.dtype), c_loss)
    dcls, dhead = core.affine_backward(dlogits, c_head)
    dh = jnp.zeros(shape, dcls.dtype).at[:, 0].set(dcls)
    dblocks = []
    for c in reversed(caches[1:]):
        dh, dblock = att.encoder_block_backward(dh, c)
        dblocks.append(dblock)
    dh = att.positional_encoding_backward(dh, None)
    dembed = att.embedding_backward(dh, caches[0])
    return loss, {"embed": dembed, "blocks": dblocks[::-1], "head": dhead}


def _tiny_transformer_case(seed: int) -> GradCheck:
    kp, ki, ky, kd = jax.random.split(jax.random.key(seed), 4)
    # One block keeps the audit quick; tests/test_attention.py chains two under jit.
    params = init_tiny_transformer(kp, 11, 8, 1, 3, ff_dim=12, dtype=f64)
    ids, labels = randint(ki, (2, 5), 0, 11), randint(ky, (2,), 0, 3)
    mask = _mask(2, 5).at[1, 0].set(0)  # the [CLS] position is never padding
    config = {"num_heads": 2, "keep_prob": 0.9, "train": True}
    kept, key_biases = split_key_bias(params)

    def wrap(loss_fn: Callable) -> Callable:
        return jax.jit(
            lambda p: loss_fn(merge_key_bias(p, key_biases), ids, labels, mask, kd, **config)
        )

    def manual(p):
        loss, grads = tiny_transformer_loss_and_grads(
            merge_key_bias(p, key_biases), ids, labels, mask, kd, **config
        )
        return loss, split_key_bias(grads)[0]

    return check_model(
        "tiny transformer classifier (embedding, post-LN block, mask, dropout)",
        jax.jit(manual),
        wrap(tiny_transformer_plain_loss),
        wrap(tiny_transformer_loss),
        kept,
        numerical_threshold=_BLOCK_NUMERICAL,
    )


CASES.append(ModelCase("tiny transformer classifier", _tiny_transformer_case))


__all__ = [
    "CASES",
    "init_tiny_transformer",
    "merge_key_bias",
    "split_key_bias",
    "tiny_transformer_loss",
    "tiny_transformer_loss_and_grads",
    "tiny_transformer_plain_loss",
]
