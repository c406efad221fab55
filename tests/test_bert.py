"""The NNX BERT: shapes, masking, agreement with the functional encoder block, the classifier
heads, encoder freezing, and Hugging Face weight loading against transformers' BertModel."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxnets.models.bert import (
    BertClassifier,
    BertConfig,
    BertModel,
    bert_from_hf,
    frozen_encoder_tx,
    load_hf_weights,
)

IDS = np.random.default_rng(0).integers(1, 50, (3, 10)).astype(np.int32)
MASK = np.zeros((3, 10), np.int32)
MASK[0, 6:] = 1  # row 0 has 6 real tokens, row 2 has 1
MASK[2, 1:] = 1


def _small(**overrides) -> BertConfig:
    return BertConfig(
        **{**dict(vocab_size=50, embed_dim=16, num_heads=2, num_layers=2, max_len=32), **overrides}
    )


def _bert(config: BertConfig, seed: int = 0) -> BertModel:
    """Built in one compiled call with the classic threefry (quick to compile on CPU); eager
    initialisation compiles every primitive separately."""
    with jax.threefry_partitionable(False):
        return nnx.jit(lambda: BertModel(config, rngs=nnx.Rngs(seed)))()


@nnx.jit
def _encode(model, ids, mask):
    return model.encode(ids, mask, return_attention=True)


def test_shapes_mask_row_and_padding_does_not_leak():
    model = _bert(_small())
    assert model.token_embed.embedding.shape == (51, 16) and model.config.mask_id == 50
    ev = nnx.view(model, deterministic=True)
    hidden, attns = _encode(ev, IDS, MASK)
    assert hidden.shape == (3, 10, 16) and len(attns) == 2 and attns[0].shape == (3, 2, 10, 10)
    # Attention rows are distributions over the real keys only.
    a = np.asarray(attns[0])
    np.testing.assert_allclose(a.sum(-1), 1.0, rtol=1e-5)
    assert np.all(a[0, :, :, 6:] == 0) and np.all(a[2, :, :, 1:] == 0)
    # Changing tokens at padded positions leaves every real position's output unchanged.
    other = IDS.copy()
    other[MASK == 1] = 7
    hidden2, _ = _encode(ev, other, MASK)
    real = MASK == 0
    np.testing.assert_allclose(np.asarray(hidden)[real], np.asarray(hidden2)[real], atol=1e-5)
    logits = nnx.jit(lambda m, x: m(x)[0])(ev, IDS)
    assert logits.shape == (3, 10, 50)


@pytest.mark.parametrize("norm_first", [False, True])
def test_block_is_its_sublayers_chained(norm_first):
    """The block's one fused `encoder_block` call computes what its own attention, layer norm
    and feed-forward modules give when chained by hand, so the fused parameter wiring
    (`layer_params`) matches the sublayers' parameters."""
    model = _bert(_small(num_layers=1, norm_first=norm_first), 1)
    block = nnx.view(model.blocks[0], deterministic=True)
    x = jnp.asarray(np.random.default_rng(2).standard_normal((3, 10, 16)), jnp.float32)

    def chained(b, x):
        if norm_first:
            h = x + b.attn(b.ln1(x), MASK)[0]
            return h + b.ffn(b.ln2(h))
        h = b.ln1(x + b.attn(x, MASK)[0])
        return b.ln2(h + b.ffn(h))

    ours = nnx.jit(lambda b, x: b(x, MASK))(block, x)
    np.testing.assert_allclose(ours, nnx.jit(chained)(block, x), atol=2e-5)
    weights = nnx.jit(lambda b, x: b.attention_weights(x, MASK))(block, x)
    first = block.ln1(x) if norm_first else x
    np.testing.assert_allclose(weights, block.attn(first, MASK)[1], atol=1e-6)


