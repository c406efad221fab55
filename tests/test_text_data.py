"""IMDB and pretraining-corpus readers, and the WordPiece tokenizer."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest

from jaxnets.data.images import DatasetFormatError, DatasetNotFoundError
from jaxnets.data.text import load_corpus, load_imdb, read_imdb_archive
from jaxnets.text.tokenizer import SPECIAL_TOKENS, WordPieceTokenizer, chunk_documents

REVIEWS = {
    "good": "A wonderful film.<br /><br />The acting was great and I loved it.",
    "bad": "A terrible film. The plot was boring and I hated it.",
}


def _fake_imdb(root, per_class: int = 5):
    """An aclImdb/ folder with `per_class` reviews in each of train/test x pos/neg."""
    for split in ("train", "test"):
        for label, text in (("pos", REVIEWS["good"]), ("neg", REVIEWS["bad"])):
            folder = root / "aclImdb" / split / label
            folder.mkdir(parents=True)
            for i in range(per_class):
                (folder / f"{i}_{8 if label == 'pos' else 2}.txt").write_text(f"{text} #{i}")
    (root / "aclImdb" / "README").write_text("readme")
    return root


def test_folder_and_archive_read_alike(tmp_path):
    _fake_imdb(tmp_path / "folder", per_class=10)
    archive = tmp_path / "archive" / "aclImdb_labeled.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "folder" / "aclImdb", arcname="aclImdb")
    from_folder = load_imdb(tmp_path / "folder", val_fraction=0.3)
    from_archive = load_imdb(tmp_path / "archive", val_fraction=0.3)
    for splits in (from_folder, from_archive):
        assert len(splits.train_texts) == 14 and len(splits.val_texts) == 6
        assert len(splits.test_texts) == 20 and splits.test_labels.sum() == 10
        assert splits.val_labels.sum() == 3  # stratified: 30% of each class
        assert "<br" not in " ".join(splits.train_texts)
        assert all(
            ("wonderful" in t) == bool(y) for t, y in zip(splits.test_texts, splits.test_labels)
        )
    assert from_folder.train_texts == from_archive.train_texts
    assert "IMDB from" in from_archive.describe()


def test_missing_and_corrupt_data_raise_clear_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="How to get IMDB"):
        load_imdb(tmp_path, source="files")
    bad = tmp_path / "aclImdb_labeled.tar.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00 this is not gzip data")
    with pytest.raises(DatasetFormatError, match="not a readable aclImdb archive"):
        load_imdb(tmp_path)
    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz") as tar:
        info = tarfile.TarInfo("aclImdb/train/pos/1_9.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"good"))
    with pytest.raises(DatasetFormatError, match="no train/pos and train/neg"):
        read_imdb_archive(empty)
    with pytest.raises(DatasetNotFoundError, match=r"input\.txt"):
        load_corpus("tinyshakespeare", tmp_path)
    with pytest.raises(ValueError, match="unknown corpus"):
        load_corpus("ptb", tmp_path)


def test_corpora_split_into_documents(tmp_path):
    (tmp_path / "tinyshakespeare").mkdir()
    (tmp_path / "tinyshakespeare" / "input.txt").write_text("A:\nHi.\n\nB:\nHo.\n\n\nC:\nHa.\n")
    assert load_corpus("tinyshakespeare", tmp_path) == ["A:\nHi.", "B:\nHo.", "C:\nHa."]
    (tmp_path / "wikitext2").mkdir()
    (tmp_path / "wikitext2" / "valid.txt").write_text(" \n = Title = \n \n One paragraph . \n")
    (tmp_path / "wikitext2" / "test.txt").write_text(" = = Sub = = \n Another . \n")
    assert load_corpus("wikitext2", tmp_path) == ["One paragraph .", "Another ."]


def test_shared_imdb_has_the_course_splits(shared_data):
    if not (shared_data / "imdb" / "aclImdb_labeled.tar.gz").exists():
        pytest.skip("no IMDB archive in the shared data")
    splits = load_imdb(shared_data, val_fraction=0.3, seed=0)
    assert (len(splits.train_texts), len(splits.val_texts), len(splits.test_texts)) == (
        17_500,
        7_500,
        25_000,
    )
    assert splits.test_labels.sum() == 12_500 and splits.val_labels.sum() == 3_750
    assert len(set(splits.train_texts[:500]) & set(splits.val_texts)) == 0


def test_shared_corpora_sizes(shared_data):
    for name, low in (("tinyshakespeare", 7_000), ("wikitext2", 2_000)):
        if not (shared_data / name).exists():
            continue
        docs = load_corpus(name, shared_data)
        assert len(docs) > low and all(docs)


# ----------------------------------------------------------------------------- tokenizer
def _texts():
    words = "the movie was good bad great awful plot acting story film loved hated".split()
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(words, 12)) for _ in range(300)] + list(REVIEWS.values())


def test_wordpiece_training_specials_and_batches(tmp_path):
    tok = WordPieceTokenizer.train(_texts(), vocab_size=200)
    assert [tok.tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert tok.first_regular_id == 5 and tok.vocab_size <= 200
    ids, mask = tok.encode_batch(["The movie was GOOD", "bad"], 8)
    assert ids.shape == mask.shape == (2, 8) and ids.dtype == np.int32
    words = tok.encode_documents(["the movie was good"])[0]
    np.testing.assert_array_equal(ids[0, :6], [tok.cls_id, *words, tok.sep_id])  # lowercased
    np.testing.assert_array_equal(mask[0], [0] * 6 + [1, 1])
    assert ids[1, 0] == tok.cls_id and ids[1, 2] == tok.sep_id and mask[1].sum() == 5
    # Truncation keeps the start, or the start and the end.
    long = " ".join(["good"] * 5 + ["bad"] * 5)
    good, bad = tok.encode_documents(["good"])[0][0], tok.encode_documents(["bad"])[0][0]
    head, _ = tok.encode_batch([long], 6)
    both, _ = tok.encode_batch([long], 6, truncation="head+tail")
    np.testing.assert_array_equal(head[0], [tok.cls_id, good, good, good, good, tok.sep_id])
    np.testing.assert_array_equal(both[0], [tok.cls_id, good, good, bad, bad, tok.sep_id])
    # Saved with the model, reloaded identically.
    tok.save(tmp_path / "tok")
    again = WordPieceTokenizer.load(tmp_path / "tok")
    np.testing.assert_array_equal(
        again.encode_batch(["great plot"], 8)[0], tok.encode_batch(["great plot"], 8)[0]
    )


def test_trained_ids_follow_a_fixed_order():
    # The trainer numbers its initial alphabet in hash-map order; jaxnets renumbers, special
    # tokens first, so the same vocabulary always gets the same ids.
    vocab = WordPieceTokenizer.train(_texts(), vocab_size=200).tokenizer.get_vocab()
    tokens = sorted(vocab, key=vocab.get)
    assert tokens[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    assert tokens[len(SPECIAL_TOKENS) :] == sorted(tokens[len(SPECIAL_TOKENS) :])


def test_user_vocab_txt(tmp_path):
    vocab = ["[PAD]", *(f"[unused{i}]" for i in range(3)), "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += ["the", "movie", "good", "##s"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = WordPieceTokenizer.load(tmp_path)
    assert (tok.pad_id, tok.unk_id, tok.mask_id, tok.first_regular_id) == (0, 4, 7, 8)
    assert tok.encode_documents(["The goods zzz"])[0] == [8, 10, 11, 4]
    with pytest.raises(ValueError, match="lacks"):
        (tmp_path / "bad").mkdir()
        (tmp_path / "bad" / "vocab.txt").write_text("the\nmovie\n[UNK]\n")
        WordPieceTokenizer.load(tmp_path / "bad")


def test_chunk_documents():
    rows = chunk_documents(
        [list(range(10, 30)), [5, 6]], 10, cls_id=2, sep_id=3, pad_id=0, min_tokens=3
    )
    assert rows.shape == (3, 10)  # 20 tokens -> 8 + 8 + 4; the 2-token document is dropped
    np.testing.assert_array_equal(rows[0], [2, *range(10, 18), 3])
    np.testing.assert_array_equal(rows[2], [2, 26, 27, 28, 29, 3, 0, 0, 0, 0])


def test_character_clipping_before_tokenizing_changes_nothing():
    # encode_batch cuts very long texts to their first (and last) 10 * max_len characters
    # before tokenizing; the tokens it keeps must be those of the whole text.
    tok = WordPieceTokenizer.train(_texts(), vocab_size=200)
    rng = np.random.default_rng(1)
    words = "the movie was good bad great awful plot acting story film loved hated".split()
    long = [" ".join(rng.choice(words, 400)) for _ in range(3)]  # ~2,400 characters each
    for truncation in ("head", "head+tail"):
        ids, _ = tok.encode_batch(long, 16, truncation=truncation)
        for row, tokens in zip(ids, tok.encode_documents(long)):
            kept = tokens[:14] if truncation == "head" else tokens[:7] + tokens[-7:]
            np.testing.assert_array_equal(row, [tok.cls_id, *kept, tok.sep_id])
