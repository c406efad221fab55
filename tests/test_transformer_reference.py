"""The transformer encoder block's forward against references written independently of the
library: a float64 numpy block written from the formulas (both layer-norm orders), and
PyTorch's `nn.TransformerEncoderLayer` with the same weights copied in. The three-way gradient
audit only shows the backward matches the forward; these pin the forward itself."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.special import erf

from jaxnets.layers.attention import encoder_block, init_encoder_block
from jaxnets.nn.attention import TransformerBlock

B, T, E, H, F = 2, 5, 8, 2, 12
EPS = 1e-5
# Row 0 is all real tokens; row 1 has its last two positions padded (1 = padding).
MASK = np.array([[0, 0, 0, 0, 0], [0, 0, 0, 1, 1]])


# ----------------------------------------------------------------------------- numpy reference
def _layer_norm(x, gamma, beta):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return gamma * (x - mean) / np.sqrt(var + EPS) + beta


def _gelu(x):
    # Exact GELU, x * Phi(x), with Phi from the error function.
    return x * 0.5 * (1 + erf(x / np.sqrt(2)))


def _attention(x, p, mask):
    """Per head h: softmax(Q_h K_h^T / sqrt(d)) V_h over the unpadded keys, heads concatenated."""
    d = E // H
    qkv = x @ p["qkv"]["w"] + p["qkv"]["b"]
    q, k, v = qkv[..., :E], qkv[..., E : 2 * E], qkv[..., 2 * E :]
    heads = []
    for h in range(H):
        cols = slice(h * d, (h + 1) * d)
        scores = q[..., cols] @ k[..., cols].transpose(0, 2, 1) / np.sqrt(d)
        scores = np.where(mask[:, None, :] == 1, -np.inf, scores)
        w = np.exp(scores - scores.max(-1, keepdims=True))
        heads.append((w / w.sum(-1, keepdims=True)) @ v[..., cols])
    return np.concatenate(heads, -1) @ p["out"]["w"] + p["out"]["b"]


def _feed_forward(x, p):
    return _gelu(x @ p["fc1"]["w"] + p["fc1"]["b"]) @ p["fc2"]["w"] + p["fc2"]["b"]


def _numpy_block(x, p, mask, norm_first):
    ln1 = lambda z: _layer_norm(z, p["ln1"]["gamma"], p["ln1"]["beta"])  # noqa: E731
    ln2 = lambda z: _layer_norm(z, p["ln2"]["gamma"], p["ln2"]["beta"])  # noqa: E731
    if norm_first:
        h = x + _attention(ln1(x), p["attn"], mask)
        return h + _feed_forward(ln2(h), p["ffn"])
    h = ln1(x + _attention(x, p["attn"], mask))
    return ln2(h + _feed_forward(h, p["ffn"]))


def _params(seed: int = 0) -> dict:
    """Random block parameters, float64, with layer norms away from (1, 0) so they count."""
    params = init_encoder_block(jax.random.key(seed), E, F)
    params = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    rng = np.random.default_rng(seed)
    for ln in ("ln1", "ln2"):
        params[ln] = {"gamma": 1 + 0.3 * rng.standard_normal(E), "beta": rng.standard_normal(E)}
    for dense in (params["attn"]["qkv"], params["attn"]["out"], *params["ffn"].values()):
        dense["b"] = 0.1 * rng.standard_normal(dense["b"].shape)
    return params


def _inputs(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((B, T, E))


def _functional_block(layer, x, params, norm_first):
    """`layer` (encoder_block or its plain forward) on the test's inputs, in float64."""
    params = jax.tree.map(jnp.asarray, params)
    return layer(
        jnp.asarray(x), params, jnp.asarray(MASK), num_heads=H, norm_first=norm_first, eps=EPS
    )


# ----------------------------------------------------------------------------- the tests
@pytest.mark.parametrize("norm_first", [False, True], ids=["post_ln", "pre_ln"])
def test_functional_block_matches_numpy_in_float64(x64, norm_first):
    # Same formulas in float64, different summation order: agreement to ~1e-15; 1e-12 leaves
    # room for the order while a wrong scale (1/d for 1/sqrt(d)), a missed mask or the other
    # layer-norm order each moves outputs by more than 1e-2.
    params, x = _params(), _inputs()
    ours = _functional_block(encoder_block.forward, x, params, norm_first)[0]
    np.testing.assert_allclose(ours, _numpy_block(x, params, MASK, norm_first), atol=1e-12)
    # The hand-derived path (custom_vjp form) runs the same forward.
    manual = _functional_block(encoder_block, x, params, norm_first)
    np.testing.assert_allclose(manual, ours, atol=1e-15)


