"""Bad input for the data readers (issue 13): hostile pickles, truncated copies of datasets of
known size, non-numeric labels, empty files.

Every bad file is built here in the real on-disk format. A hostile pickle would create a marker
file when unpickled (`os.system("touch ...")` or `pathlib.Path.touch`); each test asserts the
marker never appears and the one-line error names the file and the refused global.
"""

from __future__ import annotations

import collections
import gzip
import io
import logging
import os
import pathlib
import pickle
import shutil
import struct
import tarfile

import numpy as np
import pytest
import scipy.sparse as sp

from jaxnets.cli import main as cli_main
from jaxnets.data import graphs, images, safe_pickle, text
from jaxnets.data.graphs import load_graph_dataset
from jaxnets.data.images import DatasetFormatError, DatasetNotFoundError, load_image_dataset

PLANETOID_PARTS = ("x", "y", "tx", "ty", "allx", "ally", "graph")
CIFAR_PICKLES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")


# ----------------------------------------------------------------------------- hostile pickles
class TouchViaSystem:
    """Unpickling this runs `touch marker` in a shell."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class TouchViaPath:
    """Unpickling this calls pathlib.Path.touch(marker)."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


# The first global each pickle names, the one the allow-list refuses: protocol 2 reaches a
# method through builtins.getattr (written under its python 2 name), protocol 5 names it.
HOSTILE = {
    ("system", 2): (TouchViaSystem, f"{os.system.__module__}.system"),
    ("system", 5): (TouchViaSystem, f"{os.system.__module__}.system"),
    ("touch", 2): (TouchViaPath, "__builtin__.getattr"),
    ("touch", 5): (TouchViaPath, "pathlib.Path.touch"),
}


def write_hostile(path: pathlib.Path, marker: pathlib.Path, how: str, protocol: int, nest: bool):
    cls, refused = HOSTILE[how, protocol]
    payload = cls(marker)
    if nest:  # hidden inside the structure the file should hold
        payload = {b"data": [np.zeros(2, np.uint8), payload], b"labels": [0]}
    path.write_bytes(pickle.dumps(payload, protocol=protocol))
    return refused


def assert_refused(err: pytest.ExceptionInfo, path: pathlib.Path, refused: str, marker):
    message = str(err.value)
    assert f"{path}: refusing to unpickle {refused} (" in message
    assert "\n" not in message
    assert isinstance(err.value, safe_pickle.UnsafePickleError)
    assert isinstance(err.value, DatasetFormatError)
    assert not marker.exists(), "the hostile pickle ran"


