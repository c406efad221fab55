"""BERT as Flax NNX modules: multi-head attention, transformer blocks, the encoder with an MLM
head, and a sequence classifier (CLS pooling, or the course's frozen encoder + bidirectional GRU).

Built from `jaxnets.nn` layers: each transformer block is one call of the functional
`jaxnets.layers.attention.encoder_block`, so BERT trains on a backward derived by hand for the
whole block (attention, softmax, dropout, feed-forward, layer norms), or on autodiff's with
`jaxnets.nn.set_gradients(model, "autodiff")`. The GRU head is flax's `nnx.GRUCell`
(autodiff in both modes). Padding masks are (B, T) with 1 = padding, as the course's.

`load_hf_weights` copies a Hugging Face `BertModel` checkpoint (a state_dict, e.g. read from
`model.safetensors`) into a `BertModel` built with `BertConfig.from_hf(config.json)`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxnets import nn
from jaxnets.layers.attention import sinusoidal_positions

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Sizes and options of a BertModel.

    mask_token_id: None means the course's convention, an extra embedding row whose id is
        `vocab_size`; with a tokenizer that has its own [MASK] token give its id.
    positions: "sinusoidal" (fixed, the course's) or "learned" (BERT's, needed for HF weights).
    norm_first: pre-LN blocks (with a final layer norm) instead of the course's post-LN.
    embedding_norm: layer norm after the embeddings, as Hugging Face BERT.
    scale_embeddings: token embeddings are stored at N(0, 1/E) and multiplied by sqrt(E), as in
        "Attention is all you need": the same N(0, 1) start as torch's nn.Embedding (the
        course's), but Adam's steps of ~lr are then sqrt(E) times larger relative to them.
        Unscaled N(0, 1) embeddings barely move at lr 1e-3, and a briefly trained model then
        hardly learns which words carry sentiment.
    """

    vocab_size: int
    embed_dim: int = 128
    num_heads: int = 4
    num_layers: int = 2
    ff_dim: int | None = None
    max_len: int = 512
    dropout_rate: float = 0.1
    positions: str = "sinusoidal"
    norm_first: bool = False
    mask_token_id: int | None = None
    pad_id: int = 0
    layer_norm_eps: float = 1e-5
    embedding_norm: bool = False
    gelu_approximate: bool = False
    scale_embeddings: bool = True

    def __post_init__(self) -> None:
        if self.positions not in ("sinusoidal", "learned"):
            raise ValueError(
                f"BertConfig: positions must be 'sinusoidal' or 'learned', got {self.positions!r}"
            )
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"BertConfig: embed_dim={self.embed_dim} is not divisible by "
                f"num_heads={self.num_heads}"
            )
        if self.mask_token_id is not None and not 0 <= self.mask_token_id < self.vocab_size:
            raise ValueError(
                f"BertConfig: mask_token_id {self.mask_token_id} is outside the vocabulary"
            )

    @property
    def mask_id(self) -> int:
        return self.vocab_size if self.mask_token_id is None else self.mask_token_id

    @property
    def embedding_rows(self) -> int:
        return self.vocab_size + 1 if self.mask_token_id is None else self.vocab_size

    @property
    def hidden_dim(self) -> int:
        return self.ff_dim or 4 * self.embed_dim

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BertConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_hf(
        cls, hf: Mapping[str, Any] | str | os.PathLike, mask_token_id: int = 103
    ) -> BertConfig:
        """The config matching a Hugging Face BERT `config.json` (a dict or its path).

        mask_token_id: the tokenizer's [MASK] id (103 in bert-base-uncased's vocab.txt).
        """
        if not isinstance(hf, Mapping):
            hf = json.loads(pathlib.Path(hf).read_text())
        act = hf.get("hidden_act", "gelu")
        if act not in ("gelu", "gelu_new", "gelu_pytorch_tanh"):
            raise ValueError(f"BertConfig.from_hf: hidden_act {act!r} is not supported")
        return cls(
            vocab_size=hf["vocab_size"],
            embed_dim=hf["hidden_size"],
            num_heads=hf["num_attention_heads"],
            num_layers=hf["num_hidden_layers"],
            ff_dim=hf["intermediate_size"],
            max_len=hf["max_position_embeddings"],
            dropout_rate=hf.get("hidden_dropout_prob", 0.1),
            positions="learned",
            mask_token_id=mask_token_id,
            pad_id=hf.get("pad_token_id", 0),
            layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
            embedding_norm=True,
            gelu_approximate=act != "gelu",
            scale_embeddings=False,
        )