def test_classifier_heads_ignore_padding():
    for head in ("cls", "mean", "max", "gru"):
        bert = _bert(_small())
        clf = nnx.view(BertClassifier(bert, head=head, rngs=nnx.Rngs(3)), deterministic=True)
        run = nnx.jit(lambda m, x, mask: m(x, mask))
        logits = run(clf, IDS, MASK)
        assert logits.shape == (3,)
        # the pooled heads and the GRU read only the real tokens
        other = IDS.copy()
        other[MASK == 1] = 9
        np.testing.assert_allclose(logits, run(clf, other, MASK), atol=1e-5)
        if head == "gru":
            assert clf.rnn.forward_rnn.cell.hidden_features == 16


def test_frozen_encoder_gets_no_update():
    bert = _bert(_small(num_layers=1))
    clf = BertClassifier(bert, head="gru", freeze_encoder=True, rngs=nnx.Rngs(1))
    opt = nnx.Optimizer(clf, frozen_encoder_tx(optax.adamw(1e-2, weight_decay=0.1)), wrt=nnx.Param)
    before = jax.tree.map(np.array, nnx.state(clf, nnx.Param))

    @nnx.jit
    def step(model, opt):
        def loss(model):
            return optax.sigmoid_binary_cross_entropy(model(IDS, MASK), jnp.ones(3)).mean()

        grads = nnx.grad(loss)(model)
        opt.update(model, grads)
        return grads

    grads = step(clf, opt)
    after = nnx.state(clf, nnx.Param)
    moved = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - b).max()), after, before)
    assert max(jax.tree.leaves(moved["bert"])) == 0.0  # not even weight decay
    assert min(jax.tree.leaves(moved["classifier"])) > 0
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads["bert"])) == 0.0


def test_bad_config_and_weights_raise_clear_errors():
    with pytest.raises(ValueError, match="not divisible"):
        _small(num_heads=3)
    with pytest.raises(ValueError, match="positions"):
        _small(positions="rotary")
    model = nnx.eval_shape(lambda: BertModel(_small(), rngs=nnx.Rngs(0)))  # shapes only
    with pytest.raises(ValueError, match="learned positions"):
        load_hf_weights(model, {})


def test_hugging_face_weights_reproduce_transformers_bert(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    hf_config = transformers.BertConfig(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(0)
    hf = transformers.BertModel(hf_config).eval()
    with torch.no_grad():  # non-trivial layer-norm affines and token-type embeddings
        for name, p in hf.named_parameters():
            if "LayerNorm" in name or "token_type" in name:
                p.add_(0.1 * torch.randn_like(p))
    ids = np.random.default_rng(1).integers(5, 99, (2, 12))
    pad = np.zeros((2, 12), np.int64)
    pad[1, 7:] = 1
    with torch.no_grad():
        ref = hf(
            input_ids=torch.tensor(ids), attention_mask=torch.tensor(1 - pad)
        ).last_hidden_state.numpy()

    # Through a checkpoint folder as transformers writes it (config.json, model.safetensors).
    hf.save_pretrained(tmp_path)
    with jax.threefry_partitionable(False):
        model = bert_from_hf(tmp_path, mask_token_id=4)
    assert model.config.ff_dim == 37 and model.config.layer_norm_eps == 1e-12
    unused = load_hf_weights(model, {k: v.numpy() for k, v in hf.state_dict().items()})
    assert all(name.startswith("pooler") for name in unused), unused
    hidden, _ = _encode(nnx.view(model, deterministic=True), ids.astype(np.int32), pad)
    # float32 through 2 layers in two libraries: agreement to ~1e-6 of unit-scale outputs.
    np.testing.assert_allclose(np.asarray(hidden), ref, atol=2e-5)
    wrong_config = BertConfig.from_hf({**hf_config.to_dict(), "intermediate_size": 40}, 4)
    wrong = BertModel(wrong_config, rngs=nnx.Rngs(0))  # tiny: a concrete model is cheap
    with pytest.raises(ValueError, match=r"intermediate\.dense\.weight has shape"):
        load_hf_weights(wrong, hf.state_dict())
