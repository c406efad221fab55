"""Text datasets: IMDB sentiment and plain-text corpora for masked-language-model pretraining.

IMDB (Maas et al. 2011): 25,000 train and 25,000 test reviews, half positive (label 1), half
negative (0). Read from the `aclImdb_labeled.tar.gz` archive or the original `aclImdb_v1.tar.gz`,
an extracted `aclImdb/` folder, or a prepared TFDS `imdb_reviews`. The course's validation split
is 30% of train (17,500 / 7,500). Pretraining corpora: the IMDB train reviews (never the test
ones), Tiny Shakespeare (one document per speech) and WikiText-2 (one per paragraph; only its
validation and test files ship here). Nothing is downloaded: missing or damaged files raise
`DatasetNotFoundError` / `DatasetFormatError` saying what was expected and how to get it; so does
a copy with some label folders at the full 12,500 reviews and others short (a cut archive).
"""

from __future__ import annotations

import os
import re
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxnets.data.images import DatasetFormatError, DatasetNotFoundError, tfds_is_prepared
from jaxnets.data.pipeline import stratified_split_indices

# The repo's sibling folder ../shared/data, or $JAXNETS_DATA_DIR.
DEFAULT_DATA_DIR = Path(
    os.environ.get(
        "JAXNETS_DATA_DIR", Path(__file__).resolve().parents[2].parent / "shared" / "data"
    )
)
IMDB_ARCHIVES = ("aclImdb_labeled.tar.gz", "aclImdb_v1.tar.gz")
# Reviews in each of train/pos, train/neg, test/pos, test/neg of the real dataset. A module
# constant so tests can stand in a tiny "full" IMDB; users always get the real size.
IMDB_REVIEWS_PER_LABEL = 12_500
IMDB_SOURCES = ("auto", "files", "tfds")
CORPORA = ("imdb", "tinyshakespeare", "wikitext2")

_IMDB_HELP = """
How to get IMDB (nothing is downloaded automatically):
  * pass `--data-dir DIR` where DIR (or DIR/imdb) holds aclImdb_labeled.tar.gz or the original
    aclImdb_v1.tar.gz (https://ai.stanford.edu/~amaas/data/sentiment/), or its extracted
    aclImdb/ folder with train/{pos,neg}/*.txt and test/{pos,neg}/*.txt;
  * or with TFDS, on a machine with internet: `tfds build imdb_reviews --file_format=array_record
    --data_dir DIR`, copy DIR here and pass `--data-dir DIR --source tfds`."""

_REVIEW = re.compile(r"(?:^|/)(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")


@dataclass
class TextSplits:
    """Texts with int32 labels (1 = positive) for train, validation and test."""

    train_texts: list[str]
    train_labels: np.ndarray
    val_texts: list[str]
    val_labels: np.ndarray
    test_texts: list[str]
    test_labels: np.ndarray
    source: str

    def describe(self) -> str:
        parts = [
            f"{name} {len(texts):,} ({int(np.sum(labels)):,} positive)"
            for name, texts, labels in (
                ("train", self.train_texts, self.train_labels),
                ("val", self.val_texts, self.val_labels),
                ("test", self.test_texts, self.test_labels),
            )
        ]
        return f"IMDB from {self.source}: " + ", ".join(parts)


def clean_review(text: str) -> str:
    """The reviews contain HTML line breaks (<br />): make them spaces."""
    return re.sub(r"<br\s*/?>", " ", text)


Split = dict[str, tuple[list[str], np.ndarray]]


def _check_imdb_counts(found: dict[str, list[tuple[int, int, str]]], where: str, kind: str) -> None:
    """Refuse an IMDB that is partly full size: a tar cut at a member boundary (and re-gzipped)
    reads without error, minus the reviews after the cut; the label folders before the cut still
    hold all 12,500 reviews, which shows the data was meant to be the full set."""
    full = IMDB_REVIEWS_PER_LABEL
    per_label = {
        split: (
            sum(r[0] for r in found.get(split, [])),
            sum(1 - r[0] for r in found.get(split, [])),
        )
        for split in ("train", "test")
    }
    counts = [n for pair in per_label.values() for n in pair]
    if full not in counts or all(n == full for n in counts):
        return  # the full dataset, or a sample of it (no folder at full size)
    for split, (pos, neg) in per_label.items():
        if (pos, neg) != (full, full):
            raise DatasetFormatError(
                f"{where}: {split} has {pos + neg:,} reviews ({pos:,} positive), IMDB has "
                f"{2 * full:,} ({full:,} a label); the {kind} looks truncated"
            )


def _collect(found: dict[str, list[tuple[int, int, str]]], where: str, kind: str) -> Split:
    """Sort each split by (label, review id) so the order never depends on the archive's."""
    _check_imdb_counts(found, where, kind)
    out = {}
    for split in ("train", "test"):
        rows = sorted(found.get(split, []))
        labels = np.array([r[0] for r in rows], np.int32)
        if len(rows) == 0 or labels.min() == labels.max():
            raise DatasetFormatError(
                f"{where} has no {split}/pos and {split}/neg reviews (found {len(rows)} in {split})"
            )
        out[split] = ([clean_review(r[2]) for r in rows], labels)
    return out