def test_numpy_reference_tells_the_two_orders_and_the_mask_apart():
    """Positive control: the differences the tolerances above must resolve are large."""
    params, x = _params(), _inputs()
    post = _numpy_block(x, params, MASK, norm_first=False)
    assert np.abs(post - _numpy_block(x, params, MASK, norm_first=True)).max() > 1e-1
    assert np.abs(post - _numpy_block(x, params, np.zeros_like(MASK), False))[1].max() > 1e-2


def _nnx_block(params: dict, norm_first: bool, gradients: str) -> TransformerBlock:
    block = TransformerBlock(
        E, H, F, dropout_rate=0.0, norm_first=norm_first, layer_norm_eps=EPS, rngs=nnx.Rngs(0)
    )
    dense = (
        (block.attn.qkv, params["attn"]["qkv"]),
        (block.attn.out, params["attn"]["out"]),
        (block.ffn.fc1, params["ffn"]["fc1"]),
        (block.ffn.fc2, params["ffn"]["fc2"]),
    )
    for linear, p in dense:
        linear.kernel[...], linear.bias[...] = jnp.float32(p["w"]), jnp.float32(p["b"])
    for norm, p in ((block.ln1, params["ln1"]), (block.ln2, params["ln2"])):
        norm.scale[...], norm.bias[...] = jnp.float32(p["gamma"]), jnp.float32(p["beta"])
    return nnx.view(block, deterministic=True, gradients=gradients)


@pytest.mark.parametrize("gradients", ["manual", "autodiff"])
@pytest.mark.parametrize("norm_first", [False, True], ids=["post_ln", "pre_ln"])
def test_nnx_block_matches_numpy(norm_first, gradients):
    # float32 against the float64 reference: outputs are O(1) after the layer norms and each
    # passes ~E + F = 20-term sums, so rounding is ~1e-6; 1e-5 is that with a 10x margin.
    params, x = _params(), _inputs()
    block = _nnx_block(params, norm_first, gradients)
    ours = block(jnp.asarray(x, jnp.float32), jnp.asarray(MASK))
    np.testing.assert_allclose(ours, _numpy_block(x, params, MASK, norm_first), atol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_ln", "pre_ln"])
def test_block_matches_torch_transformer_encoder_layer(x64, norm_first):
    """PyTorch's own block with our weights copied in (torch keeps weights as (out, in), so
    each is transposed). Compared on the real (unpadded) positions: torch's inference fast path
    may zero the padded ones, which no later layer reads."""
    torch = pytest.importorskip("torch")
    params, x = _params(), _inputs()
    layer = torch.nn.TransformerEncoderLayer(
        E, H, F, dropout=0.0, activation="gelu", layer_norm_eps=EPS,
        batch_first=True, norm_first=norm_first, dtype=torch.float64,
    )  # fmt: skip
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    with torch.no_grad():
        layer.self_attn.in_proj_weight.copy_(t(params["attn"]["qkv"]["w"].T))
        layer.self_attn.in_proj_bias.copy_(t(params["attn"]["qkv"]["b"]))
        layer.self_attn.out_proj.weight.copy_(t(params["attn"]["out"]["w"].T))
        layer.self_attn.out_proj.bias.copy_(t(params["attn"]["out"]["b"]))
        layer.linear1.weight.copy_(t(params["ffn"]["fc1"]["w"].T))
        layer.linear1.bias.copy_(t(params["ffn"]["fc1"]["b"]))
        layer.linear2.weight.copy_(t(params["ffn"]["fc2"]["w"].T))
        layer.linear2.bias.copy_(t(params["ffn"]["fc2"]["b"]))
        for norm, name in ((layer.norm1, "ln1"), (layer.norm2, "ln2")):
            norm.weight.copy_(t(params[name]["gamma"]))
            norm.bias.copy_(t(params[name]["beta"]))
        layer.eval()
        theirs = layer(t(x), src_key_padding_mask=t(MASK.astype(bool))).numpy()
    ours = np.asarray(_functional_block(encoder_block.forward, x, params, norm_first)[0])
    real = MASK == 0
    # Both float64; torch's kernels sum in their own order: ~1e-15 apart, 1e-12 allowed.
    np.testing.assert_allclose(ours[real], theirs[real], atol=1e-12)
