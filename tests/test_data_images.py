"""Dataset readers: IDX, CIFAR pickles and npz, sklearn digits, the shared partial CIFAR, and TFDS.

Every file here is written by the test itself in the real on-disk format, so nothing downloads.
Known answers (pixel layouts, header values) are spelled out independently of the code under test.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import time

import numpy as np
import pytest

from jaxnets.data import images as img
from jaxnets.data.images import (
    CIFAR10_CLASSES,
    DatasetFormatError,
    DatasetNotFoundError,
    load_image_dataset,
    read_idx,
)

tfds = pytest.importorskip("tensorflow_datasets")

FASHION = {
    "train-images-idx3-ubyte": "train_x",
    "train-labels-idx1-ubyte": "train_y",
    "t10k-images-idx3-ubyte": "test_x",
    "t10k-labels-idx1-ubyte": "test_y",
}


# ----------------------------------------------------------------------------- helpers
def idx_bytes(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    """An IDX file: big-endian int32 magic, big-endian uint32 sizes, then the raw data."""
    return struct.pack(">i", magic) + struct.pack(f">{len(dims)}I", *dims) + payload


def tiny_fashion(n_train: int = 5, n_test: int = 3, h: int = 4, w: int = 3) -> dict:
    rng = np.random.default_rng(0)
    return {
        "train_x": rng.integers(0, 256, (n_train, h, w), dtype=np.uint8),
        "train_y": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_x": rng.integers(0, 256, (n_test, h, w), dtype=np.uint8),
        "test_y": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def write_fashion(directory, arrays: dict, gz: bool = True) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for stem, key in FASHION.items():
        a = arrays[key]
        magic = 2051 if a.ndim == 3 else 2049  # the documented IDX magics for ubyte images/labels
        data = idx_bytes(magic, a.shape, a.tobytes())
        if gz:
            (directory / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / stem).write_bytes(data)


def planar_reference(row: np.ndarray) -> np.ndarray:
    """Decode one CIFAR row pixel by pixel: channel plane first, then row-major 32x32."""
    out = np.zeros((32, 32, 3), np.uint8)
    for r in range(32):
        for c in range(32):
            for ch in range(3):
                out[r, c, ch] = row[ch * 1024 + r * 32 + c]
    return out


def write_cifar_pickles(directory, per_batch: int = 3, n_test: int = 2, protocol: int = 2):
    """A tiny cifar-10-batches-py in the original layout (python-2 style dicts with bytes keys)."""
    directory.mkdir(parents=True)
    rng = np.random.default_rng(1)
    batches = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        n = n_test if name == "test_batch" else per_batch
        batch = {
            b"batch_label": f"batch {i}".encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [f"img_{i}_{j}.png".encode() for j in range(n)],
        }
        with open(directory / name, "wb") as f:
            pickle.dump(batch, f, protocol=protocol)
        batches[name] = batch
    meta = {b"label_names": [c.encode() for c in CIFAR10_CLASSES], b"num_vis": 3072}
    with open(directory / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=protocol)
    return batches


@pytest.fixture
def no_tfds_download(monkeypatch):
    """Make any TFDS download attempt fail loudly."""

    def refuse(*args, **kwargs):
        raise AssertionError("TFDS download_and_prepare was called")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", refuse)


# ----------------------------------------------------------------------------- names
def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match="unknown image dataset 'mnist'") as err:
        load_image_dataset("mnist")
    for known in ("digits", "fashion-mnist", "cifar10"):
        assert known in str(err.value)
    with pytest.raises(ValueError, match="source must be one of"):
        load_image_dataset("digits", source="internet")


# ----------------------------------------------------------------------------- IDX
@pytest.mark.parametrize("gz", [True, False])
def test_fashion_idx_round_trip(tmp_path, gz):
    arrays = tiny_fashion()
    write_fashion(tmp_path, arrays, gz=gz)
    for source in ("files", "auto"):
        for name in ("fashion-mnist", "fashion_mnist"):
            ds = load_image_dataset(name, tmp_path, source=source)
            assert ds.train_images.shape == (5, 4, 3, 1) and ds.train_images.dtype == np.uint8
            assert ds.test_images.shape == (3, 4, 3, 1)
            np.testing.assert_array_equal(ds.train_images[..., 0], arrays["train_x"])
            np.testing.assert_array_equal(ds.test_images[..., 0], arrays["test_x"])
            np.testing.assert_array_equal(ds.train_labels, arrays["train_y"])
            np.testing.assert_array_equal(ds.test_labels, arrays["test_y"])
            assert ds.train_labels.dtype == np.int32 and ds.test_labels.dtype == np.int32
            assert ds.class_names[0] == "T-shirt/top" and len(ds.class_names) == 10
            assert ds.name == "fashion-mnist"
            assert str(tmp_path / "t10k-labels-idx1-ubyte") in ds.source
    ds.train_images[0, 0, 0, 0] = 7  # arrays are writable copies, not views of the file buffer


def test_read_idx_other_types(tmp_path):
    """The generic reader: a big-endian int32 IDX (type 0x0C, 2 dims) comes back native-endian."""
    a = np.array([[1, -2, 70000], [3, 4, -5]], dtype=">i4")
    path = tmp_path / "x.idx"
    path.write_bytes(idx_bytes(0x00000C02, a.shape, a.tobytes()))
    out = read_idx(path)
    assert out.dtype == np.int32 and out.dtype.isnative
    np.testing.assert_array_equal(out, [[1, -2, 70000], [3, 4, -5]])


def test_idx_corruption_errors(tmp_path):
    x = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    good = idx_bytes(2051, x.shape, x.tobytes())
    cases = {
        "bad_magic": (idx_bytes(2049, x.shape, x.tobytes()), "bad IDX magic number 2049"),
        "truncated": (good[:-5], "truncated"),
        "trailing": (good + b"\0\0", "trailing bytes"),
        "short_header": (good[:9], "truncated IDX header"),
        "tiny": (b"\0\0", "too short"),
        "bad_gzip": (gzip.compress(good)[:-12], "corrupt or truncated gzip"),
    }
    for name, (data, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(DatasetFormatError, match=message):
            read_idx(path, 2051)
    (tmp_path / "not_idx").write_bytes(b"\x12\x34\x56\x78" + bytes(8))
    with pytest.raises(DatasetFormatError, match="not an IDX file"):
        read_idx(tmp_path / "not_idx")


def test_fashion_swapped_files_and_count_mismatch(tmp_path):
    arrays = tiny_fashion()
    write_fashion(tmp_path, arrays)
    # Labels where images belong: the magic number check names the file.
    labels_gz = (tmp_path / "train-labels-idx1-ubyte.gz").read_bytes()
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(labels_gz)
    with pytest.raises(DatasetFormatError, match=r"train-images-idx3-ubyte\.gz: bad IDX magic"):
        load_image_dataset("fashion-mnist", tmp_path)

    arrays["test_y"] = arrays["test_y"][:2]  # 3 test images, 2 labels
    write_fashion(tmp_path / "mismatch", arrays)
    with pytest.raises(DatasetFormatError, match="3 test images but"):
        load_image_dataset("fashion-mnist", tmp_path / "mismatch")


def test_fashion_missing_file_is_named(tmp_path):
    write_fashion(tmp_path, tiny_fashion())
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    for source in ("files", "auto"):
        with pytest.raises(DatasetNotFoundError, match=r"t10k-labels-idx1-ubyte\.gz"):
            load_image_dataset("fashion-mnist", tmp_path, source=source)


def test_fashion_missing_dir_explains_how_to_get_data(tmp_path, no_tfds_download):
    start = time.perf_counter()
    for source in ("files", "auto"):
        with pytest.raises(DatasetNotFoundError) as err:
            load_image_dataset("fashion-mnist", tmp_path / "nope", source=source)
        message = str(err.value)
        assert isinstance(err.value, FileNotFoundError)
        assert "apt-get install dataset-fashion-mnist" in message
        assert "--data-dir" in message and "train-images-idx3-ubyte.gz" in message
        assert "tfds build fashion_mnist" in message
    # An existing directory with neither IDX files nor TFDS data fails the same way, fast.
    with pytest.raises(DatasetNotFoundError, match="holds no IDX files"):
        load_image_dataset("fashion-mnist", tmp_path)
    assert time.perf_counter() - start < 10.0


# ----------------------------------------------------------------------------- CIFAR pickles
@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar_pickle_directory(tmp_path, protocol):
    batches = write_cifar_pickles(tmp_path / "cifar-10-batches-py", protocol=protocol)
    for data_dir in (tmp_path, tmp_path / "cifar-10-batches-py"):  # the parent or the dir itself
        ds = load_image_dataset("cifar10", data_dir)
        assert ds.train_images.shape == (15, 32, 32, 3) and ds.train_images.dtype == np.uint8
        assert ds.test_images.shape == (2, 32, 32, 3)
        np.testing.assert_array_equal(
            ds.train_labels,
            [y for k in range(1, 6) for y in batches[f"data_batch_{k}"][b"labels"]],
        )
        np.testing.assert_array_equal(ds.test_labels, batches["test_batch"][b"labels"])
        # Image 4 is the second image of data_batch_2; decode it pixel by pixel.
        np.testing.assert_array_equal(
            ds.train_images[4], planar_reference(batches["data_batch_2"][b"data"][1])
        )
        np.testing.assert_array_equal(
            ds.test_images[1], planar_reference(batches["test_batch"][b"data"][1])
        )
        assert ds.class_names == CIFAR10_CLASSES
        assert "data_batch_1..5" in ds.source and "batches.meta" in ds.source


def test_cifar_pickle_errors(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    write_cifar_pickles(d)
    (d / "test_batch").unlink()
    with pytest.raises(DatasetNotFoundError, match="test_batch"):
        load_image_dataset("cifar10", tmp_path)

    raw = (d / "data_batch_3").read_bytes()
    (d / "data_batch_3").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetFormatError, match="data_batch_3: corrupt or truncated pickle"):
        load_image_dataset("cifar10", tmp_path, source="files")

    for name, batch, message in [
        ("wrong_keys", {b"pixels": np.zeros((1, 3072), np.uint8), b"labels": [0]}, "no 'data'"),
        (
            "wrong_shape",
            {b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]},
            r"\[N, 3072\]",
        ),
        ("count", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 images but 1"),
    ]:
        case = tmp_path / name
        write_cifar_pickles(case)
        with open(case / "data_batch_1", "wb") as f:
            pickle.dump(batch, f, protocol=2)
        with pytest.raises(DatasetFormatError, match=message):
            load_image_dataset("cifar10", case)


class _Hostile:
    def __init__(self, victim: str):
        self.victim = victim

    def __reduce__(self):
        return (os.remove, (self.victim,))


def test_cifar_pickle_refuses_code(tmp_path):
    """A pickle that would call os.remove on load is rejected before anything runs."""
    d = tmp_path / "cifar-10-batches-py"
    write_cifar_pickles(d)
    victim = tmp_path / "victim.txt"
    victim.write_text("still here")
    with open(d / "data_batch_1", "wb") as f:
        pickle.dump({b"data": _Hostile(str(victim)), b"labels": []}, f, protocol=2)
    with pytest.raises(DatasetFormatError, match="refusing to unpickle"):
        load_image_dataset("cifar10", tmp_path)
    assert victim.read_text() == "still here"


# ----------------------------------------------------------------------------- CIFAR npz
def test_cifar_npz_layouts(tmp_path):
    rng = np.random.default_rng(2)
    train = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    test = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    y_train, y_test = np.arange(6) % 10, np.array([9, 0, 1, 2])

    simple = tmp_path / "simple"
    simple.mkdir()
    np.savez(simple / "train.npz", images=train, labels=y_train)
    np.savez(simple / "test.npz", images=test, labels=y_test)
    ds = load_image_dataset("cifar10", simple)
    np.testing.assert_array_equal(ds.train_images, train)
    np.testing.assert_array_equal(ds.test_labels, y_test)
    assert ds.class_names == CIFAR10_CLASSES and "train.npz" in ds.source

    # The shared layout: planar rows, 1024 R then 1024 G then 1024 B, built by an explicit loop.
    def to_planar(images):
        rows = np.zeros((len(images), 3072), np.uint8)
        for i, im in enumerate(images):
            for ch in range(3):
                rows[i, ch * 1024 : (ch + 1) * 1024] = im[:, :, ch].ravel()
        return rows

    planar = tmp_path / "planar"
    planar.mkdir()
    np.savez(planar / "cifar10_train_part.npz", data=to_planar(train), labels=y_train)
    np.savez(planar / "cifar10_test_part.npz", data=to_planar(test), labels=y_test)
    ds = load_image_dataset("cifar10", planar, source="files")
    np.testing.assert_array_equal(ds.train_images, train)
    np.testing.assert_array_equal(ds.test_images, test)
    assert ds.train_labels.dtype == np.int32


def test_cifar_npz_errors(tmp_path):
    good = {"images": np.zeros((2, 32, 32, 3), np.uint8), "labels": np.array([0, 1])}
    cases = {
        "keys": ({"x": good["images"], "y": good["labels"]}, "found keys"),
        "shape": (
            {"images": np.zeros((2, 3, 32, 32), np.uint8), "labels": [0, 1]},
            r"\[N, 32, 32, 3\]",
        ),
        "dtype": ({"images": good["images"].astype(np.float32), "labels": [0, 1]}, "uint8"),
        "count": ({"images": good["images"], "labels": [0, 1, 2]}, "2 images but 3 labels"),
        "range": ({"images": good["images"], "labels": [0, 10]}, r"outside \[0, 10\)"),
    }
    for name, (arrays, message) in cases.items():
        d = tmp_path / name
        d.mkdir()
        np.savez(d / "train.npz", **arrays)
        np.savez(d / "test.npz", **good)
        with pytest.raises(DatasetFormatError, match=message):
            load_image_dataset("cifar10", d)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "train.npz").write_bytes(b"PK\x03\x04 definitely not a zip")
    np.savez(corrupt / "test.npz", **good)
    with pytest.raises(DatasetFormatError, match=r"not a readable \.npz"):
        load_image_dataset("cifar10", corrupt)
    half = tmp_path / "half"
    half.mkdir()
    np.savez(half / "train.npz", **good)
    with pytest.raises(DatasetNotFoundError, match=r"test\.npz"):
        load_image_dataset("cifar10", half)


def test_cifar_not_found(tmp_path, no_tfds_download):
    for source in ("files", "auto"):
        with pytest.raises(DatasetNotFoundError, match=r"does not exist|holds no CIFAR-10") as err:
            load_image_dataset("cifar10", tmp_path / "nope", source=source)
        assert "--data-dir" in str(err.value) and "cifar-10-batches-py" in str(err.value)
    with pytest.raises(DatasetNotFoundError, match="neither cifar-10-batches-py"):
        load_image_dataset("cifar10", tmp_path, source="files")


def test_shared_partial_cifar(shared_data):
    d = shared_data / "cifar10"
    if not (d / "cifar10_test_first1017.npz").is_file():
        pytest.skip(f"{d} lacks the partial CIFAR-10 npz files")
    ds = load_image_dataset("cifar10", d)
    assert ds.train_images.shape == (5085, 32, 32, 3) and ds.train_images.dtype == np.uint8
    assert ds.test_images.shape == (1017, 32, 32, 3)
    assert ds.train_labels.dtype == np.int32
    for y in (ds.train_labels, ds.test_labels):
        assert y.min() == 0 and y.max() == 9
    # SOURCE.md: the first test labels of the official set, and the subset class counts.
    assert ds.test_labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert np.bincount(ds.test_labels).tolist() == [105, 93, 100, 104, 92, 87, 114, 102, 110, 110]
    assert np.bincount(ds.train_labels).tolist() == [
        517,
        524,
        490,
        493,
        537,
        475,
        503,
        516,
        529,
        501,
    ]
    with np.load(d / "cifar10_test_first1017.npz") as z:
        np.testing.assert_array_equal(ds.test_images[0], planar_reference(z["data"][0]))
    with np.load(d / "cifar10_train_first1017_per_batch.npz") as z:
        np.testing.assert_array_equal(ds.train_images[-1], planar_reference(z["data"][-1]))
    assert ds.class_names == CIFAR10_CLASSES
    assert "cifar10_train_first1017_per_batch.npz" in ds.source


# ----------------------------------------------------------------------------- digits
def test_digits():
    from sklearn.datasets import load_digits

    ds = load_image_dataset("digits")
    assert len(ds.train_images) + len(ds.test_images) == 1797
    assert len(ds.test_images) == round(0.2 * 1797)
    assert ds.train_images.shape[1:] == (8, 8, 1) and ds.train_images.dtype == np.uint8
    assert ds.train_images.max() == 255 and ds.train_images.min() == 0
    raw = load_digits()
    # Every image appears exactly once across the two splits, with its label, scaled 16 -> 255.
    all_x = np.concatenate([ds.train_images, ds.test_images])[..., 0].reshape(1797, -1)
    all_y = np.concatenate([ds.train_labels, ds.test_labels])
    expected = np.floor(raw.data * 255 / 16 + 0.5).astype(np.uint8)

    # Compare as multisets of (pixels, label): the digits data hold a few duplicate images.
    def rows(xs, ys):
        return sorted(bytes(x) + bytes([y]) for x, y in zip(xs, ys, strict=True))

    assert rows(all_x, all_y) == rows(expected, raw.target)
    # Stratified: each class's test share is within one image of 20%.
    counts = np.bincount(raw.target)
    assert np.all(np.abs(np.bincount(ds.test_labels, minlength=10) - 0.2 * counts) < 1)
    again = load_image_dataset("digits")
    np.testing.assert_array_equal(again.test_images, ds.test_images)
    assert "load_digits" in ds.source


# ----------------------------------------------------------------------------- TFDS
@pytest.mark.parametrize(
    ("name", "tfds_name", "shape"),
    [("fashion-mnist", "fashion_mnist", (28, 28, 1)), ("cifar10", "cifar10", (32, 32, 3))],
)
def test_tfds_data_source_with_mock_data(tmp_path, name, tfds_name, shape, no_tfds_download):
    """tfds.testing.mock_data does mock tfds.data_source (random examples, no files needed)."""
    with tfds.testing.mock_data(num_examples=6):
        ds = load_image_dataset(name, tmp_path, source="tfds")
        direct = tfds.data_source(tfds_name, split="test", data_dir=str(tmp_path), download=False)
        expected_x = np.stack([direct[i]["image"] for i in range(len(direct))])
        expected_y = np.array([direct[i]["label"] for i in range(len(direct))])
    assert ds.train_images.shape == (6, *shape) and ds.train_images.dtype == np.uint8
    assert ds.test_images.shape == (6, *shape)
    assert (
        ds.train_labels.dtype == np.int32
        and 0 <= ds.train_labels.min() <= ds.train_labels.max() < 10
    )
    np.testing.assert_array_equal(ds.test_images, expected_x)
    np.testing.assert_array_equal(ds.test_labels, expected_y)
    assert ds.name == name and f"TFDS {tfds_name}" in ds.source and "data_source" in ds.source


def test_tfds_auto_fallback_and_not_prepared(tmp_path, monkeypatch, no_tfds_download):
    # Not prepared (a real check on an empty data dir): auto and tfds both fail fast.
    assert not img.tfds_is_prepared("fashion_mnist", tmp_path)
    with pytest.raises(DatasetNotFoundError, match="no prepared TFDS fashion_mnist"):
        load_image_dataset("fashion-mnist", tmp_path, source="auto")
    with pytest.raises(DatasetNotFoundError, match="no prepared TFDS cifar10"):
        load_image_dataset("cifar10", tmp_path, source="tfds")
    # "auto" with no files falls back to TFDS when it reports the dataset prepared. (mock_data
    # mocks reading but leaves is_prepared() False, so the check is patched here.)
    monkeypatch.setattr(img, "tfds_is_prepared", lambda *args: True)
    with tfds.testing.mock_data(num_examples=3):
        ds = load_image_dataset("fashion_mnist", tmp_path)
    assert len(ds.train_images) == 3 and "TFDS fashion_mnist" in ds.source
    with pytest.raises(ValueError, match="no TFDS source"):
        load_image_dataset("digits", source="tfds")
