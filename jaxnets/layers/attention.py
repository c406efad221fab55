"""Attention, the position-wise feed-forward, positional encodings and a whole transformer
encoder block, each with a hand-derived backward.

Shapes: sequences are (B, T, E); attention heads are (B, H, T, Dh) with Dh = E / H. A padding
`mask` is (B, T) with 1 (or True) at PADDING positions, as the course's: padded KEYS get no
attention weight. Dropout takes an explicit PRNG key and `keep_prob` (the probability of KEEPING
a unit, as `jaxnets.layers.dropout`); with `train=False` it is the identity and `key` may be None.

The encoder block's backward is the chain of its pieces' backwards (layer norm, dropout, the
feed-forward, multi-head attention, scaled dot-product attention, affine), so a transformer
built from `encoder_block` trains under `jit` on gradients derived entirely by hand.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxnets.init import xavier_uniform
from jaxnets.layers.checks import check_float, check_int, check_ndim
from jaxnets.layers.core import affine_backward, affine_forward, gelu_backward, gelu_forward
from jaxnets.layers.dropout import dropout_backward, dropout_forward
from jaxnets.layers.norm import layernorm_backward, layernorm_forward
from jaxnets.layers.vjp import manual_vjp

Array = jax.Array
Params = dict[str, Any]


def _swap(x: Array) -> Array:
    return jnp.swapaxes(x, -1, -2)


def _check_keep_prob(layer: str, keep_prob: float, train: bool) -> None:
    if isinstance(keep_prob, bool) or not isinstance(keep_prob, int | float):
        raise TypeError(f"{layer}: keep_prob must be a Python float, got {keep_prob!r}")
    if not 0 < keep_prob <= 1:
        raise ValueError(f"{layer}: keep_prob (probability of keeping) must be in (0, 1]")
    if not isinstance(train, bool):
        raise TypeError(f"{layer}: train must be a Python bool, got {train!r}")


# ----------------------------------------------------------------------------- masks
def attention_mask(
    mask: Array | None, batch_ndim: int, tq: int, tk: int, *, causal: bool = False
) -> Array | None:
    """Boolean "may attend" array broadcastable to scores (*batch, Tq, Tk), or None if all may.

    `mask` (B, Tk) marks padded keys (nonzero = padding); it is broadcast over every batch axis
    after the first (the heads), as the course's mask[:, None, None, :]. `causal` lets query i
    see keys j <= i (aligned at the end when Tq != Tk).
    """
    allowed = None
    if mask is not None:
        check_ndim("attention", "mask", mask, 2, "(B, T) with 1 = padding")
        if mask.shape[1] != tk:
            raise ValueError(f"attention: mask covers {mask.shape[1]} keys, but there are {tk}")
        keep = jnp.asarray(mask) == 0
        allowed = keep.reshape(keep.shape[0], *([1] * (batch_ndim - 1)), 1, tk)
    if causal:
        tri = jnp.arange(tk)[None, :] <= jnp.arange(tq)[:, None] + (tk - tq)
        allowed = tri if allowed is None else allowed & tri
    return allowed


# ----------------------------------------------------------------------------- scaled dot product
def scaled_dot_product_forward(
    q: Array,
    k: Array,
    v: Array,
    mask: Array | None = None,
    key: Array | None = None,
    *,
    causal: bool = False,
    keep_prob: float = 1.0,
    train: bool = False,
) -> tuple[tuple[Array, Array], tuple]:
    """softmax(q k^T / sqrt(d_k)) v over keys -> ((values, attention), cache).

    q (*batch, Tq, D), k (*batch, Tk, D), v (*batch, Tk, Dv); mask (B, Tk), 1 = padded key.
    Masked scores are set to the dtype's most negative value before the softmax, so a padded
    key gets exactly zero weight; the weights are then zeroed where masked, so a query whose
    keys are ALL padded gets an all-zero row (zero values, no NaN) instead of a uniform one.
    `attention` is the weights before dropout; dropout (train, keep_prob < 1) acts on the
    weights that multiply v. Only `values` is differentiated (`attention` is an auxiliary output).
    """
    for name, a in (("q", q), ("k", k), ("v", v)):
        check_float("scaled_dot_product", name, a)
        if a.ndim < 2:
            raise ValueError(f"scaled_dot_product: {name} must be (..., T, D), got {a.shape}")
    if q.shape[-1] != k.shape[-1] or q.shape[:-2] != k.shape[:-2]:
        raise ValueError(f"scaled_dot_product: q {q.shape} and k {k.shape} do not match")
    if v.shape[:-1] != k.shape[:-1]:
        raise ValueError(f"scaled_dot_product: k {k.shape} and v {v.shape} do not match")
    _check_keep_prob("scaled_dot_product", keep_prob, train)
    if mask is not None and q.ndim < 3:
        raise ValueError("scaled_dot_product: a padding mask needs a leading batch axis on q")

    scores = (q @ _swap(k)) / math.sqrt(q.shape[-1])
    allowed = attention_mask(mask, q.ndim - 2, q.shape[-2], k.shape[-2], causal=causal)
    if allowed is not None:
        scores = jnp.where(allowed, scores, jnp.finfo(scores.dtype).min)
    p = jnp.exp(scores - scores.max(axis=-1, keepdims=True))
    p = p / p.sum(axis=-1, keepdims=True)
    if allowed is not None:
        # Only changes fully masked rows (elsewhere exp already gave exact zeros): their
        # uniform weights over padding become zeros.
        p = jnp.where(allowed, p, 0)
    dropped, drop_cache = dropout_forward(
        p, key, keep_prob=keep_prob, train=train and keep_prob < 1
    )
    return (dropped @ v, p), (q, k, v, p, drop_cache)


def scaled_dot_product_backward(dout: Array, cache: tuple) -> tuple[Array, Array, Array]:
    q, k, v, p, drop_cache = cache
    dropped = p if drop_cache is None else p * drop_cache
    dv = _swap(dropped) @ dout
    dp = dropout_backward(dout @ _swap(v), drop_cache)
    # Softmax backward row by row. Masked entries have p = 0, so they pass no gradient, and a
    # fully masked row (all p = 0) gets none at all, which is right: its output is constant 0.
    dscores = p * (dp - (dp * p).sum(axis=-1, keepdims=True)) / math.sqrt(q.shape[-1])
    return dscores @ k, _swap(dscores) @ q, dv


scaled_dot_product = manual_vjp(
    scaled_dot_product_forward, scaled_dot_product_backward, has_aux=True
)


# ----------------------------------------------------------------------------- multi-head attention
def _check_sequence(layer: str, x: Array, params: Params, names: tuple[str, ...]) -> None:
    check_float(layer, "x", x)
    check_ndim(layer, "x", x, 3, "(B, T, E)")
    if not isinstance(params, dict) or any(n not in params for n in names):
        raise ValueError(f"{layer}: params must be a dict with keys {names}")


def multi_head_attention_forward(
    x: Array,
    params: Params,
    mask: Array | None = None,
    key: Array | None = None,
    *,
    num_heads: int,
    causal: bool = False,
    keep_prob: float = 1.0,
    train: bool = False,
) -> tuple[tuple[Array, Array], tuple]:
    """Self-attention of x (B, T, E) -> ((out (B, T, E), attention (B, H, T, T)), cache).

    params: {"qkv": {"w": (E, 3E), "b": (3E,)}, "out": {"w": (E, E), "b": (E,)}}. The fused
    projection's columns are [q | k | v], each split into `num_heads` heads of E / H columns.
    """
    _check_sequence("multi_head_attention", x, params, ("qkv", "out"))
    b, t, e = x.shape
    if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
        raise ValueError(f"multi_head_attention: num_heads must be a positive int, got {num_heads}")
    if e % num_heads:
        raise ValueError(f"multi_head_attention: E={e} is not divisible by num_heads={num_heads}")
    qkv, qkv_cache = affine_forward(x.reshape(b * t, e), params["qkv"])
    if qkv.shape[1] != 3 * e:
        raise ValueError(f"multi_head_attention: qkv projection gives {qkv.shape[1]}, need {3 * e}")
    q, k, v = qkv.reshape(b, t, 3, num_heads, e // num_heads).transpose(2, 0, 3, 1, 4)
    (values, attn), sdp_cache = scaled_dot_product_forward(
        q, k, v, mask, key, causal=causal, keep_prob=keep_prob, train=train
    )
    merged = values.transpose(0, 2, 1, 3).reshape(b * t, e)
    out, out_cache = affine_forward(merged, params["out"])
    return (out.reshape(b, t, e), attn), (qkv_cache, sdp_cache, out_cache)


def multi_head_attention_backward(dout: Array, cache: tuple) -> tuple[Array, Params]:
    qkv_cache, sdp_cache, out_cache = cache
    b, t, e = dout.shape
    num_heads = sdp_cache[0].shape[1]  # q is (B, H, T, Dh)
    dmerged, dout_params = affine_backward(dout.reshape(b * t, e), out_cache)
    dvalues = dmerged.reshape(b, t, num_heads, e // num_heads).transpose(0, 2, 1, 3)
    dq, dk, dv = scaled_dot_product_backward(dvalues, sdp_cache)
    dqkv = jnp.stack([dq, dk, dv]).transpose(1, 3, 0, 2, 4).reshape(b * t, 3 * e)
    dx, dqkv_params = affine_backward(dqkv, qkv_cache)
    return dx.reshape(b, t, e), {"qkv": dqkv_params, "out": dout_params}


multi_head_attention = manual_vjp(
    multi_head_attention_forward, multi_head_attention_backward, has_aux=True
)


# ----------------------------------------------------------------------------- feed-forward
def feed_forward_forward(
    x: Array, params: Params, *, approximate: bool = False
) -> tuple[Array, tuple]:
    """Position-wise Linear(E, F) - GELU - Linear(F, E) of x (..., E).

    params: {"fc1": {"w": (E, F), "b": (F,)}, "fc2": {"w": (F, E), "b": (E,)}}. Exact (erf)
    GELU by default, as torch's nn.GELU and Hugging Face BERT; `approximate` is the tanh form.
    """
    check_float("feed_forward", "x", x)
    if not isinstance(params, dict) or "fc1" not in params or "fc2" not in params:
        raise ValueError("feed_forward: params must be a dict with keys ('fc1', 'fc2')")
    rows = x.reshape(-1, x.shape[-1])
    h, c1 = affine_forward(rows, params["fc1"])
    g, (h, s, _) = gelu_forward(h, approximate=approximate)
    out, c2 = affine_forward(g, params["fc2"])
    # The GELU form is kept as the cache's structure (a dict key), not as a Python bool among
    # the residuals, which custom_vjp and jit turn into traced arrays.
    cg = {"tanh" if approximate else "erf": (h, s)}
    return out.reshape(*x.shape[:-1], out.shape[-1]), (c1, cg, c2)


def feed_forward_backward(dout: Array, cache: tuple) -> tuple[Array, Params]:
    c1, cg, c2 = cache
    ((form, (h, s)),) = cg.items()
    dg, d2 = affine_backward(dout.reshape(-1, dout.shape[-1]), c2)
    dx, d1 = affine_backward(gelu_backward(dg, (h, s, form == "tanh")), c1)
    return dx.reshape(*dout.shape[:-1], dx.shape[-1]), {"fc1": d1, "fc2": d2}


feed_forward = manual_vjp(feed_forward_forward, feed_forward_backward)


# ----------------------------------------------------------------------------- positions
def sinusoidal_positions(length: int, dim: int, dtype: Any = jnp.float32) -> Array:
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(pos / 10000^(2i/d))."""
    pos = jnp.arange(length, dtype=jnp.float32)[:, None]
    rates = jnp.power(10000.0, -jnp.arange(0, dim, 2, dtype=jnp.float32) / dim)
    table = jnp.zeros((length, dim), jnp.float32)
    table = table.at[:, 0::2].set(jnp.sin(pos * rates))
    table = table.at[:, 1::2].set(jnp.cos(pos * rates[: dim // 2]))
    return table.astype(dtype)


def positional_encoding_forward(x: Array) -> tuple[Array, None]:
    """x (B, T, E) + the sinusoidal table for positions 0..T-1 (a constant: dx = dout)."""
    check_float("positional_encoding", "x", x)
    check_ndim("positional_encoding", "x", x, 3, "(B, T, E)")
    return x + sinusoidal_positions(x.shape[1], x.shape[2], x.dtype), None


def positional_encoding_backward(dout: Array, cache: None) -> Array:
    return dout


positional_encoding = manual_vjp(positional_encoding_forward, positional_encoding_backward)


# ----------------------------------------------------------------------------- embedding
def embedding_forward(params: Params, ids: Array) -> tuple[Array, tuple]:
    """Rows of params["table"] (V, E) picked by integer `ids` (any shape) -> (*ids.shape, E)."""
    table = params["table"]
    check_float("embedding", "table", table)
    check_ndim("embedding", "table", table, 2, "(V, E)")
    check_int("embedding", "ids", ids)
    return table[ids], (table, ids)


def embedding_backward(dout: Array, cache: tuple) -> Params:
    table, ids = cache
    # Scatter-add: a token that occurs several times collects all of its rows' gradients.
    dtable = jnp.zeros_like(table).at[ids.reshape(-1)].add(dout.reshape(-1, table.shape[1]))
    return {"table": dtable}


embedding = manual_vjp(embedding_forward, embedding_backward)


# ----------------------------------------------------------------------------- encoder block
def encoder_block_forward(
    x: Array,
    params: Params,
    mask: Array | None = None,
    key: Array | None = None,
    *,
    num_heads: int,
    keep_prob: float = 1.0,
    train: bool = False,
    norm_first: bool = False,
    eps: float = 1e-5,
    causal: bool = False,
    approximate_gelu: bool = False,
) -> tuple[Array, dict]:
    """One transformer encoder block on x (B, T, E).

    Post-LN (the course's and BERT's, default):  h = LN1(x + Drop(MHA(x))),
                                                out = LN2(h + Drop(FF(h))).
    Pre-LN (`norm_first=True`):                  h = x + Drop(MHA(LN1(x))),
                                                out = h + Drop(FF(LN2(h))).
    params: {"attn": MHA params, "ln1": {gamma, beta}, "ffn": FF params, "ln2": {gamma, beta}}.
    Dropout (train, keep_prob < 1) acts on the attention weights and both residual branches,
    with three keys split from `key`.
    """
    _check_sequence("encoder_block", x, params, ("attn", "ln1", "ffn", "ln2"))
    _check_keep_prob("encoder_block", keep_prob, train)
    drop = train and keep_prob < 1
    if drop and key is None:
        raise ValueError("encoder_block: train=True with keep_prob < 1 needs a PRNG key")
    k_attn, k1, k2 = jax.random.split(key, 3) if drop else (None, None, None)
    mha = dict(num_heads=num_heads, causal=causal, keep_prob=keep_prob, train=drop)

    def residual(branch: Array, k: Array | None) -> tuple[Array, Any]:
        return dropout_forward(branch, k, keep_prob=keep_prob, train=drop)

    if norm_first:
        n1, c_ln1 = layernorm_forward(x, params["ln1"], eps=eps)
        (a, _), c_attn = multi_head_attention_forward(n1, params["attn"], mask, k_attn, **mha)
        a, c_d1 = residual(a, k1)
        h = x + a
        n2, c_ln2 = layernorm_forward(h, params["ln2"], eps=eps)
        f, c_ffn = feed_forward_forward(n2, params["ffn"], approximate=approximate_gelu)
        f, c_d2 = residual(f, k2)
        out = h + f
        # The mode lives in the cache's structure: custom_vjp residuals must be arrays.
        return out, {"pre": (c_ln1, c_attn, c_d1, c_ln2, c_ffn, c_d2)}
    (a, _), c_attn = multi_head_attention_forward(x, params["attn"], mask, k_attn, **mha)
    a, c_d1 = residual(a, k1)
    h, c_ln1 = layernorm_forward(x + a, params["ln1"], eps=eps)
    f, c_ffn = feed_forward_forward(h, params["ffn"], approximate=approximate_gelu)
    f, c_d2 = residual(f, k2)
    out, c_ln2 = layernorm_forward(h + f, params["ln2"], eps=eps)
    return out, {"post": (c_attn, c_d1, c_ln1, c_ffn, c_d2, c_ln2)}


def encoder_block_backward(dout: Array, cache: dict) -> tuple[Array, Params]:
    ((mode, parts),) = cache.items()
    if mode == "pre":
        c_ln1, c_attn, c_d1, c_ln2, c_ffn, c_d2 = parts
        # out = h + f(h): the residual passes dout straight through, the branch adds its part.
        dn2, dffn = feed_forward_backward(dropout_backward(dout, c_d2), c_ffn)
        dh_branch, dln2 = layernorm_backward(dn2, c_ln2)
        dh = dout + dh_branch
        dn1, dattn = multi_head_attention_backward(dropout_backward(dh, c_d1), c_attn)
        dx_branch, dln1 = layernorm_backward(dn1, c_ln1)
        dx = dh + dx_branch
    else:
        c_attn, c_d1, c_ln1, c_ffn, c_d2, c_ln2 = parts
        dz2, dln2 = layernorm_backward(dout, c_ln2)  # z2 = h + Drop(FF(h))
        dh_branch, dffn = feed_forward_backward(dropout_backward(dz2, c_d2), c_ffn)
        dh = dz2 + dh_branch
        dz1, dln1 = layernorm_backward(dh, c_ln1)  # z1 = x + Drop(MHA(x))
        dx_branch, dattn = multi_head_attention_backward(dropout_backward(dz1, c_d1), c_attn)
        dx = dz1 + dx_branch
    return dx, {"attn": dattn, "ln1": dln1, "ffn": dffn, "ln2": dln2}


encoder_block = manual_vjp(encoder_block_forward, encoder_block_backward)


# ----------------------------------------------------------------------------- initialisation
def _dense(key: Array, n_in: int, n_out: int, dtype: Any) -> Params:
    # Xavier-uniform weights and zero biases, as the course's MultiHeadAttention.
    return {"w": xavier_uniform(key, (n_in, n_out), dtype=dtype), "b": jnp.zeros(n_out, dtype)}


def init_multi_head_attention(key: Array, embed_dim: int, dtype: Any = jnp.float32) -> Params:
    """Fused qkv (E, 3E) and output (E, E) projections, Xavier uniform, zero biases."""
    k_qkv, k_out = jax.random.split(key)
    return {
        "qkv": _dense(k_qkv, embed_dim, 3 * embed_dim, dtype),
        "out": _dense(k_out, embed_dim, embed_dim, dtype),
    }


def init_encoder_block(
    key: Array, embed_dim: int, ff_dim: int | None = None, dtype: Any = jnp.float32
) -> Params:
    """Parameters of `encoder_block`: ff_dim defaults to 4E; layer norms start at (1, 0)."""
    ff_dim = ff_dim or 4 * embed_dim
    k_attn, k1, k2 = jax.random.split(key, 3)
    ln = {"gamma": jnp.ones(embed_dim, dtype), "beta": jnp.zeros(embed_dim, dtype)}
    return {
        "attn": init_multi_head_attention(k_attn, embed_dim, dtype),
        "ln1": dict(ln),
        "ffn": {
            "fc1": _dense(k1, embed_dim, ff_dim, dtype),
            "fc2": _dense(k2, ff_dim, embed_dim, dtype),
        },
        "ln2": dict(ln),
    }
