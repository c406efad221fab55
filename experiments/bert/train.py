"""BERT pretraining with a masked-language-model loss, and IMDB fine-tuning.

`pretrain(config, out_dir)` trains a WordPiece tokenizer and a BertModel on a text corpus;
`finetune(config, out_dir)` puts a classifier head on the pretrained encoder (or a Hugging Face
checkpoint, or a fresh one) and trains it on IMDB. Both training loops are the shared `Trainer`
(jitted steps, metrics.jsonl, orbax checkpoints of the last and best epochs, --resume). Each run
folder ends with the best model's parameters in `model/`, `config.json` and `tokenizer.json`,
which is all `predict.py` and `finetune --pretrained` read. The data is `input_pipeline.py`'s,
the bag-of-words baseline `baseline.py`'s.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import pathlib
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from rich.console import Console

from jaxnets import nn
from jaxnets.data.text import TextSplits, load_corpus, load_imdb
from jaxnets.errors import ConfigError
from jaxnets.experiments.bert.baseline import bag_of_words_baseline
from jaxnets.experiments.bert.config import FinetuneConfig, PretrainConfig
from jaxnets.experiments.bert.input_pipeline import (
    Batch,
    eval_batches,
    limit_reviews,
    pretrain_batches,
    pretraining_sequences,
    review_batches,
    review_eval_batches,
)
from jaxnets.experiments.bert.plots import plot_attention
from jaxnets.init import create_module
from jaxnets.models.bert import (
    BertClassifier,
    BertConfig,
    BertModel,
    frozen_encoder_tx,
    load_hf_weights,
    read_hf_checkpoint,
)
from jaxnets.optim import get_optimizer
from jaxnets.text.masking import IGNORE_INDEX, mask_tokens
from jaxnets.text.tokenizer import WordPieceTokenizer
from jaxnets.training.checkpoints import load_module, save_module
from jaxnets.training.metrics import Mean
from jaxnets.training.plots import plot_curves
from jaxnets.training.precision import set_compute_dtype
from jaxnets.training.run_dir import (
    RunDir,
    read_json,
    read_results,
    resume_config,
    write_json_atomic,
)
from jaxnets.training.schedules import make_schedule
from jaxnets.training.trainer import Trainer

SAMPLE_SENTENCE = "The acting was terrible and the plot was boring, but the music was wonderful."


def mlm_loss(
    model: BertModel,
    batch: Batch,
    *,
    train: bool,
    seed: int,
    mask_kwargs: dict[str, Any],
    max_predictions: int,
) -> tuple[jax.Array, dict[str, Mean]]:
    """Mask the batch in-jit (key from the batch's seed), predict at the masked positions.

    The MLM head only runs at up to `max_predictions` positions per row (the selected ones
    first): with 15% selected that is ~4x fewer vocabulary projections than at every position.
    """
    del train  # dropout follows the model view the trainer passes
    ids = batch["ids"]
    key = jax.random.fold_in(jax.random.key(seed), batch["seed"])
    inputs, labels = mask_tokens(key, ids, **mask_kwargs)
    hidden = model.encode(inputs, ids == mask_kwargs["pad_id"])
    order = jnp.argsort(labels == IGNORE_INDEX, axis=1, stable=True)[:, :max_predictions]
    hidden = jnp.take_along_axis(hidden, order[..., None], axis=1)
    labels = jnp.take_along_axis(labels, order, axis=1)
    logits = model.mlm_logits(hidden).astype(jnp.float32)
    valid = (labels != IGNORE_INDEX) & batch["mask"][:, None]
    safe = jnp.where(valid, labels, 0)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, safe)
    loss = jnp.sum(nll * valid) / jnp.maximum(valid.sum(), 1)
    correct = logits.argmax(-1) == safe
    return loss, {"loss": Mean.of(nll, valid), "accuracy": Mean.of(correct, valid)}


def _optimizer(
    name: str, schedule: optax.Schedule, weight_decay: float, clip_norm: float | None
) -> optax.GradientTransformation:
    """get_optimizer(name) with decoupled weight decay on kernels and embeddings only (not on
    biases and layer-norm scales), after global-norm gradient clipping."""

    def decay_mask(params: Any) -> Any:
        def keep(path: tuple, leaf: Any) -> bool:
            names = [getattr(p, "key", getattr(p, "name", "")) for p in path]
            return jnp.ndim(leaf) > 1 and "bias" not in names and "scale" not in names

        return jax.tree_util.tree_map_with_path(keep, params)

    options = {"weight_decay": weight_decay, "mask": decay_mask} if name == "adamw" else {}
    tx = get_optimizer(name, schedule, **options)
    return optax.chain(optax.clip_by_global_norm(clip_norm), tx) if clip_norm else tx


def _write_model_folder(
    run: RunDir, tokenizer: WordPieceTokenizer, meta: dict[str, Any], model: nnx.Module
) -> None:
    tokenizer.save(run.path)
    write_json_atomic(run.file("config.json"), meta)
    save_module(run.file("model"), model)


def _attention_figure(
    run: RunDir,
    bert: BertModel,
    tokenizer: WordPieceTokenizer,
    title: str,
    sentence: str = SAMPLE_SENTENCE,
) -> None:
    ids, pad = tokenizer.encode_batch([sentence], min(bert.config.max_len, 40))
    n = int((pad[0] == 0).sum())
    view = nnx.view(bert, deterministic=True)
    _, attentions = nnx.jit(lambda m, x, p: m.encode(x, p, return_attention=True))(
        view, ids[:, :n], pad[:, :n]
    )
    tokens = tokenizer.tokenizer.id_to_token
    labels = [tokens(int(i)) for i in ids[0, :n]]
    plot_attention(
        labels, [np.asarray(a[0]) for a in attentions], run.file("attention.png"), title=title
    )


# ----------------------------------------------------------------------------- pretraining
# Settings a resumed run may change: where the data lives and how big evaluation batches are.
RESUME_FREE_FIELDS = ("data_dir", "source", "eval_batch_size")


def _claim(out_dir, command: str, config: Any, resume: bool, overwrite: bool) -> RunDir:
    return RunDir(out_dir).claim(command, config.to_dict(), resume=resume, overwrite=overwrite)


def _classic_threefry(fn):
    """Run `fn` with the classic (non-partitionable) threefry PRNG on one device: every dropout
    mask and MLM corruption is random bits, and XLA on CPU compiles those faster, with the same
    statistics. Sharded over several devices, and wherever JAX_THREEFRY_PARTITIONABLE is set,
    JAX's partitionable PRNG stays: its bits do not depend on how an array is sharded."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        if jax.device_count() > 1 or "JAX_THREEFRY_PARTITIONABLE" in os.environ:
            return fn(*args, **kwargs)
        with jax.threefry_partitionable(False):
            return fn(*args, **kwargs)

    return wrapped


@_classic_threefry
def make_mlm(
    config: PretrainConfig, tokenizer: WordPieceTokenizer
) -> tuple[BertConfig, BertModel, optax.Schedule, optax.GradientTransformation, Callable]:
    """The pretraining run's model config, model, schedule, optimizer and MLM loss for
    `tokenizer`'s vocabulary and special ids. `jaxnets bench train` times this same step."""
    bert_config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        embed_dim=config.embed_dim,
        num_heads=config.num_heads,
        num_layers=config.num_layers,
        ff_dim=config.ff_dim,
        max_len=config.max_len,
        dropout_rate=config.dropout,
        positions=config.positions,
        norm_first=config.norm_first,
        mask_token_id=tokenizer.mask_id,
        pad_id=tokenizer.pad_id,
    )
    model = create_module(
        lambda: BertModel(bert_config, rngs=nnx.Rngs(params=config.seed, dropout=config.seed + 1))
    )
    set_compute_dtype(model, config.compute_dtype)
    nn.set_gradients(model, nn.default_gradients(config.gradients))
    schedule = make_schedule(
        "cosine", config.learning_rate, config.steps, warmup_steps=config.warmup_steps
    )
    tx = _optimizer("adamw", schedule, config.weight_decay, config.clip_norm)
    mask_kwargs = {
        "mask_id": tokenizer.mask_id,
        "vocab_size": tokenizer.vocab_size,
        "pad_id": tokenizer.pad_id,
        "random_low": tokenizer.first_regular_id,
        "special_ids": (tokenizer.cls_id, tokenizer.sep_id),
    }
    # 15% of max_len plus 3 standard deviations of the binomial count (32 of 128): about 1 row
    # in 1,300 has more selected tokens, and only its extra ones go unpredicted.
    p = 0.15 * config.max_len
    max_predictions = min(config.max_len, math.ceil(p + 3 * math.sqrt(p * 0.85)))
    loss_fn = functools.partial(
        mlm_loss, seed=config.seed, mask_kwargs=mask_kwargs, max_predictions=max_predictions
    )
    return bert_config, model, schedule, tx, loss_fn


