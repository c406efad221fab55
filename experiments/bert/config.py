"""Settings for BERT pretraining (masked language model) and IMDB fine-tuning.

Presets:
- "cpu" (the default): small enough that `jaxnets pretrain bert` then `jaxnets finetune bert`
  finish in under 30 minutes on a 2-core CPU: 2 post-LN blocks, E=128, 4 heads, FF=256, a
  WordPiece vocabulary of 8,192 trained on IMDB train reviews, 400 MLM steps of 32 x 128
  tokens, then two epochs of fine-tuning at T=512 (85% of the reviews whole) on 22,500 of
  the 25,000 train reviews (2,500 held out for validation), batches of reviews of about one
  length cut to the longest, a max-pooling head, the encoder unfrozen.
  Each setting was chosen by measurement: the variants tried are in README.md here.
- "gpu": for an accelerator: 4 blocks, E=256, FF=1024, T=256, 13,400 MLM steps of 128
  sequences over IMDB + WikiText-2 + Tiny Shakespeare, then 3 epochs of fine-tuning at T=512
  (the positions are sinusoidal, so longer inputs still work); its step count was fitted to a
  time budget on one H100 by benchmarks/bert_imdb_accelerator.py (figures: README.md here).
- "course" (fine-tuning only): the course's head: the encoder frozen, a bidirectional GRU of
  hidden 16, dropout, one logit, BCE, Adam 1e-3, 3 epochs, best model by validation loss. With
  `--hf-checkpoint bert-base-uncased/` it is the course's experiment (0.9145 reported).
- "smoke": tiny sizes for tests.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxnets.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    corpus: tuple[str, ...] = ("imdb",)  # any of imdb, tinyshakespeare, wikitext2
    vocab_size: int = 8192
    vocab: str | None = None  # a vocab.txt to use instead of training a tokenizer
    tokenizer_documents: int | None = 10_000  # train the WordPiece vocabulary on these many
    max_len: int = 128
    embed_dim: int = 128
    num_heads: int = 4
    num_layers: int = 2
    ff_dim: int = 256
    dropout: float = 0.1
    positions: str = "sinusoidal"
    norm_first: bool = False
    batch_size: int = 32
    steps: int = 400
    steps_per_epoch: int = 50  # one "epoch" = one log line, validation and checkpoint
    learning_rate: float = 1e-3
    warmup_steps: int = 40
    weight_decay: float = 0.01
    clip_norm: float = 1.0
    val_sequences: int = 512  # held-out sequences for the validation MLM loss
    eval_batch_size: int = 64
    limit_documents: int | None = None  # use the first N documents (quick runs)
    data_dir: str | None = None
    compute_dtype: str = "float32"  # "bfloat16": mixed precision, float32 parameters
    gradients: str = "auto"  # "manual" (hand-derived backward), "autodiff", "auto": the faster
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    pretrained: str | None = "runs/bert-pretrain"  # a pretrain run folder; None: from scratch
    hf_checkpoint: str | None = None  # a Hugging Face BERT folder (config.json, weights, vocab)
    head: str = "max"  # "cls", "mean" or "max" (pooling), or the course's "gru"
    gru_hidden: int = 16
    freeze_encoder: bool = False
    max_len: int = 512
    truncation: str = "head+tail"
    length_buckets: bool = True  # batches cut to their longest review (else max_len)
    batch_size: int = 32
    epochs: int = 2
    optimizer: str = "adamw"
    learning_rate: float = 1e-3
    warmup_fraction: float = 0.1
    schedule: str = "cosine"
    weight_decay: float = 0.01
    clip_norm: float | None = 1.0
    dropout: float = 0.1
    val_fraction: float = 0.1  # of the train reviews; the course (and `gpu`) hold out 0.3
    eval_batch_size: int = 128
    limit_train: int | None = None  # quick runs: the first N train / val / test reviews
    limit_eval: int | None = None
    # Used only without a pretrained model: a fresh tokenizer and encoder of these sizes.
    vocab_size: int = 8192
    embed_dim: int = 128
    num_heads: int = 4
    num_layers: int = 2
    ff_dim: int = 256
    data_dir: str | None = None
    source: str = "auto"
    compute_dtype: str = "float32"  # "bfloat16": mixed precision, float32 parameters
    gradients: str = "auto"  # "manual" (hand-derived backward), "autodiff", "auto": the faster
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRETRAIN_PRESETS: dict[str, PretrainConfig] = {
    "cpu": PretrainConfig(),
    "gpu": PretrainConfig(
        corpus=("imdb", "wikitext2", "tinyshakespeare"),
        vocab_size=16384,
        max_len=256,
        embed_dim=256,
        num_layers=4,
        ff_dim=1024,
        batch_size=128,
        steps=13_400,
        steps_per_epoch=1340,
        learning_rate=5e-4,
        warmup_steps=1000,
        val_sequences=2048,
        eval_batch_size=256,
    ),
    "smoke": PretrainConfig(
        vocab_size=300,
        max_len=32,
        embed_dim=16,
        num_heads=2,
        num_layers=1,
        ff_dim=32,
        batch_size=8,
        steps=4,
        steps_per_epoch=2,
        warmup_steps=1,
        val_sequences=8,
        eval_batch_size=8,
    ),
}

FINETUNE_PRESETS: dict[str, FinetuneConfig] = {
    "cpu": FinetuneConfig(),
    # As measured on the H100: [CLS] head, fixed-length batches (one compiled shape).
    "gpu": FinetuneConfig(
        head="cls",
        length_buckets=False,
        learning_rate=2e-4,
        eval_batch_size=256,
        epochs=3,
        val_fraction=0.3,
    ),
    "course": FinetuneConfig(
        head="gru",
        freeze_encoder=True,
        optimizer="adam",
        learning_rate=1e-3,
        schedule="constant",
        warmup_fraction=0.0,
        weight_decay=0.0,
        clip_norm=None,
        epochs=3,
        val_fraction=0.3,  # the course's 17,500 / 7,500 split of the train reviews
        dropout=0.25,
        max_len=128,
        truncation="head",
    ),
    "smoke": FinetuneConfig(
        max_len=32,
        batch_size=4,
        epochs=1,
        val_fraction=0.3,
        eval_batch_size=8,
        vocab_size=300,
        embed_dim=16,
        num_heads=2,
        num_layers=1,
        ff_dim=32,
    ),
}


def _check(name: str, presets: dict[str, Any]) -> Any:
    if name not in presets:
        raise ConfigError(f"unknown preset {name!r}; choose from {sorted(presets)}")
    return presets[name]


def get_pretrain_config(preset: str = "cpu", **overrides: Any) -> PretrainConfig:
    config = _check(preset, PRETRAIN_PRESETS)
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
    if config.steps < 1 or config.steps_per_epoch < 1:
        raise ConfigError("steps and steps_per_epoch must be positive")
    return config


def get_finetune_config(preset: str = "cpu", **overrides: Any) -> FinetuneConfig:
    """The preset's settings with `overrides` (None values ignored; pretrained="none" means
    no pretrained model: a fresh tokenizer and encoder)."""
    # Imported here: jaxnets.models pulls in jax and flax, and the command's parser, which
    # imports this module, stays light without them.
    from jaxnets.models.bert import HEADS

    config = _check(preset, FINETUNE_PRESETS)
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
    if config.pretrained is not None and config.pretrained.lower() == "none":
        config = dataclasses.replace(config, pretrained=None)
    if config.head not in HEADS:
        raise ConfigError(f"head must be one of {HEADS}, got {config.head!r}")
    if config.epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {config.epochs}")
    return config