# ----------------------------------------------------------------------------- Planetoid
def write_planetoid(folder: pathlib.Path, protocol: int = 2) -> None:
    """A 9-node 'cora' in Planetoid's ind.* layout (protocol 2: python 2 names, as the real
    files: __builtin__.list inside the defaultdict)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    features = (rng.random((9, 5)) < 0.4).astype(np.float32)
    onehot = np.eye(3)[[0, 1, 2, 1, 0, 2, 2, 0, 1]]
    test_order = [8, 6, 7]
    parts = {
        "x": sp.csr_matrix(features[:3]),
        "y": onehot[:3],
        "allx": sp.csr_matrix(features[:6]),
        "ally": onehot[:6],
        "tx": sp.csr_matrix(features[test_order]),
        "ty": onehot[test_order],
        "graph": collections.defaultdict(list, {0: [1, 2], 1: [0], 2: [0], 6: [8], 8: [6]}),
    }
    for name, obj in parts.items():
        (folder / f"ind.cora.{name}").write_bytes(pickle.dumps(obj, protocol=protocol))
    (folder / "ind.cora.test.index").write_text("".join(f"{i}\n" for i in test_order))


@pytest.mark.parametrize("part", PLANETOID_PARTS)
@pytest.mark.parametrize(("how", "protocol"), list(HOSTILE))
def test_planetoid_pickles_cannot_run_code(tmp_path, part, how, protocol):
    folder, marker = tmp_path / "planetoid", tmp_path / "marker"
    write_planetoid(folder)
    assert len(load_graph_dataset("cora", tmp_path).labels) == 9  # the clean files load
    path = folder / f"ind.cora.{part}"
    refused = write_hostile(path, marker, how, protocol, nest=part == "graph")
    with pytest.raises(DatasetFormatError) as err:
        load_graph_dataset("cora", tmp_path)
    assert_refused(err, path, refused, marker)
    assert "Planetoid files may only hold arrays, sparse matrices and dicts" in str(err.value)


def test_planetoid_hostile_file_through_the_cli(tmp_path, capsys):
    folder, marker = tmp_path / "planetoid", tmp_path / "marker"
    write_planetoid(folder)
    write_hostile(folder / "ind.cora.graph", marker, "system", 2, nest=False)
    assert cli_main(["data", "info", "cora", "--data-dir", str(tmp_path)]) == 2
    out = capsys.readouterr().out.strip()
    assert out == (
        f"error: {folder / 'ind.cora.graph'}: refusing to unpickle {os.system.__module__}.system "
        "(Planetoid files may only hold arrays, sparse matrices and dicts)"
    )
    assert not marker.exists()


@pytest.mark.parametrize(
    ("part", "obj", "message"),
    [
        ("graph", 7, r"ind\.cora\.graph: expected an adjacency dict .* got int$"),
        ("graph", {0: 5}, r"ind\.cora\.graph: expected node ids mapped to lists of node ids"),
        ("x", [1, 2, 3], r"ind\.cora\.x: expected a feature matrix .* got list$"),
        ("ally", np.zeros(6), r"ind\.cora\.ally: expected a 2-D one-hot array, got ndarray"),
        ("tx", sp.csr_matrix(np.ones((3, 4))), r"tx \(3, 4\) / ty \(3, 3\) have other columns"),
    ],
)
def test_planetoid_wrong_types_are_clear_errors(tmp_path, part, obj, message):
    write_planetoid(tmp_path)
    (tmp_path / f"ind.cora.{part}").write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(DatasetFormatError, match=message) as err:
        load_graph_dataset("cora", tmp_path)
    assert "\n" not in str(err.value)


def test_real_cora_still_loads_through_the_allow_list(shared_data):
    folder = shared_data / "planetoid"
    if not (folder / "ind.cora.graph").is_file():
        pytest.skip(f"{folder} lacks the Cora files")
    ds = load_graph_dataset("cora", shared_data)
    assert (ds.num_nodes, ds.num_features, ds.num_classes) == (2708, 1433, 7)
    assert ds.num_undirected_edges() == 5278


def test_safe_pickle_allow_list():
    assert safe_pickle.NUMPY_GLOBALS <= graphs.PLANETOID_PICKLE_GLOBALS
    assert ("builtins", "eval") not in graphs.PLANETOID_PICKLE_GLOBALS
    assert images.CIFAR10_PICKLE_GLOBALS == safe_pickle.NUMPY_GLOBALS  # no scipy, no dicts


# ----------------------------------------------------------------------------- CIFAR-10
def write_cifar(directory: pathlib.Path, per_batch: int = 3, meta: dict | None = None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for name in CIFAR_PICKLES[:-1]:
        batch = {
            b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
        }
        (directory / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = meta or {b"label_names": [c.encode() for c in images.CIFAR10_CLASSES]}
    (directory / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))


@pytest.mark.parametrize("name", CIFAR_PICKLES)
@pytest.mark.parametrize(("how", "protocol"), list(HOSTILE))
def test_cifar_pickles_cannot_run_code(tmp_path, name, how, protocol):
    directory, marker = tmp_path / "cifar-10-batches-py", tmp_path / "marker"
    write_cifar(directory)
    assert len(load_image_dataset("cifar10", tmp_path).train_images) == 15
    path = directory / name
    refused = write_hostile(path, marker, how, protocol, nest=name != "batches.meta")
    with pytest.raises(DatasetFormatError) as err:
        load_image_dataset("cifar10", tmp_path)
    assert_refused(err, path, refused, marker)
    assert "CIFAR-10 batches may only hold dicts, lists, bytes and numpy arrays" in str(err.value)


def test_npz_object_arrays_are_never_unpickled(tmp_path):
    """.npz/.npy readers (CIFAR-10, `jaxnets submit --images`) use allow_pickle=False: an object
    array (a pickle inside the archive) is refused unread."""
    from jaxnets.submission import _load_images

    marker = tmp_path / "marker"
    hostile = np.array([TouchViaSystem(marker)], dtype=object)
    good = {"images": np.zeros((2, 32, 32, 3), np.uint8), "labels": np.array([0, 1])}
    np.savez(tmp_path / "train.npz", images=hostile, labels=np.array([0]))
    np.savez(tmp_path / "test.npz", **good)
    with pytest.raises(DatasetFormatError, match=r"train\.npz: not a readable \.npz"):
        load_image_dataset("cifar10", tmp_path)
    np.save(tmp_path / "images.npy", hostile)
    with pytest.raises(ValueError, match="allow_pickle"):
        _load_images(tmp_path / "images.npy")
    assert not marker.exists()


def test_torch_weights_are_read_with_weights_only(tmp_path):
    torch = pytest.importorskip("torch")
    from jaxnets.models.torch_import import load_state_dict

    marker = tmp_path / "marker"
    torch.save({"w": torch.zeros(2), "evil": TouchViaSystem(marker)}, tmp_path / "w.pt")
    with pytest.raises(pickle.UnpicklingError):
        load_state_dict(tmp_path / "w.pt")
    assert not marker.exists()


# ----------------------------------------------------------------------------- IMDB counts
def _tar_members(per_label: dict[str, int], order=("test", "train")) -> list[tarfile.TarInfo]:
    """Sorted aclImdb members, as the shared archive (test before train, neg before pos)."""
    names = ["aclImdb/README"]
    for split in order:
        for label in ("neg", "pos"):
            rating = 8 if label == "pos" else 2
            ids = sorted(range(per_label[f"{split}/{label}"]), key=str)  # tar's name order
            names += [f"aclImdb/{split}/{label}/{i}_{rating}.txt" for i in ids]
    return [tarfile.TarInfo(n) for n in names]


def _cut_archive(path: pathlib.Path, members: list[tarfile.TarInfo], keep: int) -> None:
    """Write the tar, cut it exactly before member `keep` (no end-of-archive blocks: tarfile
    reads it without complaint) and gzip what is left."""
    buf = io.BytesIO()
    offsets = []
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for info in members:
            offsets.append(buf.tell())
            body = f"review {info.name}".encode()
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    raw = buf.getvalue()
    path.write_bytes(gzip.compress(raw[: offsets[keep]] if keep < len(members) else raw, 1))


def test_truncated_imdb_archive_is_refused_at_real_size(tmp_path):
    """The issue's archive: train/neg whole, train/pos cut after 8,532 reviews."""
    members = _tar_members({"train/neg": 12_500, "train/pos": 12_500}, order=("train",))
    path = tmp_path / "aclImdb_v1.tar.gz"
    _cut_archive(path, members, keep=1 + 12_500 + 8_532)
    with pytest.raises(DatasetFormatError) as err:
        text.load_imdb(tmp_path)
    assert str(err.value) == (
        f"{path}: train has 21,032 reviews (8,532 positive), IMDB has 25,000 (12,500 a label); "
        "the archive looks truncated"
    )