# ----------------------------------------------------------------------------- modules
class BertModel(nnx.Module):
    """Token embedding (+ positions) -> dropout -> N blocks -> MLM head Linear(E, vocab_size).

    `encode(ids, mask)` gives the hidden states (B, T, E); `__call__` gives (MLM logits, hidden).
    """

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        c = self.config = config
        # Effectively N(0, 1), as torch's nn.Embedding (the course's); see scale_embeddings.
        std = 1 / math.sqrt(c.embed_dim) if c.scale_embeddings else 1.0
        self.token_embed = nn.Embedding(
            c.embedding_rows, c.embed_dim, embedding_init=nnx.initializers.normal(std), rngs=rngs
        )
        self.pos_embed = (
            nn.Embedding(
                c.max_len, c.embed_dim, embedding_init=nnx.initializers.normal(0.02), rngs=rngs
            )
            if c.positions == "learned"
            else nnx.data(None)
        )
        self.embed_norm = (
            nn.LayerNorm(c.embed_dim, eps=c.layer_norm_eps) if c.embedding_norm else nnx.data(None)
        )
        self.embed_dropout = nn.Dropout(c.dropout_rate, rngs=rngs)
        self.blocks = nnx.List(
            [
                nn.TransformerBlock(
                    c.embed_dim,
                    c.num_heads,
                    c.hidden_dim,
                    dropout_rate=c.dropout_rate,
                    norm_first=c.norm_first,
                    layer_norm_eps=c.layer_norm_eps,
                    gelu_approximate=c.gelu_approximate,
                    rngs=rngs,
                )
                for _ in range(c.num_layers)
            ]
        )
        # Pre-LN leaves the residual stream unnormalised: a final layer norm, as GPT-2.
        self.final_norm = (
            nn.LayerNorm(c.embed_dim, eps=c.layer_norm_eps) if c.norm_first else nnx.data(None)
        )
        # torch's nn.Linear init, variance 1/(3 fan_in): on layer-normed features the MLM
        # logits then have variance 1/3, so the initial loss is ~ln(V) + 1/6.
        self.mlm_head = nn.Linear(c.embed_dim, c.vocab_size, kernel_init=nn.TORCH_LINEAR, rngs=rngs)

    def embed(self, ids: Array) -> Array:
        t = ids.shape[1]
        if t > self.config.max_len:
            raise ValueError(
                f"BertModel: sequence length {t} exceeds max_len {self.config.max_len}"
            )
        x = self.token_embed(ids)
        if self.config.scale_embeddings:
            x = x * math.sqrt(self.config.embed_dim)
        if self.pos_embed is not None:
            x = x + self.pos_embed(jnp.arange(t))[None]
        else:
            x = x + sinusoidal_positions(t, self.config.embed_dim, x.dtype)[None]
        if self.embed_norm is not None:
            x = self.embed_norm(x)
        return self.embed_dropout(x)

    def encode(
        self, ids: Array, mask: Array | None = None, *, return_attention: bool = False
    ) -> Array | tuple[Array, list[Array]]:
        """Hidden states (B, T, E) of token ids (B, T); mask (B, T), 1 = padding.

        return_attention: also the attention weights of every block, each (B, H, T, T) (computed
            again from the block's input: a block's call returns only its output).
        """
        x = self.embed(ids)
        attentions = []
        for block in self.blocks:
            if return_attention:
                attentions.append(block.attention_weights(x, mask))
            x = block(x, mask)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return (x, attentions) if return_attention else x

    def mlm_logits(self, hidden: Array) -> Array:
        return self.mlm_head(hidden)

    def __call__(self, ids: Array, mask: Array | None = None) -> tuple[Array, Array]:
        hidden = self.encode(ids, mask)
        return self.mlm_logits(hidden), hidden


HEADS = ("cls", "mean", "max", "gru")