def pretrain(
    config: PretrainConfig,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    console: Console | None = None,
) -> dict[str, Any]:
    """Train a tokenizer (or read `config.vocab`) and a BertModel with the MLM loss; write the
    run folder (tokenizer.json, config.json, model/, metrics.jsonl, mlm_loss.png,
    attention.png, results.json) and return the results."""
    console = console or Console()
    started = time.perf_counter()
    run = _claim(out_dir, "pretrain bert", config, resume, overwrite)
    config = resume_config(config, run.stored, RESUME_FREE_FIELDS, say=console.print)
    documents: list[str] = []
    for name in config.corpus:
        docs = load_corpus(name, config.data_dir)
        console.print(f"corpus {name}: {len(docs):,} documents")
        documents += docs
    if config.limit_documents:
        documents = documents[: config.limit_documents]
    run.start()

    tok_start = time.perf_counter()
    if resume and run.file("tokenizer.json").exists():
        tokenizer = WordPieceTokenizer.load(run.file("tokenizer.json"))
    elif config.vocab:
        tokenizer = WordPieceTokenizer.load(config.vocab)
    else:
        # A vocabulary from up to `tokenizer_documents` of them (the WordPiece statistics
        # settle long before 25,000 reviews; training on all takes a minute more here).
        sample = np.random.default_rng([config.seed, 98]).permutation(len(documents))
        sample = sample[: config.tokenizer_documents or len(documents)]
        tokenizer = WordPieceTokenizer.train([documents[i] for i in sample], config.vocab_size)
    tokenizer.save(run.path)  # before training: a resumed run must see the same vocabulary
    train_seqs, val_seqs = pretraining_sequences(config, tokenizer, documents)
    tokenize_seconds = time.perf_counter() - tok_start
    console.print(
        f"tokenizer: {tokenizer.vocab_size:,} WordPieces; {len(train_seqs):,} train and "
        f"{len(val_seqs):,} validation sequences of {config.max_len} tokens "
        f"({tokenize_seconds:.0f}s)"
    )

    bert_config, model, schedule, tx, loss_fn = make_mlm(config, tokenizer)
    params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    epochs = math.ceil(config.steps / config.steps_per_epoch)
    val = eval_batches({"ids": val_seqs}, config.eval_batch_size, seed_offset=10**6)
    console.print(
        f"BERT {config.num_layers} layers, E={config.embed_dim}, {config.num_heads} heads, "
        f"FF={config.ff_dim}: {params:,} parameters; {config.steps} steps of {config.batch_size} "
        f"({epochs} logging epochs), adamw lr {config.learning_rate:g}, "
        f"on {jax.devices()[0].platform}"
    )
    meta = {"model": bert_config.to_dict(), "pretrain": config.to_dict()}
    with Trainer(
        model,
        tx,
        loss_fn,
        run,
        best_metric="val_loss",
        maximize=False,
        learning_rate_fn=schedule,
        console=console,
        progress=progress,
    ) as trainer:
        initial = trainer.evaluate(val)
        console.print(
            f"initial validation MLM loss {initial['loss']:.3f} "
            f"(ln V = {math.log(tokenizer.vocab_size):.3f})"
        )
        records = trainer.fit(
            lambda epoch: pretrain_batches(train_seqs, config, epoch),
            epochs,
            val_batches=lambda: val,
            steps_per_epoch=config.steps_per_epoch,
            resume=resume,
            meta={"config": config.to_dict()},
        )
        best_epoch = trainer.restore("best") or trainer.epoch
        seconds = trainer.seconds

    _write_model_folder(run, tokenizer, meta, model)
    best = next(r for r in records if r["epoch"] == best_epoch)
    results = {
        "experiment": "bert-pretrain",
        "gradients": nn.gradients_of(model),
        "val_mlm_loss": best["val_loss"],
        "val_mlm_accuracy": best["val_accuracy"],
        "val_perplexity": math.exp(best["val_loss"]),
        "initial_val_mlm_loss": initial["loss"],
        "ln_vocab_size": math.log(tokenizer.vocab_size),
        "train_mlm_loss": best["train_loss"],
        "best_epoch": best_epoch,
        "steps": records[-1]["step"],
        "tokens_seen": records[-1]["step"] * config.batch_size * config.max_len,
        "seconds": seconds,
        "tokenize_seconds": tokenize_seconds,
        "wall_seconds": time.perf_counter() - started,
        "params": params,
        "vocab_size": tokenizer.vocab_size,
        "num_train_sequences": len(train_seqs),
        "num_val_sequences": len(val_seqs),
        "device": jax.devices()[0].device_kind,
        "config": config.to_dict(),
    }
    plot_curves(
        [{"step": 0, "val_loss": initial["loss"]}, *records],
        run.file("mlm_loss.png"),
        panels={
            "MLM loss": ["train_loss", "val_loss"],
            "masked-token accuracy": ["train_accuracy", "val_accuracy"],
        },
        x="step",
        title="BERT masked-language-model pretraining",
    )
    _attention_figure(run, model, tokenizer, "pretrained BERT: attention per layer (rows) and head")
    run.finish(results)
    return results