def test_truncated_imdb_archive_and_folder_tiny(tmp_path, monkeypatch):
    """The same check on a tiny 'full' IMDB of 4 reviews a label: complete, it loads; cut at
    any member boundary after the first folder, it is refused."""
    monkeypatch.setattr(text, "IMDB_REVIEWS_PER_LABEL", 4)
    members = _tar_members({f"{s}/{lab}": 4 for s in ("train", "test") for lab in ("neg", "pos")})
    whole = tmp_path / "whole" / "aclImdb_labeled.tar.gz"
    whole.parent.mkdir()
    _cut_archive(whole, members, keep=len(members))
    splits = text.load_imdb(whole.parent, val_fraction=0.25)
    assert len(splits.test_texts) == 8 and len(splits.train_texts) + len(splits.val_texts) == 8
    for keep in (6, 9, 10, 14, 16):  # inside test/pos, at test/pos|train/neg, inside train/...
        cut = tmp_path / f"cut{keep}" / "aclImdb_labeled.tar.gz"
        cut.parent.mkdir()
        _cut_archive(cut, members, keep=keep)
        with pytest.raises(DatasetFormatError, match="the archive looks truncated"):
            text.load_imdb(cut.parent)
    # An extracted folder missing some reviews: the same message, for a folder.
    with tarfile.open(whole) as tar:
        tar.extractall(tmp_path / "folder", filter="data")
    (tmp_path / "folder" / "aclImdb" / "test" / "pos" / "3_8.txt").unlink()
    with pytest.raises(DatasetFormatError) as err:
        text.load_imdb(tmp_path / "folder")
    assert str(err.value).endswith(
        "aclImdb: test has 7 reviews (3 positive), IMDB has 8 (4 a label); the folder looks "
        "truncated"
    )