class BertClassifier(nnx.Module):
    """A sequence classifier on a BertModel, returning logits (B,) for one output, else (B, C).

    head="cls": the [CLS] (first) hidden state -> Linear(E, E) - tanh (BERT's pooler) -> dropout
        -> Linear(E, num_outputs).
    head="mean": the same on the mean hidden state of the real (unpadded) tokens.
    head="max": the same on the per-feature maximum over the real tokens.
    head="gru": the course's head: a bidirectional GRU (hidden `gru_hidden`) over the hidden
        states of the real tokens, its two final states concatenated -> dropout -> Linear.
    freeze_encoder: no gradient flows into the encoder (stop_gradient, so its backward is never
        computed); pair it with `frozen_encoder_tx` so the optimizer leaves it alone too.
    """

    def __init__(
        self,
        bert: BertModel,
        *,
        head: str = "cls",
        num_outputs: int = 1,
        dropout_rate: float = 0.1,
        gru_hidden: int = 16,
        freeze_encoder: bool = False,
        rngs: nnx.Rngs,
    ):
        if head not in HEADS:
            raise ValueError(f"BertClassifier: head must be one of {HEADS}, got {head!r}")
        e = bert.config.embed_dim
        self.bert = bert
        self.head = head
        self.freeze_encoder = freeze_encoder
        self.num_outputs = num_outputs
        if head in ("cls", "mean", "max"):
            self.pooler = nn.Linear(e, e, rngs=rngs)
            self.rnn = nnx.data(None)
            features = e
        else:
            self.pooler = nnx.data(None)
            self.rnn = nnx.Bidirectional(
                nnx.RNN(nnx.GRUCell(e, gru_hidden, rngs=rngs)),
                nnx.RNN(nnx.GRUCell(e, gru_hidden, rngs=rngs)),
                return_carry=True,
                rngs=False,
            )
            features = 2 * gru_hidden
        self.tanh = nn.Tanh()
        self.dropout = nn.Dropout(dropout_rate, rngs=rngs)
        self.classifier = nn.Linear(features, num_outputs, rngs=rngs)

    def features(self, ids: Array, mask: Array | None = None) -> Array:
        hidden = self.bert.encode(ids, mask)
        if self.freeze_encoder:
            hidden = jax.lax.stop_gradient(hidden)
        if self.head == "cls":
            return self.tanh(self.pooler(hidden[:, 0]))
        if self.head == "mean":
            real = jnp.ones(hidden.shape[:2]) if mask is None else (mask == 0).astype(hidden.dtype)
            mean = (hidden * real[..., None]).sum(1) / jnp.maximum(real.sum(1), 1)[:, None]
            return self.tanh(self.pooler(mean))
        if self.head == "max":
            real = jnp.ones(hidden.shape[:2], bool) if mask is None else mask == 0
            return self.tanh(self.pooler(jnp.where(real[..., None], hidden, -jnp.inf).max(1)))
        lengths = None if mask is None else (mask == 0).sum(axis=1)
        (h_forward, h_backward), _ = self.rnn(hidden, seq_lengths=lengths)
        return jnp.concatenate([h_forward, h_backward], axis=-1)

    def __call__(self, ids: Array, mask: Array | None = None) -> Array:
        logits = self.classifier(self.dropout(self.features(ids, mask)))
        return logits[:, 0] if self.num_outputs == 1 else logits


def frozen_encoder_tx(
    tx: optax.GradientTransformation, prefix: str = "bert"
) -> optax.GradientTransformation:
    """`tx` for every parameter except those under the attribute `prefix`, which get zero updates
    (optax.multi_transform by parameter path; weight decay never touches them either)."""

    def labels(params: Any) -> Any:
        def label(path: tuple, _: Any) -> str:
            first = path[0]
            name = getattr(first, "key", getattr(first, "name", None))
            return "frozen" if name == prefix else "train"

        return jax.tree_util.tree_map_with_path(label, params)

    return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)


# ----------------------------------------------------------------------------- Hugging Face weights
def _hf_layer_map(i: int) -> dict[str, tuple[str, ...]]:
    p = f"encoder.layer.{i}."
    return {
        p + "attention.output.dense": ("blocks", i, "attn", "out"),
        p + "attention.output.LayerNorm": ("blocks", i, "ln1"),
        p + "intermediate.dense": ("blocks", i, "ffn", "fc1"),
        p + "output.dense": ("blocks", i, "ffn", "fc2"),
        p + "output.LayerNorm": ("blocks", i, "ln2"),
    }


def _get(module: Any, path: tuple) -> Any:
    for part in path:
        module = module[part] if isinstance(part, int) else getattr(module, part)
    return module


def _assign(variable: nnx.Variable, value: np.ndarray, name: str) -> None:
    value = np.asarray(value, np.float32)
    if variable.shape != value.shape:
        raise ValueError(
            f"load_hf_weights: {name} has shape {value.shape} but the model expects "
            f"{variable.shape}; "
            "build the model with BertConfig.from_hf(config.json) so the configs match"
        )
    variable[...] = jnp.asarray(value, variable.dtype)