# ----------------------------------------------------------------------------- fine-tuning
def classification_loss(
    model: BertClassifier, batch: Batch, *, train: bool
) -> tuple[jax.Array, dict[str, Mean]]:
    """BCE with logits on one logit per review (the course's), over the real rows."""
    del train
    logits = model(batch["ids"], batch["pad"]).astype(jnp.float32)
    labels = batch["label"].astype(jnp.float32)
    rows = batch["mask"].astype(jnp.float32)
    bce = optax.sigmoid_binary_cross_entropy(logits, labels)
    loss = jnp.sum(bce * rows) / jnp.maximum(rows.sum(), 1)
    correct = (logits > 0) == (batch["label"] == 1)
    return loss, {"loss": Mean.of(bce, rows), "accuracy": Mean.of(correct, rows)}


def positive_probability(model: BertClassifier, batch: Batch) -> jax.Array:
    return jax.nn.sigmoid(model(batch["ids"], batch["pad"]))


def _encoder(
    config: FinetuneConfig, splits: TextSplits, console: Console
) -> tuple[WordPieceTokenizer, BertConfig, Any]:
    """(tokenizer, encoder config, parameter loader) from the pretrained run, a Hugging Face
    checkpoint, or fresh (tokenizer trained on the training reviews)."""
    if config.hf_checkpoint:
        hf_config, state_dict = read_hf_checkpoint(config.hf_checkpoint)
        if hf_config is None:
            raise FileNotFoundError(f"{config.hf_checkpoint} has no config.json")
        tokenizer = WordPieceTokenizer.load(config.hf_checkpoint)
        bert_config = BertConfig.from_hf(hf_config, tokenizer.mask_id)
        console.print(f"encoder: Hugging Face checkpoint {config.hf_checkpoint}")
        return tokenizer, bert_config, lambda bert: load_hf_weights(bert, state_dict)
    if config.pretrained:
        folder = pathlib.Path(config.pretrained)
        meta = read_json(folder / "config.json")
        tokenizer = WordPieceTokenizer.load(folder / "tokenizer.json")
        bert_config = BertConfig.from_dict(meta["model"])
        console.print(f"encoder: pretrained in {folder}")
        return tokenizer, bert_config, lambda bert: load_module(folder / "model", bert)
    tokenizer = WordPieceTokenizer.train(splits.train_texts, config.vocab_size)
    bert_config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        embed_dim=config.embed_dim,
        num_heads=config.num_heads,
        num_layers=config.num_layers,
        ff_dim=config.ff_dim,
        max_len=config.max_len,
        mask_token_id=tokenizer.mask_id,
        pad_id=tokenizer.pad_id,
    )
    console.print("encoder: none pretrained, trained from scratch")
    return tokenizer, bert_config, lambda bert: None


