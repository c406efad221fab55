"""A WordPiece tokenizer (Hugging Face `tokenizers`), trained on a corpus or read from a BERT
`vocab.txt`, and the numpy batching around it.

Trained vocabularies start with the special tokens [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4;
a `vocab.txt` keeps its own ids (bert-base-uncased: [PAD]=0, [UNK]=100 ... [MASK]=103). The
tokenizer is saved as `tokenizer.json` next to the model, so `predict` reads exactly the
vocabulary the model was trained with.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
TRUNCATIONS = ("head", "head+tail")


def _components(lowercase: bool):
    from tokenizers import decoders, normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(lowercase=lowercase, clean_text=True)
    return normalizer, pre_tokenizers.BertPreTokenizer(), decoders.WordPiece()


class WordPieceTokenizer:
    """Wraps a `tokenizers.Tokenizer` with BERT's special tokens and fixed-length batching."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        missing = [t for t in SPECIAL_TOKENS if tokenizer.token_to_id(t) is None]
        if missing:
            raise ValueError(f"WordPieceTokenizer: the vocabulary lacks {missing}")
        ids = {t: tokenizer.token_to_id(t) for t in SPECIAL_TOKENS}
        self.pad_id, self.unk_id = ids["[PAD]"], ids["[UNK]"]
        self.cls_id, self.sep_id, self.mask_id = ids["[CLS]"], ids["[SEP]"], ids["[MASK]"]

    # ------------------------------------------------------------------------- building
    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int = 8192,
        *,
        lowercase: bool = True,
        min_frequency: int = 2,
    ) -> WordPieceTokenizer:
        """Learn a WordPiece vocabulary of at most `vocab_size` entries from `texts`."""
        from tokenizers import Tokenizer, models, trainers

        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer, tok.pre_tokenizer, tok.decoder = _components(lowercase)
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(SPECIAL_TOKENS),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer)
        # The trainer numbers its initial alphabet in hash-map order, which changes from run to
        # run (same tokens, other ids). WordPiece splits words by greedy longest match, whatever
        # the ids: renumber in a fixed order, special tokens first as given, then the others
        # alphabetically. (That order also breaks the trainer's ties between equally frequent
        # pairs, so on a small corpus the learned vocabulary itself can still differ; a run
        # that must repeat exactly reads an earlier run's tokenizer.json, `--vocab`.)
        vocab = tok.get_vocab()
        regular = sorted(set(vocab) - set(SPECIAL_TOKENS))
        ordered = [t for t in SPECIAL_TOKENS if t in vocab] + regular
        tok.model = models.WordPiece({t: i for i, t in enumerate(ordered)}, unk_token="[UNK]")
        return cls(tok)

    @classmethod
    def from_vocab(cls, path: str | os.PathLike, *, lowercase: bool = True) -> WordPieceTokenizer:
        """From a BERT vocab.txt (one token per line, the line number is its id)."""
        from tokenizers import Tokenizer, models

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"WordPieceTokenizer: no vocabulary file {path}")
        tok = Tokenizer(models.WordPiece.from_file(str(path), unk_token="[UNK]"))
        tok.normalizer, tok.pre_tokenizer, tok.decoder = _components(lowercase)
        return cls(tok)

    @classmethod
    def load(cls, path: str | os.PathLike) -> WordPieceTokenizer:
        """From a folder holding tokenizer.json (or vocab.txt), or from either file."""
        from tokenizers import Tokenizer

        path = Path(path)
        if path.is_dir():
            for name in ("tokenizer.json", "vocab.txt"):
                if (path / name).is_file():
                    return cls.load(path / name)
            raise FileNotFoundError(f"WordPieceTokenizer: no tokenizer.json or vocab.txt in {path}")
        if path.suffix == ".txt":
            return cls.from_vocab(path)
        if not path.is_file():
            raise FileNotFoundError(f"WordPieceTokenizer: no tokenizer file {path}")
        return cls(Tokenizer.from_file(str(path)))

    def save(self, folder: str | os.PathLike) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(str(folder / "tokenizer.json"))
        return folder / "tokenizer.json"

    # ------------------------------------------------------------------------- properties
    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def special_ids(self) -> tuple[int, ...]:
        return (self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id)

    @property
    def first_regular_id(self) -> int:
        """Random MLM replacements are drawn from [first_regular_id, vocab_size): past every
        special token of a trained vocabulary (bert-base: past [MASK] = 103)."""
        return max(self.special_ids) + 1

    # ------------------------------------------------------------------------- encoding
    def tokenize(self, text: str) -> list[str]:
        return self.tokenizer.encode(text, add_special_tokens=False).tokens

    def encode_documents(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, no special tokens, no truncation."""
        encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [e.ids for e in encodings]

    def encode_batch(
        self, texts: Sequence[str], max_len: int, *, truncation: str = "head"
    ) -> tuple[np.ndarray, np.ndarray]:
        """(ids, mask), both int32 (N, max_len): [CLS] tokens [SEP] then [PAD]; mask 1 = pad.

        Reviews longer than max_len - 2 tokens keep their start ("head"), or their start and
        end, half each ("head+tail": conclusions carry much of a review's sentiment).
        """
        if truncation not in TRUNCATIONS:
            raise ValueError(f"truncation must be one of {TRUNCATIONS}, got {truncation!r}")
        if max_len < 3:
            raise ValueError(f"max_len must be at least 3, got {max_len}")
        body = max_len - 2
        # Tokenizing is the slow part on a small CPU. A WordPiece averages 4-5 characters, so
        # the kept tokens lie well inside the first (and last) 10 * max_len characters: cut the
        # rest away first, at whitespace, so the split never makes a new word at the edge.
        chars = 10 * max_len

        def clip(text: str) -> str:
            if len(text) <= 2 * chars:
                return text
            head = text[:chars].rsplit(maxsplit=1)[0]
            tail = text[-chars:].split(maxsplit=1)[-1]
            return head if truncation == "head" else f"{head} {tail}"

        ids = np.full((len(texts), max_len), self.pad_id, np.int32)
        for row, tokens in enumerate(self.encode_documents([clip(t) for t in texts])):
            if len(tokens) > body:
                head = body if truncation == "head" else (body + 1) // 2
                tokens = tokens[:head] + (
                    tokens[len(tokens) - (body - head) :] if body > head else []
                )
            n = len(tokens)
            ids[row, 0] = self.cls_id
            ids[row, 1 : n + 1] = tokens
            ids[row, n + 1] = self.sep_id
        return ids, (ids == self.pad_id).astype(np.int32)


def chunk_documents(
    documents: Iterable[Sequence[int]],
    max_len: int,
    *,
    cls_id: int,
    sep_id: int,
    pad_id: int,
    min_tokens: int = 8,
) -> np.ndarray:
    """Cut each document's token ids into pieces of max_len - 2, each row [CLS] piece [SEP] and
    padding: (N, max_len) int32 pretraining sequences. Pieces under `min_tokens` are dropped."""
    body = max_len - 2
    rows = []
    for doc in documents:
        for start in range(0, len(doc), body):
            piece = list(doc[start : start + body])
            if len(piece) < min_tokens:
                continue
            row = [cls_id, *piece, sep_id]
            rows.append(row + [pad_id] * (max_len - len(row)))
    if not rows:
        raise ValueError("chunk_documents: no document has enough tokens")
    return np.asarray(rows, np.int32)
