"""BERT's data: pretraining sequences and their batches (masked in the step, from each batch's
seed), fixed-shape evaluation batches, length-bucketed review batches for fine-tuning, and
balanced subsets of the IMDB reviews for quick runs."""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxnets.data.pipeline import epoch_permutation, pad_batch
from jaxnets.data.text import TextSplits
from jaxnets.experiments.bert.config import PretrainConfig
from jaxnets.text.tokenizer import WordPieceTokenizer, chunk_documents

Batch = dict[str, Any]


def pretraining_sequences(
    config: PretrainConfig, tokenizer: WordPieceTokenizer, documents: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) sequences (N, max_len): documents, in a seeded random order, cut into
    [CLS] piece [SEP] rows; the first `val_sequences` rows are held out for validation.

    Only as many documents are tokenized as one pass of `steps * batch_size` sequences needs
    (tokenizing all 25,000 IMDB reviews takes minutes on a small CPU and the default run reads
    a fifth of them); with more steps than that the data repeats.
    """
    order = np.random.default_rng([config.seed, 99]).permutation(len(documents))
    wanted = config.steps * config.batch_size + config.val_sequences
    chunks, have = [], 0
    for start in range(0, len(order), 2000):
        docs = [documents[i] for i in order[start : start + 2000]]
        rows = chunk_documents(
            tokenizer.encode_documents(docs),
            config.max_len,
            cls_id=tokenizer.cls_id,
            sep_id=tokenizer.sep_id,
            pad_id=tokenizer.pad_id,
        )
        chunks.append(rows)
        have += len(rows)
        if have >= wanted:
            break
    seqs = np.concatenate(chunks)
    n_val = min(config.val_sequences, len(seqs) // 10)
    return seqs[n_val:], seqs[:n_val]


def pretrain_batches(seqs: np.ndarray, config: PretrainConfig, epoch: int) -> list[Batch]:
    """The batches of logging epoch `epoch` (1-based): global batches (epoch-1)*S .. epoch*S-1,
    walking through the data in a fresh permutation per pass. Each batch carries its global index
    as the seed of its masking, so batches (and masks) depend on (seed, step) only."""
    n = len(seqs)
    bs = min(config.batch_size, n)
    per_pass = n // bs
    first = (epoch - 1) * config.steps_per_epoch
    last = min(epoch * config.steps_per_epoch, config.steps)
    batches = []
    for b in range(first, last):
        data_pass, within = divmod(b, per_pass)
        idx = epoch_permutation(n, config.seed, data_pass)[within * bs : (within + 1) * bs]
        batches.append({"ids": seqs[idx], "seed": np.int32(b), "mask": np.ones(bs, bool)})
    return batches


def eval_batches(
    arrays: dict[str, np.ndarray], batch_size: int, seed_offset: int = 0
) -> list[Batch]:
    """Fixed-shape batches over every row, the last padded (rows with mask False)."""
    n = len(next(iter(arrays.values())))
    out = []
    for i, start in enumerate(range(0, n, batch_size)):
        batch = pad_batch({k: v[start : start + batch_size] for k, v in arrays.items()}, batch_size)
        batch["seed"] = np.int32(seed_offset + i)
        out.append(batch)
    return out


# Fine-tuning batches are cut to their longest review, rounded up to a multiple of this
# many tokens: a few compiled shapes, and at 512 tokens about half the padded work (the
# median review is ~230 tokens).
BUCKET_MULTIPLE = 64
# Training reviews are sorted by length within pools of this many batches, so a batch holds
# reviews of about one length while the epoch's order stays random.
POOL_BATCHES = 50


def _cut(batch: Batch) -> Batch:
    """The batch cut to its longest real review (rows with mask False, padding, do not count)."""
    lengths = (batch["pad"] == 0).sum(axis=1) * batch["mask"]
    width = min(batch["pad"].shape[1], -(-int(lengths.max()) // BUCKET_MULTIPLE) * BUCKET_MULTIPLE)
    return {k: v[:, :width] if k in ("ids", "pad") else v for k, v in batch.items()}


def review_batches(
    arrays: dict[str, np.ndarray], batch_size: int, seed: int, epoch: int, bucketed: bool
) -> list[Batch]:
    """One epoch of full training batches ("ids", "pad", "label", "mask") in a (seed, epoch)
    order; `bucketed`: reviews sorted by length within pools of POOL_BATCHES batches, each
    batch cut to its longest review, and the batches shuffled."""
    steps = len(arrays["ids"]) // batch_size
    order = epoch_permutation(len(arrays["ids"]), seed, epoch)[: steps * batch_size]
    batch_order = np.arange(steps)
    if bucketed:
        lengths = (arrays["pad"][order] == 0).sum(axis=1)
        pool = POOL_BATCHES * batch_size
        for start in range(0, len(order), pool):
            within = np.argsort(lengths[start : start + pool], kind="stable")
            order[start : start + pool] = order[start : start + pool][within]
        batch_order = np.random.default_rng([seed, epoch, 7]).permutation(steps)
    batches = []
    for b in batch_order:
        idx = order[b * batch_size : (b + 1) * batch_size]
        batch = {k: v[idx] for k, v in arrays.items()} | {"mask": np.ones(batch_size, bool)}
        batches.append(_cut(batch) if bucketed else batch)
    return batches


def review_eval_batches(
    arrays: dict[str, np.ndarray], batch_size: int, bucketed: bool
) -> list[Batch]:
    """Evaluation batches over every review; `bucketed`: in order of length, each cut to its
    longest review (the metrics are means, so the order does not change them)."""
    if bucketed:
        order = np.argsort((arrays["pad"] == 0).sum(axis=1), kind="stable")
        arrays = {k: v[order] for k, v in arrays.items()}
    batches = eval_batches(arrays, batch_size)
    batches = [{k: v for k, v in b.items() if k != "seed"} for b in batches]
    return [_cut(b) for b in batches] if bucketed else batches


def limit_reviews(
    splits: TextSplits, n_train: int | None, n_eval: int | None, seed: int
) -> TextSplits:
    """Balanced random subsets (quick runs): n_train train reviews, n_eval val and test each."""

    def take(texts, labels, n):
        if n is None or n >= len(texts):
            return texts, labels
        idx = np.sort(np.random.default_rng([seed, 5]).permutation(len(texts))[:n])
        return [texts[i] for i in idx], labels[idx]

    return TextSplits(
        *take(splits.train_texts, splits.train_labels, n_train),
        *take(splits.val_texts, splits.val_labels, n_eval),
        *take(splits.test_texts, splits.test_labels, n_eval),
        source=splits.source,
    )