@_classic_threefry
def finetune(
    config: FinetuneConfig,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    console: Console | None = None,
    baseline: bool = False,
) -> dict[str, Any]:
    """Fine-tune a classifier on IMDB; the best epoch by validation loss is restored, tested,
    and saved (model/, config.json, tokenizer.json) with results.json, curves.png and
    attention.png."""
    console = console or Console()
    started = time.perf_counter()
    run = _claim(out_dir, "finetune bert", config, resume, overwrite)
    config = resume_config(config, run.stored, RESUME_FREE_FIELDS, say=console.print)
    splits = load_imdb(
        config.data_dir, source=config.source, val_fraction=config.val_fraction, seed=config.seed
    )
    splits = limit_reviews(splits, config.limit_train, config.limit_eval, config.seed)
    console.print(splits.describe())
    tokenizer, bert_config, load_encoder = _encoder(config, splits, console)
    run.start()
    if bert_config.positions == "learned" and config.max_len > bert_config.max_len:
        raise ConfigError(
            f"max_len {config.max_len} exceeds the encoder's learned positions "
            f"({bert_config.max_len})"
        )
    # Sinusoidal positions extend to any length; dropout is the fine-tuning's own.
    bert_config = dataclasses.replace(
        bert_config, max_len=max(bert_config.max_len, config.max_len), dropout_rate=config.dropout
    )

    tok_start = time.perf_counter()
    arrays = {}
    for name, texts, labels in (
        ("train", splits.train_texts, splits.train_labels),
        ("val", splits.val_texts, splits.val_labels),
        ("test", splits.test_texts, splits.test_labels),
    ):
        ids, pad = tokenizer.encode_batch(texts, config.max_len, truncation=config.truncation)
        arrays[name] = {"ids": ids, "pad": pad, "label": labels.astype(np.int32)}
    tokenize_seconds = time.perf_counter() - tok_start
    truncated = float(np.mean(arrays["train"]["pad"][:, -1] == 0))
    console.print(
        f"tokenized in {tokenize_seconds:.0f}s; {truncated:.0%} of the train reviews are "
        f"truncated to {config.max_len} tokens"
    )

    classifier_options = {
        "head": config.head,
        "dropout_rate": config.dropout,
        "gru_hidden": config.gru_hidden,
        "freeze_encoder": config.freeze_encoder,
    }

    def create() -> BertClassifier:
        rngs = nnx.Rngs(params=config.seed, dropout=config.seed + 1)
        return BertClassifier(BertModel(bert_config, rngs=rngs), rngs=rngs, **classifier_options)

    model = create_module(create)
    load_encoder(model.bert)
    set_compute_dtype(model, config.compute_dtype)
    nn.set_gradients(model, nn.default_gradients(config.gradients))
    trainable = sum(
        int(np.prod(x.shape))
        for path, x in jax.tree_util.tree_leaves_with_path(nnx.state(model, nnx.Param))
        if not (config.freeze_encoder and getattr(path[0], "key", None) == "bert")
    )

    train = arrays["train"]
    bs = min(config.batch_size, len(train["ids"]))
    steps = len(train["ids"]) // bs
    schedule = make_schedule(
        config.schedule,
        config.learning_rate,
        steps * config.epochs,
        warmup_steps=round(config.warmup_fraction * steps * config.epochs),
    )
    tx = _optimizer(config.optimizer, schedule, config.weight_decay, config.clip_norm)
    if config.freeze_encoder:
        tx = frozen_encoder_tx(tx)

    def train_batches(epoch: int) -> list[Batch]:
        return review_batches(train, bs, config.seed, epoch, config.length_buckets)

    val = review_eval_batches(arrays["val"], config.eval_batch_size, config.length_buckets)
    test = review_eval_batches(arrays["test"], config.eval_batch_size, config.length_buckets)
    console.print(
        f"classifier head {config.head}{' on a frozen encoder' if config.freeze_encoder else ''}: "
        f"{trainable:,} trainable parameters; {config.epochs} epochs of {steps} steps of {bs}, "
        f"{config.optimizer} lr {config.learning_rate:g}, on {jax.devices()[0].platform}"
    )
    meta = {
        "model": bert_config.to_dict(),
        "classifier": classifier_options,
        "max_len": config.max_len,
        "truncation": config.truncation,
        "finetune": config.to_dict(),
    }
    with Trainer(
        model,
        tx,
        classification_loss,
        run,
        best_metric="val_loss",
        maximize=False,
        learning_rate_fn=schedule,
        console=console,
        progress=progress,
    ) as trainer:
        records = trainer.fit(
            train_batches,
            config.epochs,
            val_batches=lambda: val,
            steps_per_epoch=steps,
            resume=resume,
            meta={"config": config.to_dict()},
        )
        best_epoch = trainer.restore("best") or trainer.epoch
        test_start = time.perf_counter()
        test_metrics = trainer.evaluate(test)
        test_seconds = time.perf_counter() - test_start
        seconds = trainer.seconds

    _write_model_folder(run, tokenizer, meta, model)
    best = next(r for r in records if r["epoch"] == best_epoch)
    pretrain_results = {}
    if config.pretrained and (pathlib.Path(config.pretrained) / "results.json").exists():
        pretrain_results = read_results(config.pretrained)
    results = {
        "experiment": "bert-imdb",
        "gradients": nn.gradients_of(model),
        "test_accuracy": test_metrics["accuracy"],
        "test_loss": test_metrics["loss"],
        "val_accuracy": best["val_accuracy"],
        "val_loss": best["val_loss"],
        "train_accuracy": best["train_accuracy"],
        "train_loss": best["train_loss"],
        "best_epoch": best_epoch,
        "epochs": trainer.epoch,
        "seconds": seconds,
        "test_seconds": test_seconds,
        "tokenize_seconds": tokenize_seconds,
        "wall_seconds": time.perf_counter() - started,
        "pretrain_wall_seconds": pretrain_results.get("wall_seconds"),
        "pretrain_val_mlm_loss": pretrain_results.get("val_mlm_loss"),
        "trainable_params": trainable,
        "num_train": len(train["ids"]),
        "num_val": len(arrays["val"]["ids"]),
        "num_test": len(arrays["test"]["ids"]),
        "truncated_fraction": truncated,
        "data_source": splits.source,
        "device": jax.devices()[0].device_kind,
        "config": config.to_dict(),
    }
    if baseline:
        results.update(bag_of_words_baseline(splits))
        console.print(f"bag-of-words baseline: test accuracy {results['bow_test_accuracy']:.4f}")
    plot_curves(records, run.file("curves.png"), title="IMDB fine-tuning")
    _attention_figure(
        run, model.bert, tokenizer, "fine-tuned encoder: attention per layer (rows) and head"
    )
    run.finish(results)
    return results