def test_real_imdb_size_is_the_default():
    assert text.IMDB_REVIEWS_PER_LABEL == 12_500


# ----------------------------------------------------------------------------- IDX counts
def idx(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    return struct.pack(">i", magic) + struct.pack(f">{len(dims)}I", *dims) + payload


def write_fashion(directory, n_train, n_test, label_counts=None, hw=(1, 1)):
    """Fashion-MNIST IDX files with `n` images of hw pixels (1x1 keeps full-size counts cheap)."""
    directory.mkdir(parents=True, exist_ok=True)
    label_counts = label_counts or {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        m = label_counts.get(prefix, n)
        pixels = np.zeros((n, *hw), np.uint8)
        (directory / f"{prefix}-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(idx(2051, pixels.shape, pixels.tobytes()), 1)
        )
        labels = (np.arange(m) % 10).astype(np.uint8)
        (directory / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(
            gzip.compress(idx(2049, labels.shape, labels.tobytes()), 1)
        )


def test_fashion_mnist_partly_full_size_is_refused(tmp_path):
    write_fashion(tmp_path / "ok", 60_000, 10_000)
    assert (
        load_image_dataset("fashion-mnist", tmp_path / "ok")
        .describe()
        .startswith("fashion-mnist: 60000 train / 10000 test images 1x1x1")
    )
    write_fashion(tmp_path / "small", 50, 20)  # a consistent sample passes
    assert len(load_image_dataset("fashion-mnist", tmp_path / "small").test_images) == 20
    write_fashion(tmp_path / "cut", 60_000, 7_000)  # test files re-written with 7,000
    with pytest.raises(DatasetFormatError) as err:
        load_image_dataset("fashion-mnist", tmp_path / "cut")
    assert str(err.value) == (
        f"{tmp_path / 'cut' / 't10k-images-idx3-ubyte.gz'}: 7,000 test images, but the full "
        "Fashion-MNIST has 10,000 (other files here are complete); the file looks truncated or "
        "comes from another dataset"
    )
    write_fashion(tmp_path / "labels", 60_000, 10_000, label_counts={"train": 59_000})
    with pytest.raises(DatasetFormatError, match=r"train-labels-idx1-ubyte\.gz: 59,000 train"):
        load_image_dataset("fashion-mnist", tmp_path / "labels")


@pytest.mark.parametrize(
    ("empty", "message"),
    [
        ("t10k-images-idx3-ubyte.gz", "holds 0 images"),
        ("train-labels-idx1-ubyte.gz", "holds 0 labels"),
    ],
)
def test_idx_holding_zero_images(tmp_path, empty, message):
    write_fashion(tmp_path, 5, 3, hw=(28, 28))
    magic, dims = (2051, (0, 28, 28)) if "images" in empty else (2049, (0,))
    (tmp_path / empty).write_bytes(gzip.compress(idx(magic, dims, b"")))
    with pytest.raises(DatasetFormatError) as err:
        load_image_dataset("fashion-mnist", tmp_path)
    assert str(err.value) == f"{tmp_path / empty}: {message}"


def test_empty_split_from_any_source_is_refused():
    """npz and TFDS data reach ImageSplits too: an empty split stops there, not in training."""
    one, empty = np.zeros((1, 32, 32, 3), np.uint8), np.zeros((0, 32, 32, 3), np.uint8)
    classes = list(images.CIFAR10_CLASSES)
    with pytest.raises(DatasetFormatError, match=r"^cifar10: no test images \(somewhere\)$"):
        images.ImageSplits(one, np.zeros(1), empty, np.zeros(0), classes, "somewhere", "cifar10")


# ----------------------------------------------------------------------------- CIFAR counts
def test_cifar_batches_must_hold_what_batches_meta_declares(tmp_path):
    meta = {b"label_names": [c.encode() for c in images.CIFAR10_CLASSES]}
    write_cifar(tmp_path / "ok", per_batch=3, meta={**meta, b"num_cases_per_batch": 3})
    assert len(load_image_dataset("cifar10", tmp_path / "ok").test_images) == 3
    d = tmp_path / "cut"
    write_cifar(d, per_batch=3, meta={**meta, b"num_cases_per_batch": 3})
    batch = pickle.loads((d / "data_batch_4").read_bytes())
    batch[b"data"], batch[b"labels"] = batch[b"data"][:2], batch[b"labels"][:2]
    (d / "data_batch_4").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DatasetFormatError) as err:
        load_image_dataset("cifar10", d)
    assert str(err.value) == (
        f"{d / 'data_batch_4'}: 2 images, but {d / 'batches.meta'} says each batch holds 3; "
        "the batch looks truncated"
    )


def test_cifar_npz_partly_full_size_is_refused(tmp_path, monkeypatch):
    # 50,000 real-size images would be 150 MB: stand in a tiny "full" CIFAR-10 of 6 + 4.
    monkeypatch.setattr(images, "CIFAR10_SIZES", {"train": 6, "test": 4})
    x = np.zeros((6, 32, 32, 3), np.uint8)
    np.savez(tmp_path / "train.npz", images=x, labels=np.arange(6))
    np.savez(tmp_path / "test.npz", images=x[:3], labels=np.arange(3))
    with pytest.raises(DatasetFormatError, match=r"test\.npz: 3 test images, but the full CIFAR"):
        load_image_dataset("cifar10", tmp_path)
    np.savez(tmp_path / "test.npz", images=x[:4], labels=np.arange(4))
    assert len(load_image_dataset("cifar10", tmp_path).test_images) == 4


def test_shared_partial_cifar_loads_and_says_it_is_partial(shared_data):
    d = shared_data / "cifar10"
    if not (d / "cifar10_test_first1017.npz").is_file():
        pytest.skip(f"{d} lacks the partial CIFAR-10 npz files")
    ds = load_image_dataset("cifar10", d)
    assert (len(ds.train_images), len(ds.test_images)) == (5085, 1017)
    assert ds.source.endswith(
        "[PARTIAL copy: 5,085 of 50,000 train images, 1,017 of 10,000 test images]"
    )


# ----------------------------------------------------------------------------- graph counts
def _copy(src: pathlib.Path, dst: pathlib.Path) -> pathlib.Path:
    if not src.is_dir():
        pytest.skip(f"{src} is absent")
    shutil.copytree(src, dst)
    for p in dst.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)  # the shared copy is read-only
    return dst


@pytest.mark.filterwarnings("ignore:Please import `csr_matrix`:DeprecationWarning")
def test_cora_with_a_short_part_is_refused(shared_data, tmp_path):
    d = _copy(shared_data / "planetoid", tmp_path / "planetoid")
    allx = pickle.loads((d / "ind.cora.allx").read_bytes(), encoding="latin1")
    (d / "ind.cora.allx").write_bytes(pickle.dumps(allx[:1500], protocol=2))
    with pytest.raises(DatasetFormatError) as err:
        load_graph_dataset("cora", tmp_path)
    assert str(err.value).startswith(
        f"{d / 'ind.cora.allx'}: 1,500 rows, but the full Cora has 1,708 (other files here are "
        "complete)"
    )


def test_enzymes_edge_list_cut_at_a_line_break_is_refused(shared_data, tmp_path):
    d = _copy(shared_data / "enzymes", tmp_path / "enzymes")
    lines = (d / "ENZYMES_A.txt").read_text().splitlines(keepends=True)
    (d / "ENZYMES_A.txt").write_text("".join(lines[:70_000]))
    with pytest.raises(DatasetFormatError, match=r"ENZYMES_A\.txt: 70,000 edge entries, but the "):
        load_graph_dataset("enzymes", tmp_path)


def test_ogb_split_cut_and_regzipped_is_refused(shared_data, tmp_path):
    d = _copy(shared_data / "ogb" / "ogbg_molbace", tmp_path / "ogbg_molbace")
    path = d / "split" / "scaffold" / "train.csv.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines(keepends=True)
    path.write_bytes(gzip.compress("".join(lines[:1000]).encode()))
    with pytest.raises(DatasetFormatError) as err:
        load_graph_dataset("ogbg-molbace", tmp_path)
    assert str(err.value).startswith(
        f"{path}: 1,000 train ids, but the full ogbg-molbace has 1,210 (other files here are "
        "complete)"
    )


def _gz(path: pathlib.Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress("".join(",".join(map(str, r)) + "\n" for r in rows).encode()))


def write_ogbg(root: pathlib.Path, labels) -> pathlib.Path:
    folder = root / "ogbg_moltoy"
    _gz(folder / "raw" / "num-node-list.csv.gz", [[2], [2], [2]])
    _gz(folder / "raw" / "num-edge-list.csv.gz", [[1], [1], [1]])
    _gz(folder / "raw" / "edge.csv.gz", [[0, 1]] * 3)
    _gz(folder / "raw" / "node-feat.csv.gz", [[5, 0, 1, 5, 0, 0, 1, 0, 0]] * 6)
    _gz(folder / "raw" / "graph-label.csv.gz", labels)
    for split, idx_ in (("train", [0, 1]), ("valid", [2]), ("test", [2])):
        _gz(folder / "split" / "scaffold" / f"{split}.csv.gz", [[i] for i in idx_])
    return folder


def test_ogb_label_that_is_not_a_number_is_refused(tmp_path):
    ds = load_graph_dataset("ogbg-moltoy", write_ogbg(tmp_path / "ok", [[1, ""], [0, 1], ["", 0]]))
    assert np.isnan(ds.labels[0, 1]) and np.isnan(ds.labels[2, 0])  # empty cells: missing
    folder = write_ogbg(tmp_path / "bad", [[1, 0], ["yes", 1], [0, ""]])
    with pytest.raises(DatasetFormatError) as err:
        load_graph_dataset("ogbg-moltoy", folder)
    assert str(err.value) == (
        f"{folder / 'raw' / 'graph-label.csv.gz'}: row 2, column 1 holds 'yes', not a number "
        "(only an empty cell marks a missing label)"
    )


# ----------------------------------------------------------------------------- TFDS probing
def test_missing_fashion_mnist_logs_no_absl_warning(tmp_path, caplog):
    """TFDS reports "Variant folder ... has no dataset_info.json" through absl while jaxnets
    only asks whether the dataset is prepared; the user gets the not-found message alone."""
    pytest.importorskip("tensorflow_datasets")
    with caplog.at_level(logging.DEBUG):
        for data_dir in (tmp_path, tmp_path / "nonexistent"):
            with pytest.raises(DatasetNotFoundError, match="Fashion-MNIST not found"):
                load_image_dataset("fashion-mnist", data_dir)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
