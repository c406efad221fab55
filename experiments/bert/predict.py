"""Sentiment from a fine-tuned BERT run folder (`jaxnets predict sentiment`): the model, its
tokenizer and settings read back from model/, tokenizer.json and config.json."""

from __future__ import annotations

import functools
import os
import pathlib
from typing import Any

import jax
import numpy as np
from flax import nnx

from jaxnets.errors import RunFolderError
from jaxnets.init import create_module
from jaxnets.models.bert import BertClassifier, BertConfig, BertModel
from jaxnets.text.tokenizer import WordPieceTokenizer
from jaxnets.training.checkpoints import load_module
from jaxnets.training.run_dir import read_json


@functools.cache
def _load_classifier(run_dir: str) -> tuple[BertClassifier, WordPieceTokenizer, dict[str, Any]]:
    folder = pathlib.Path(run_dir)
    meta = read_json(folder / "config.json")
    if "classifier" not in meta:
        raise RunFolderError(
            f"{folder} is not a fine-tuned run (its config.json has no classifier)"
        )
    bert_config = BertConfig.from_dict(meta["model"])
    model = create_module(
        lambda: BertClassifier(
            BertModel(bert_config, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(0), **meta["classifier"]
        )
    )
    load_module(folder / "model", model)
    return (
        nnx.view(model, deterministic=True),
        WordPieceTokenizer.load(folder / "tokenizer.json"),
        meta,
    )


def predict(run_dir: str | os.PathLike, texts: list[str]) -> np.ndarray:
    """Positive-sentiment probabilities sigmoid(logit) of `texts` from a fine-tuned run folder
    (the course's predict_sentiment)."""
    model, tokenizer, meta = _load_classifier(str(pathlib.Path(run_dir).absolute()))
    ids, pad = tokenizer.encode_batch(list(texts), meta["max_len"], truncation=meta["truncation"])
    run = nnx.jit(lambda m, x, p: jax.nn.sigmoid(m(x, p)))
    return np.asarray(run(model, ids, pad))