def load_hf_weights(model: BertModel | BertClassifier, state_dict: Mapping[str, Any]) -> list[str]:
    """Copy a Hugging Face BERT state_dict (names as in `BertModel.state_dict()`, optionally
    prefixed "bert.") into `model`; returns the checkpoint names that were not used.

    The model needs learned positions, the embedding layer norm and [MASK] inside the vocabulary
    (`BertConfig.from_hf` sets all three). Token-type embedding 0 is folded into the position
    embeddings (every token is segment 0 here). The MLM head is not loaded (HF's has an extra
    transform layer). Shape mismatches raise ValueError naming the parameter.
    """
    bert = model.bert if isinstance(model, BertClassifier) else model
    c = bert.config
    if (
        c.positions != "learned"
        or not c.embedding_norm
        or c.mask_token_id is None
        or c.scale_embeddings
    ):
        raise ValueError(
            "load_hf_weights: the model must use learned positions, embedding_norm=True, "
            "scale_embeddings=False and the tokenizer's mask_token_id; build it with "
            "BertConfig.from_hf(config.json)"
        )
    sd = {k.removeprefix("bert."): np.asarray(v) for k, v in state_dict.items()}
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        if name not in sd:
            raise KeyError(f"load_hf_weights: the checkpoint has no {name!r}")
        used.add(name)
        return sd[name]

    def linear(prefix: str, target: nn.Linear) -> None:
        _assign(target.kernel, take(prefix + ".weight").T, prefix + ".weight")  # torch: (out, in)
        _assign(target.bias, take(prefix + ".bias"), prefix + ".bias")

    def norm(prefix: str, target: nn.LayerNorm) -> None:
        _assign(target.scale, take(prefix + ".weight"), prefix + ".weight")
        _assign(target.bias, take(prefix + ".bias"), prefix + ".bias")

    _assign(
        bert.token_embed.embedding, take("embeddings.word_embeddings.weight"), "word_embeddings"
    )
    positions = take("embeddings.position_embeddings.weight")[: c.max_len]
    if "embeddings.token_type_embeddings.weight" in sd:
        positions = positions + take("embeddings.token_type_embeddings.weight")[0]
    _assign(bert.pos_embed.embedding, positions, "position_embeddings")
    norm("embeddings.LayerNorm", bert.embed_norm)
    for i in range(c.num_layers):
        p = f"encoder.layer.{i}.attention.self."
        w = np.concatenate([take(p + n + ".weight").T for n in ("query", "key", "value")], axis=1)
        b = np.concatenate([take(p + n + ".bias") for n in ("query", "key", "value")])
        _assign(bert.blocks[i].attn.qkv.kernel, w, p + "{query,key,value}.weight")
        _assign(bert.blocks[i].attn.qkv.bias, b, p + "{query,key,value}.bias")
        for name, path in _hf_layer_map(i).items():
            target = _get(bert, path)
            (norm if isinstance(target, nn.LayerNorm) else linear)(name, target)
    if f"encoder.layer.{c.num_layers}.output.dense.weight" in sd:
        raise ValueError(f"load_hf_weights: the checkpoint has more than {c.num_layers} layers")
    if (
        isinstance(model, BertClassifier)
        and model.pooler is not None
        and "pooler.dense.weight" in sd
    ):
        linear("pooler.dense", model.pooler)
    return sorted(set(sd) - used)


def read_hf_checkpoint(
    path: str | os.PathLike,
) -> tuple[dict[str, Any] | None, dict[str, np.ndarray]]:
    """(config.json as a dict or None, state_dict as numpy) from a folder or a weights file.

    Reads `model.safetensors` (needs the `safetensors` package) or `pytorch_model.bin` (needs
    torch); nothing is downloaded.
    """
    path = pathlib.Path(path)
    folder = path if path.is_dir() else path.parent
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else None
    if path.is_dir():
        candidates = [path / "model.safetensors", path / "pytorch_model.bin"]
        found = [p for p in candidates if p.exists()]
        if not found:
            raise FileNotFoundError(
                f"read_hf_checkpoint: no model.safetensors or pytorch_model.bin in {path}"
            )
        path = found[0]
    if not path.exists():
        raise FileNotFoundError(f"read_hf_checkpoint: {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        return config, load_file(str(path))
    try:
        import torch
    except ImportError as exc:
        raise ImportError(
            f"reading {path} needs torch; convert it to safetensors or install torch"
        ) from exc
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    return config, {k: v.float().numpy() for k, v in state.items()}


def bert_from_hf(path: str | os.PathLike, *, mask_token_id: int = 103, seed: int = 0) -> BertModel:
    """A BertModel with the weights of a local Hugging Face BERT checkpoint folder
    (config.json with model.safetensors or pytorch_model.bin)."""
    config, state_dict = read_hf_checkpoint(path)
    if config is None:
        raise FileNotFoundError(f"bert_from_hf: {path} has no config.json")
    bert_config = BertConfig.from_hf(config, mask_token_id)
    # Built in one compiled call: eager initialisation compiles every primitive on its own.
    model = nnx.jit(lambda: BertModel(bert_config, rngs=nnx.Rngs(seed)))()
    load_hf_weights(model, state_dict)
    return model
