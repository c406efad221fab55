"""MultiHeadAttention, FeedForward and TransformerBlock over `jaxnets.layers.attention`.

`TransformerBlock` calls the functional `encoder_block` once, so in "manual" mode a whole
block (attention, softmax, dropout, feed-forward, layer norms, residuals) runs one backward
written by hand. Submodule and parameter names (attn.qkv, attn.out, ln1, ffn.fc1, ffn.fc2, ln2;
kernel, bias, scale) are what the Hugging Face BERT import maps onto.
"""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx

from jaxnets.layers import attention, norm
from jaxnets.nn.layer import Layer
from jaxnets.nn.linear import Linear
from jaxnets.nn.norm import LayerNorm

Array = jax.Array

_xavier = nnx.initializers.xavier_uniform()


def _dense(n_in: int, n_out: int, rngs: nnx.Rngs) -> Linear:
    # Xavier-uniform weights and zero biases, as the course's attention and feed-forward.
    return Linear(n_in, n_out, kernel_init=_xavier, rngs=rngs)


class MultiHeadAttention(Layer):
    """Self-attention with a fused qkv projection Linear(E, 3E) ([q | k | v] columns) and an
    output projection Linear(E, E); dropout on the attention weights. Returns (out, weights)."""

    def __init__(
        self, embed_dim: int, num_heads: int, *, dropout_rate: float = 0.0, rngs: nnx.Rngs
    ):
        if embed_dim % num_heads:
            raise ValueError(
                f"MultiHeadAttention: {embed_dim} is not divisible by {num_heads} heads"
            )
        self.num_heads, self.dropout_rate = num_heads, dropout_rate
        self.qkv = _dense(embed_dim, 3 * embed_dim, rngs)
        self.out = _dense(embed_dim, embed_dim, rngs)
        self.deterministic = False
        self.rngs = rngs["dropout"].fork() if dropout_rate > 0 else nnx.data(None)

    @property
    def training(self) -> bool:
        return not self.deterministic and self.dropout_rate > 0

    def layer_params(self) -> dict[str, Any]:
        return {"qkv": self.qkv.layer_params(), "out": self.out.layer_params()}

    def __call__(
        self, x: Array, mask: Array | None = None, *, causal: bool = False
    ) -> tuple[Array, Array]:
        x, params = self.cast((x, self.layer_params()))
        key = self.rngs() if self.training else None
        config = dict(
            num_heads=self.num_heads,
            causal=causal,
            keep_prob=1.0 - self.dropout_rate,
            train=self.training,
        )
        return self.apply(attention.multi_head_attention, x, params, mask, key, **config)


class FeedForward(Layer):
    """Linear(E, F) - GELU - Linear(F, E)."""

    def __init__(
        self, embed_dim: int, hidden_dim: int, *, approximate: bool = False, rngs: nnx.Rngs
    ):
        self.fc1 = _dense(embed_dim, hidden_dim, rngs)
        self.fc2 = _dense(hidden_dim, embed_dim, rngs)
        self.approximate = approximate

    def layer_params(self) -> dict[str, Any]:
        return {"fc1": self.fc1.layer_params(), "fc2": self.fc2.layer_params()}

    def __call__(self, x: Array) -> Array:
        x, params = self.cast((x, self.layer_params()))
        return self.apply(attention.feed_forward, x, params, approximate=self.approximate)


class TransformerBlock(Layer):
    """Post-LN (default, the course's and BERT's): h = LN1(x + Drop(MHA(x))),
    out = LN2(h + Drop(FF(h))). Pre-LN (`norm_first`): h = x + Drop(MHA(LN1(x))),
    out = h + Drop(FF(LN2(h))). Dropout (rate `dropout_rate`) on the attention weights and both
    residual branches, from one key a call."""

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        ff_dim: int | None = None,
        *,
        dropout_rate: float = 0.1,
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
        gelu_approximate: bool = False,
        causal: bool = False,
        rngs: nnx.Rngs,
    ):
        self.attn = MultiHeadAttention(embed_dim, num_heads, rngs=rngs)
        self.ln1 = LayerNorm(embed_dim, eps=layer_norm_eps)
        self.ffn = FeedForward(
            embed_dim, ff_dim or 4 * embed_dim, approximate=gelu_approximate, rngs=rngs
        )
        self.ln2 = LayerNorm(embed_dim, eps=layer_norm_eps)
        self.num_heads, self.dropout_rate = num_heads, dropout_rate
        self.norm_first, self.eps, self.causal = norm_first, layer_norm_eps, causal
        self.gelu_approximate = gelu_approximate
        self.deterministic = False
        self.rngs = rngs["dropout"].fork() if dropout_rate > 0 else nnx.data(None)

    def layer_params(self) -> dict[str, Any]:
        return {
            "attn": self.attn.layer_params(),
            "ln1": self.ln1.layer_params(),
            "ffn": self.ffn.layer_params(),
            "ln2": self.ln2.layer_params(),
        }

    def __call__(self, x: Array, mask: Array | None = None) -> Array:
        x, params = self.cast((x, self.layer_params()))
        train = not self.deterministic and self.dropout_rate > 0
        key = self.rngs() if train else None
        config = dict(
            num_heads=self.num_heads,
            keep_prob=1.0 - self.dropout_rate,
            train=train,
            norm_first=self.norm_first,
            eps=self.eps,
            causal=self.causal,
            approximate_gelu=self.gelu_approximate,
        )
        return self.apply(attention.encoder_block, x, params, mask, key, **config)

    def attention_weights(self, x: Array, mask: Array | None = None) -> Array:
        """The block's attention weights (B, H, T, T) for input x, without dropout (for plots:
        the block's own call returns only its output)."""
        x, params = self.cast((x, self.layer_params()))
        if self.norm_first:
            x = norm.layernorm_forward(x, params["ln1"], eps=self.eps)[0]
        (_, weights), _ = attention.multi_head_attention_forward(
            x, params["attn"], mask, num_heads=self.num_heads, causal=self.causal
        )
        return weights