def read_imdb_archive(path: str | os.PathLike) -> Split:
    """{"train": (texts, labels), "test": ...} from an aclImdb tar.gz (any member order)."""
    path = Path(path)
    found: dict[str, list[tuple[int, int, str]]] = {}
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                match = _REVIEW.search(member.name)
                if not member.isfile() or match is None:
                    continue  # README, vocab, unsup/, urls_*.txt
                split, label, review_id, _ = match.groups()
                text = archive.extractfile(member).read().decode("utf-8")
                found.setdefault(split, []).append((int(label == "pos"), int(review_id), text))
    except (tarfile.TarError, EOFError, OSError, zlib.error, UnicodeDecodeError) as exc:
        # tarfile's "r:*" error lists one line per compression it tried: keep the first.
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DatasetFormatError(f"{path} is not a readable aclImdb archive: {reason}") from exc
    return _collect(found, str(path), "archive")


def read_imdb_folder(path: str | os.PathLike) -> Split:
    """The same from an extracted `aclImdb/` folder."""
    path = Path(path)
    found: dict[str, list[tuple[int, int, str]]] = {}
    for split in ("train", "test"):
        for label in ("pos", "neg"):
            for file in (path / split / label).glob("*.txt"):
                match = _REVIEW.search(file.as_posix())
                if match is None:
                    continue
                text = file.read_text(encoding="utf-8")
                found.setdefault(split, []).append((int(label == "pos"), int(match.group(3)), text))
    return _collect(found, str(path), "folder")


def read_imdb_tfds(data_dir: str | os.PathLike | None) -> Split:
    """The same from a prepared TFDS `imdb_reviews` (array_record format, read without TF)."""
    import tensorflow_datasets as tfds

    kwargs = {"data_dir": str(data_dir)} if data_dir is not None else {}
    out = {}
    for split in ("train", "test"):
        try:
            source = tfds.data_source("imdb_reviews", split=split, download=False, **kwargs)
        except Exception as exc:
            raise DatasetNotFoundError(
                f"no readable TFDS imdb_reviews in {data_dir}.{_IMDB_HELP}"
            ) from exc
        items = [source[i] for i in range(len(source))]
        texts = [clean_review(item["text"].decode("utf-8")) for item in items]
        out[split] = (texts, np.array([int(item["label"]) for item in items], np.int32))
    return out


def find_imdb(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The archive or extracted folder under data_dir (or data_dir/imdb), if there is one."""
    root = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
    if root.is_file():
        return root
    for folder in (root, root / "imdb"):
        for name in IMDB_ARCHIVES:
            if (folder / name).is_file():
                return folder / name
        for candidate in (folder / "aclImdb", folder):
            if (candidate / "train" / "pos").is_dir():
                return candidate
    return None


def read_imdb(data_dir: str | os.PathLike | None = None, source: str = "auto") -> tuple[Split, str]:
    """(the train and test splits, a description of where they came from)."""
    if source not in IMDB_SOURCES:
        raise ValueError(f"unknown IMDB source {source!r}; choose from {IMDB_SOURCES}")
    if source in ("auto", "files"):
        found = find_imdb(data_dir)
        if found is not None:
            reader = read_imdb_archive if found.is_file() else read_imdb_folder
            return reader(found), str(found)
        if source == "files" or not tfds_is_prepared("imdb_reviews", data_dir):
            where = data_dir if data_dir is not None else DEFAULT_DATA_DIR
            raise DatasetNotFoundError(f"no IMDB archive or aclImdb folder in {where}.{_IMDB_HELP}")
    return read_imdb_tfds(data_dir), f"TFDS imdb_reviews ({data_dir or 'default data dir'})"


def load_imdb(
    data_dir: str | os.PathLike | None = None,
    *,
    source: str = "auto",
    val_fraction: float = 0.3,
    seed: int = 0,
) -> TextSplits:
    """IMDB with a stratified validation split of `val_fraction` of train (course: 0.3)."""
    splits, where = read_imdb(data_dir, source)
    texts, labels = splits["train"]
    train_idx, val_idx = stratified_split_indices(labels, val_fraction, seed)
    return TextSplits(
        [texts[i] for i in train_idx],
        labels[train_idx],
        [texts[i] for i in val_idx],
        labels[val_idx],
        *splits["test"],
        source=where,
    )


# ----------------------------------------------------------------------------- corpora
def _read_text(path: Path, name: str) -> str:
    if not path.is_file():
        raise DatasetNotFoundError(
            f"{name}: {path} does not exist; pass --data-dir DIR holding "
            f"{path.parent.name}/{path.name}"
        )
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetFormatError(f"{name}: {path} is not UTF-8 text ({exc})") from exc


def load_corpus(name: str, data_dir: str | os.PathLike | None = None) -> list[str]:
    """Documents for pretraining: "imdb" (the 25,000 train reviews), "tinyshakespeare" (one
    per speech) or "wikitext2" (one per paragraph of valid.txt and test.txt, headings dropped)."""
    root = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
    if name == "imdb":
        splits, _ = read_imdb(data_dir)
        return splits["train"][0]
    if name == "tinyshakespeare":
        text = _read_text(root / "tinyshakespeare" / "input.txt", name)
        docs = [d.strip() for d in re.split(r"\n\s*\n", text)]
    elif name == "wikitext2":
        lines = []
        for split in ("valid", "test"):
            lines += _read_text(root / "wikitext2" / f"{split}.txt", name).splitlines()
        # " = Heading = " lines are titles; every other non-empty line is one paragraph.
        docs = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("=")]
    else:
        raise ValueError(f"unknown corpus {name!r}; choose from {CORPORA}")
    docs = [d for d in docs if d]
    if not docs:
        raise DatasetFormatError(f"{name}: the corpus under {root} is empty")
    return docs
