"""Image-classification datasets as uint8 NHWC arrays: scikit-learn digits, Fashion-MNIST, CIFAR-10.

Readers for the formats the data ships in (IDX, CIFAR's python pickles, .npz) and an adapter for
data already prepared by TFDS. Nothing here downloads: missing data fails at once with a
`DatasetNotFoundError` that says how to get it. Every `ImageSplits` records in `source` which files
or which TFDS dataset it came from, so a run's log says what it trained on.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import math
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxnets.data import safe_pickle
from jaxnets.data.errors import (
    Count,
    DatasetFormatError,
    DatasetNotFoundError,
    check_known_counts,
)
from jaxnets.data.pipeline import stratified_split_indices

DATASETS = ("digits", "fashion-mnist", "cifar10", "images")
_ALIASES = {
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "cifar-10": "cifar10",
    "image-folder": "images",
    "image_folder": "images",
}
SOURCES = ("auto", "files", "tfds")

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
CIFAR10_PICKLE_DIR = "cifar-10-batches-py"
# Published sizes, to tell the full datasets from truncated copies (see check_known_counts).
FASHION_MNIST_SIZES = {"train": 60_000, "test": 10_000}
CIFAR10_SIZES = {"train": 50_000, "test": 10_000}
CIFAR10_BATCH_SIZE = 10_000  # each of data_batch_1..5 and test_batch
IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC = 2051, 2049  # 0x0803: ubyte, 3 dims; 0x0801: ubyte, 1 dim

_FASHION_HELP = f"""
How to get Fashion-MNIST (nothing is downloaded automatically):
  * Debian/Ubuntu: `sudo apt-get install dataset-fashion-mnist` installs the IDX files in
    {FASHION_MNIST_DIR}, the default directory;
  * or pass `--data-dir DIR`, DIR holding the four IDX files (gzipped or not) from
    https://github.com/zalandoresearch/fashion-mnist:
    {", ".join(f + ".gz" for f in FASHION_MNIST_FILES.values())};
  * or with TFDS, on a machine with internet: `tfds build fashion_mnist --file_format=array_record
    --data_dir DIR` (or tfds.data_source("fashion_mnist", data_dir=DIR) there), copy DIR here and
    pass `--data-dir DIR`."""

_CIFAR_HELP = f"""
How to get CIFAR-10 (nothing is downloaded automatically):
  * pass `--data-dir DIR`, DIR holding `{CIFAR10_PICKLE_DIR}` (data_batch_1..5, test_batch,
    batches.meta, from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz), or a pair of
    .npz files (train.npz/test.npz or cifar10_train*.npz/cifar10_test*.npz) with uint8 `images`
    [N,32,32,3] or `data` [N,3072] (CIFAR's planar layout) and `labels`, or an image folder
    (train/<class>/*.png|jpg, test/<class>/*, or a .tar/.tar.gz of it);
  * or with TFDS, on a machine with internet: `tfds build cifar10 --file_format=array_record
    --data_dir DIR`, copy DIR here and pass `--data-dir DIR`."""


@dataclass
class ImageSplits:
    """Train and test images (uint8 NHWC) with int32 labels, their class names and provenance."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: list[str]
    source: str
    name: str
    # Each image's file, relative to its folder, for data read file by file (image folders): what
    # maps a split's order back to the files. None for data that comes in arrays.
    train_files: tuple[str, ...] | None = None
    test_files: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for part in ("train", "test"):
            x, y = getattr(self, f"{part}_images"), getattr(self, f"{part}_labels")
            files = getattr(self, f"{part}_files")
            if files is not None and len(files) != len(x):
                raise DatasetFormatError(
                    f"{self.name}: {len(x)} {part} images but {len(files)} file names"
                )
            if x.dtype != np.uint8 or x.ndim != 4:
                raise DatasetFormatError(
                    f"{self.name}: {part} images must be uint8 NHWC, got {x.dtype} {x.shape}"
                )
            if y.ndim != 1 or len(y) != len(x):
                raise DatasetFormatError(
                    f"{self.name}: {len(x)} {part} images but {y.shape} labels ({self.source})"
                )
            if len(x) == 0:  # fail here, not with a shape error deep inside training
                raise DatasetFormatError(f"{self.name}: no {part} images ({self.source})")
            if len(y) and (y.min() < 0 or y.max() >= len(self.class_names)):
                raise DatasetFormatError(
                    f"{self.name}: {part} labels span [{y.min()}, {y.max()}], outside "
                    f"[0, {len(self.class_names)}) ({self.source})"
                )
            setattr(self, f"{part}_labels", y.astype(np.int32, copy=False))
        if self.train_images.shape[1:] != self.test_images.shape[1:]:
            raise DatasetFormatError(
                f"{self.name}: train images {self.train_images.shape[1:]} and test images "
                f"{self.test_images.shape[1:]} differ in shape ({self.source})"
            )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.train_images.shape[1:]

    def describe(self) -> str:
        """One line for the run log."""
        h, w, c = self.image_shape
        return (
            f"{self.name}: {len(self.train_images)} train / {len(self.test_images)} test images "
            f"{h}x{w}x{c}, {self.num_classes} classes, from {self.source}"
        )


def load_image_dataset(
    name: str,
    data_dir: str | Path | None = None,
    source: str = "auto",
    *,
    image_size: int | None = None,
) -> ImageSplits:
    """Load "digits", "fashion-mnist" (alias "fashion_mnist"), "cifar10" or "images" (an image
    folder: `jaxnets.data.image_folder`) from local data.

    source: "files" reads the raw files in `data_dir` (Fashion-MNIST defaults to
    /usr/share/datasets/fashion-mnist); "tfds" reads a prepared TFDS dataset with
    `tfds.data_source` (TFDS's default data dir when `data_dir` is None); "auto" tries files, then
    prepared TFDS, then raises `DatasetNotFoundError`. TFDS is never asked to download. CIFAR-10's
    files may also be an image folder of it (the JPEG copy in ../shared/data/cifar10-jpeg).
    image_size: "images" only: resize every image to image_size x image_size.
    """
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in DATASETS:
        known = ", ".join(DATASETS + tuple(_ALIASES))
        raise ValueError(f"unknown image dataset {name!r}; known names: {known}")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    if key == "images":
        return _load_images(data_dir, source, image_size)
    if image_size is not None:
        raise ValueError(f'image_size resizes image folders ("images"), not {name!r}')
    if key == "digits":
        if source == "tfds":
            raise ValueError("digits ships with scikit-learn; there is no TFDS source for it")
        return load_digits()
    if key == "fashion-mnist":
        return _load_fashion_mnist(data_dir, source)
    return _load_cifar10(data_dir, source)


# ----------------------------------------------------------------------------- digits
def load_digits(test_fraction: float = 0.2, seed: int = 0) -> ImageSplits:
    """scikit-learn's 8x8 digits (1797 images): values 0..16 scaled to 0..255, stratified split."""
    import sklearn
    from sklearn.datasets import load_digits as sk_load_digits

    digits = sk_load_digits()
    images = np.rint(digits.images * (255 / 16)).astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int32)
    tr, te = stratified_split_indices(labels, test_fraction, seed)
    return ImageSplits(
        train_images=images[tr],
        train_labels=labels[tr],
        test_images=images[te],
        test_labels=labels[te],
        class_names=[str(d) for d in range(10)],
        source=f"scikit-learn {sklearn.__version__} load_digits(), stratified "
        f"{1 - test_fraction:.0%}/{test_fraction:.0%} split, seed {seed}",
        name="digits",
    )


# ----------------------------------------------------------------------------- IDX
_IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_maybe_gzip(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":  # the gzip magic; decide by content, not by file name
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetFormatError(f"{path}: corrupt or truncated gzip data ({exc})") from exc


def read_idx(path: str | Path, expected_magic: int | None = None) -> np.ndarray:
    """Parse one IDX file (gzipped or not) into a native-endian numpy array.

    Header: a big-endian int32 magic number 0x0000TTNN (TT the element type, NN the number of
    dimensions), then NN big-endian uint32 sizes, then the data. The data size must match exactly.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"missing IDX file {path}")
    raw = _read_maybe_gzip(path)
    if len(raw) < 4:
        raise DatasetFormatError(f"{path}: {len(raw)} bytes is too short for an IDX header")
    magic = struct.unpack(">i", raw[:4])[0]
    if expected_magic is not None and magic != expected_magic:
        raise DatasetFormatError(
            f"{path}: bad IDX magic number {magic} (0x{magic & 0xFFFFFFFF:08x}), expected "
            f"{expected_magic} (0x{expected_magic:08x}); is this the right file?"
        )
    code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    if magic >> 16 != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise DatasetFormatError(f"{path}: not an IDX file (magic number 0x{magic:08x})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetFormatError(f"{path}: truncated IDX header ({len(raw)} bytes)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[code])
    want, got = math.prod(dims) * dtype.itemsize, len(raw) - header
    if got != want:
        raise DatasetFormatError(
            f"{path}: header says shape {dims} = {want} data bytes but the file holds {got} "
            f"({'truncated' if got < want else 'trailing bytes'})"
        )
    # astype copies into a writable, native-endian array (frombuffer alone is read-only).
    return np.frombuffer(raw, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _idx_path(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def load_fashion_mnist_idx(directory: str | Path = FASHION_MNIST_DIR) -> ImageSplits:
    """Fashion-MNIST from the four standard IDX files in `directory`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetNotFoundError(
            f"Fashion-MNIST directory {directory} does not exist.{_FASHION_HELP}"
        )
    paths = {key: _idx_path(directory, stem) for key, stem in FASHION_MNIST_FILES.items()}
    missing = [FASHION_MNIST_FILES[k] for k, p in paths.items() if p is None]
    if missing:
        names = ", ".join(f"{m}.gz (or {m})" for m in missing)
        raise DatasetNotFoundError(
            f"{directory} lacks Fashion-MNIST file(s) {names}.{_FASHION_HELP}"
        )
    arrays, counts = {}, []
    for key, path in paths.items():
        images = key.endswith("images")
        arrays[key] = read_idx(path, IDX_IMAGES_MAGIC if images else IDX_LABELS_MAGIC)
        what = "images" if images else "labels"
        if len(arrays[key]) == 0:
            raise DatasetFormatError(f"{path}: holds 0 {what}")
        split = key.split("_")[0]
        counts.append(
            Count(str(path), f"{split} {what}", len(arrays[key]), FASHION_MNIST_SIZES[split])
        )
    # The IDX header already vouches for each file's length; this catches a file cut short and
    # given a new header, or one swapped in from a smaller set, next to full-size ones.
    check_known_counts("the full Fashion-MNIST", counts)
    return ImageSplits(
        train_images=arrays["train_images"][..., None],
        train_labels=arrays["train_labels"],
        test_images=arrays["test_images"][..., None],
        test_labels=arrays["test_labels"],
        class_names=list(FASHION_MNIST_CLASSES),
        source="IDX files " + ", ".join(str(p) for p in paths.values()),
        name="fashion-mnist",
    )


def _load_fashion_mnist(data_dir: str | Path | None, source: str) -> ImageSplits:
    directory = Path(data_dir) if data_dir is not None else FASHION_MNIST_DIR
    if source == "files":
        return load_fashion_mnist_idx(directory)
    if source == "tfds":
        return load_tfds("fashion_mnist", data_dir, "fashion-mnist", FASHION_MNIST_CLASSES)
    stems = FASHION_MNIST_FILES.values()
    if directory.is_dir() and any(_idx_path(directory, s) for s in stems):
        return load_fashion_mnist_idx(directory)  # names any file that is missing
    if tfds_is_prepared("fashion_mnist", data_dir):
        return load_tfds("fashion_mnist", data_dir, "fashion-mnist", FASHION_MNIST_CLASSES)
    state = "does not exist" if not directory.is_dir() else "holds no IDX files"
    raise DatasetNotFoundError(
        f"Fashion-MNIST not found: {directory} {state}, and no prepared TFDS fashion_mnist in "
        f"{_tfds_dir_name(data_dir)}.{_FASHION_HELP}"
    )


# ----------------------------------------------------------------------------- CIFAR-10
# A CIFAR batch holds dicts, lists, bytes and numpy arrays: nothing else may be unpickled.
CIFAR10_PICKLE_GLOBALS = safe_pickle.NUMPY_GLOBALS


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise DatasetNotFoundError(f"missing CIFAR-10 file {path}.{_CIFAR_HELP}")
    obj = safe_pickle.load(
        path,
        CIFAR10_PICKLE_GLOBALS,
        encoding="bytes",
        kind="CIFAR-10 batch",
        allowed_desc="CIFAR-10 batches may only hold dicts, lists, bytes and numpy arrays",
    )
    if not isinstance(obj, dict):
        raise DatasetFormatError(f"{path}: expected a dict, got {type(obj).__name__}")
    # Keys are bytes in the original python-2 pickles; accept str keys from re-pickled copies.
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _planar_to_nhwc(data: np.ndarray, where: str) -> np.ndarray:
    """CIFAR rows (1024 R, 1024 G, 1024 B, each 32x32 row-major) -> uint8 [N, 32, 32, 3]."""
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DatasetFormatError(
            f"{where}: `data` must be uint8 [N, 3072], got {data.dtype} {data.shape}"
        )
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def _labels(values: object, count: int, where: str) -> np.ndarray:
    labels = np.asarray(values)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetFormatError(
            f"{where}: labels must be 1-D integers, got {labels.dtype} {labels.shape}"
        )
    if len(labels) != count:
        raise DatasetFormatError(f"{where}: {count} images but {len(labels)} labels")
    return labels.astype(np.int32)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    for key in ("data", "labels"):
        if key not in batch:
            raise DatasetFormatError(f"{path}: no {key!r} entry (keys: {sorted(map(str, batch))})")
    images = _planar_to_nhwc(np.asarray(batch["data"]), str(path))
    return images, _labels(batch["labels"], len(images), str(path))


def _cifar_meta(directory: Path) -> dict:
    meta = directory / "batches.meta"
    return _unpickle(meta) if meta.is_file() else {}


def _cifar_class_names(directory: Path, meta: dict | None = None) -> tuple[list[str], str]:
    meta = _cifar_meta(directory) if meta is None else meta
    if not meta:
        return list(CIFAR10_CLASSES), ""
    names = meta.get("label_names")
    if not isinstance(names, list) or len(names) != 10:
        raise DatasetFormatError(
            f"{directory / 'batches.meta'}: expected 10 label_names, got {names!r}"
        )
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    return names, f", {directory / 'batches.meta'}"


def _check_cifar_batch_sizes(directory: Path, sizes: dict[str, int], meta: dict) -> None:
    """Every python batch of the real CIFAR-10 holds 10,000 images, as batches.meta says."""
    declared = meta.get("num_cases_per_batch")
    if isinstance(declared, int):  # the original batches.meta declares it: hold files to it
        for name, n in sizes.items():
            if n != declared:
                raise DatasetFormatError(
                    f"{directory / name}: {n:,} images, but {directory / 'batches.meta'} says "
                    f"each batch holds {declared:,}; the batch looks truncated"
                )
    counts = [Count(str(directory / k), "images", n, CIFAR10_BATCH_SIZE) for k, n in sizes.items()]
    check_known_counts("a full CIFAR-10 batch", counts)


def load_cifar10_pickles(directory: str | Path) -> ImageSplits:
    """CIFAR-10 from the original `cifar-10-batches-py` directory (or its parent)."""
    directory = Path(directory)
    if (directory / CIFAR10_PICKLE_DIR).is_dir():
        directory = directory / CIFAR10_PICKLE_DIR
    train = [_read_cifar_batch(directory / f"data_batch_{i}") for i in range(1, 6)]
    test_images, test_labels = _read_cifar_batch(directory / "test_batch")
    meta_dict = _cifar_meta(directory)
    sizes = {f"data_batch_{i}": len(x) for i, (x, _) in enumerate(train, 1)}
    _check_cifar_batch_sizes(directory, {**sizes, "test_batch": len(test_images)}, meta_dict)
    names, meta = _cifar_class_names(directory, meta_dict)
    return ImageSplits(
        train_images=np.concatenate([x for x, _ in train]),
        train_labels=np.concatenate([y for _, y in train]),
        test_images=test_images,
        test_labels=test_labels,
        class_names=names,
        source=f"CIFAR-10 python batches {directory}/{{data_batch_1..5, test_batch}}{meta}",
        name="cifar10",
    )


def _read_cifar_npz(path: Path) -> tuple[np.ndarray, np.ndarray, int | None]:
    """(images, labels, the size of the full split when the file says it holds only part)."""
    if not path.is_file():
        raise DatasetNotFoundError(f"missing CIFAR-10 file {path}.{_CIFAR_HELP}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k in ("images", "data", "labels")}
            keys = list(z.files)
            # A partial copy can carry the full split's labels (all_train_labels, [5, 10000],
            # in ../shared/data/cifar10): their count is the size of the split it was cut from.
            full = [z[k].size for k in z.files if k.startswith("all_") and k.endswith("labels")]
    except Exception as exc:  # BadZipFile, truncated member, pickled object arrays, ...
        raise DatasetFormatError(f"{path}: not a readable .npz file ({exc!r})") from exc
    if "labels" not in arrays or not ({"images", "data"} & arrays.keys()):
        raise DatasetFormatError(
            f"{path}: expected `labels` and either `images` [N,32,32,3] or `data` [N,3072], "
            f"found keys {keys}"
        )
    if "images" in arrays:
        images = arrays["images"]
        if images.dtype != np.uint8 or images.shape[1:] != (32, 32, 3):
            raise DatasetFormatError(
                f"{path}: `images` must be uint8 [N, 32, 32, 3], got {images.dtype} {images.shape}"
            )
    else:
        images = _planar_to_nhwc(arrays["data"], str(path))
    return images, _labels(arrays["labels"], len(images), str(path)), (max(full) if full else None)


def _find_cifar_npz(directory: Path) -> tuple[Path, Path] | None:
    """The (train, test) .npz pair in `directory`, or None when it holds neither."""
    if (directory / "train.npz").is_file() or (directory / "test.npz").is_file():
        return directory / "train.npz", directory / "test.npz"
    train, test = (
        sorted(directory.glob("cifar10_train*.npz")),
        sorted(directory.glob("cifar10_test*.npz")),
    )
    if not train and not test:
        return None
    if len(train) > 1 or len(test) > 1:
        raise DatasetFormatError(f"{directory}: ambiguous CIFAR-10 .npz files {train + test}")
    if not train or not test:
        missing = "cifar10_train*.npz" if not train else "cifar10_test*.npz"
        raise DatasetNotFoundError(f"{directory} lacks {missing} (has {(train + test)[0].name}).")
    return train[0], test[0]


def load_cifar10_npz(train_path: str | Path, test_path: str | Path) -> ImageSplits:
    """CIFAR-10 from two .npz files: `images` NHWC + `labels`, or planar `data` + `labels`."""
    train_path, test_path = Path(train_path), Path(test_path)
    train_images, train_labels, train_full = _read_cifar_npz(train_path)
    test_images, test_labels, test_full = _read_cifar_npz(test_path)
    names, meta = _cifar_class_names(train_path.parent)
    partial = [
        f"{len(x):,} of {full:,} {split} images"
        for split, x, full in (
            ("train", train_images, train_full),
            ("test", test_images, test_full),
        )
        if full is not None and full != len(x)
    ]
    if not partial:  # a copy that does not say it is partial must be the full set or a sample
        check_known_counts(
            "the full CIFAR-10",
            [
                Count(str(train_path), "train images", len(train_images), CIFAR10_SIZES["train"]),
                Count(str(test_path), "test images", len(test_images), CIFAR10_SIZES["test"]),
            ],
        )
    # A partial copy that says so loads, and says so in the run log, which prints `source`.
    note = f" [PARTIAL copy: {', '.join(partial)}]" if partial else ""
    return ImageSplits(
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        class_names=names,
        source=f"CIFAR-10 npz {train_path} (train), {test_path} (test){meta}{note}",
        name="cifar10",
    )


def _cifar_files_present(directory: Path) -> bool:
    from jaxnets.data.image_folder import find_image_folder

    return (
        directory.is_dir()
        and (
            (directory / CIFAR10_PICKLE_DIR).is_dir()
            or (directory / "data_batch_1").exists()
            or (directory / "test_batch").exists()
            or any(directory.glob("*.npz"))
        )
    ) or find_image_folder(directory) is not None


def load_cifar10_image_folder(path: str | Path) -> ImageSplits:
    """CIFAR-10 as an image folder (or archive of one): its ten classes, in CIFAR's label order
    (which is alphabetical, as the folder reader's sorted class names are)."""
    from jaxnets.data.image_folder import CIFAR10_JPEG_NAME, load_image_folder

    splits = load_image_folder(path)
    if splits.class_names != CIFAR10_CLASSES:
        raise DatasetFormatError(
            f"{splits.source}: classes {', '.join(splits.class_names)}, not CIFAR-10's "
            f"{', '.join(CIFAR10_CLASSES)}; `jaxnets train images` reads any image folder"
        )
    if splits.image_shape != (32, 32, 3):
        raise DatasetFormatError(f"{splits.source}: images {splits.image_shape}, not 32x32x3")
    check_known_counts(
        "the full CIFAR-10",
        [
            Count(splits.source, f"{s} images", len(getattr(splits, f"{s}_images")), n)
            for s, n in CIFAR10_SIZES.items()
        ],
    )
    if splits.name != CIFAR10_JPEG_NAME:  # lossless files (PNG) hold CIFAR-10's own pixels
        splits.name = "cifar10"
    return splits


def load_cifar10_files(directory: str | Path) -> ImageSplits:
    """CIFAR-10 from `directory`: the python batches if there, else a pair of .npz files, else
    an image folder of it (a directory or archive; `directory` may name the archive)."""
    from jaxnets.data.image_folder import find_image_folder

    directory = Path(directory)
    if not directory.is_dir() and find_image_folder(directory) is None:
        raise DatasetNotFoundError(f"CIFAR-10 directory {directory} does not exist.{_CIFAR_HELP}")
    pickles = directory / CIFAR10_PICKLE_DIR
    if (
        pickles.is_dir()
        or (directory / "data_batch_1").exists()
        or (directory / "test_batch").exists()
    ):
        return load_cifar10_pickles(directory)
    pair = _find_cifar_npz(directory) if directory.is_dir() else None
    if pair is not None:
        return load_cifar10_npz(*pair)
    if find_image_folder(directory) is not None:
        return load_cifar10_image_folder(directory)
    raise DatasetNotFoundError(
        f"{directory} holds neither {CIFAR10_PICKLE_DIR}/, CIFAR-10 .npz files nor an image "
        f"folder of it.{_CIFAR_HELP}"
    )


def _load_cifar10(data_dir: str | Path | None, source: str) -> ImageSplits:
    if source == "files":
        if data_dir is None:
            raise DatasetNotFoundError(f"CIFAR-10 from files needs a data directory.{_CIFAR_HELP}")
        return load_cifar10_files(data_dir)
    if source == "tfds":
        return load_tfds("cifar10", data_dir, "cifar10", CIFAR10_CLASSES)
    if data_dir is not None and _cifar_files_present(Path(data_dir)):
        return load_cifar10_files(data_dir)
    if tfds_is_prepared("cifar10", data_dir):
        return load_tfds("cifar10", data_dir, "cifar10", CIFAR10_CLASSES)
    looked = f"{data_dir} holds no CIFAR-10 files, and " if data_dir is not None else ""
    raise DatasetNotFoundError(
        f"CIFAR-10 not found: {looked}no prepared TFDS cifar10 in {_tfds_dir_name(data_dir)}."
        f"{_CIFAR_HELP}"
    )


# ----------------------------------------------------------------------------- image folders
def _load_images(data_dir: str | Path | None, source: str, image_size: int | None) -> ImageSplits:
    from jaxnets.data.image_folder import LAYOUT, load_image_folder

    if source == "tfds":
        raise ValueError("an image folder is read from its files; there is no TFDS source for it")
    if data_dir is None:
        raise DatasetNotFoundError(
            f"an image folder needs its directory: --data-dir FOLDER, where {LAYOUT} "
            "(or FOLDER is a .tar/.tar.gz of one)"
        )
    return load_image_folder(data_dir, image_size=image_size)


# ----------------------------------------------------------------------------- TFDS
def _tfds_dir_name(data_dir: str | Path | None) -> str:
    return str(data_dir) if data_dir is not None else "TFDS's default data dir"


@contextlib.contextmanager
def _quiet_absl() -> Iterator[None]:
    """Hide TFDS's absl warnings while probing: "Variant folder ... has no dataset_info.json" is
    how it reports that a dataset is not prepared, which the caller then says in plain words."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def tfds_is_prepared(tfds_name: str, data_dir: str | Path | None) -> bool:
    """Whether TFDS has `tfds_name` prepared in `data_dir`; reads local metadata only."""
    if data_dir is not None and not Path(data_dir).is_dir():
        return False  # nothing can be prepared in a folder that does not exist
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        return False
    kwargs = {"data_dir": str(data_dir)} if data_dir is not None else {}
    with _quiet_absl():
        return tfds.builder(tfds_name, **kwargs).is_prepared()


def load_tfds(
    tfds_name: str, data_dir: str | Path | None, name: str, class_names: list[str]
) -> ImageSplits:
    """Read the train and test splits of a prepared TFDS image dataset with `tfds.data_source`.

    `download=False`: TFDS never fetches anything. data_source needs the array_record (or parquet)
    format; a dataset prepared as TFRecord cannot be read without TensorFlow.
    """
    import tensorflow_datasets as tfds

    kwargs = {"data_dir": str(data_dir)} if data_dir is not None else {}
    try:
        splits = {
            s: tfds.data_source(tfds_name, split=s, download=False, **kwargs)
            for s in ("train", "test")
        }
    except Exception as exc:  # TFDS reports a missing dataset in several ways; sort them here
        where = _tfds_dir_name(data_dir)
        if not tfds_is_prepared(tfds_name, data_dir):
            help_text = _FASHION_HELP if tfds_name == "fashion_mnist" else _CIFAR_HELP
            raise DatasetNotFoundError(
                f"no prepared TFDS {tfds_name} in {where}.{help_text}"
            ) from exc
        raise DatasetFormatError(
            f"TFDS {tfds_name} in {where} is prepared but tfds.data_source cannot read it ({exc}); "
            f"rebuild it with `tfds build {tfds_name} --file_format=array_record`"
        ) from exc
    arrays = {s: _read_tfds_split(ds, f"TFDS {tfds_name}[{s}]") for s, ds in splits.items()}
    info = getattr(splits["train"], "dataset_info", None)
    version = f" {info.version}" if info is not None else ""
    return ImageSplits(
        train_images=arrays["train"][0],
        train_labels=arrays["train"][1],
        test_images=arrays["test"][0],
        test_labels=arrays["test"][1],
        class_names=list(class_names),
        source=f"TFDS {tfds_name}{version} via tfds.data_source from {_tfds_dir_name(data_dir)}",
        name=name,
    )


def _read_tfds_split(ds, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode every example of a random-access TFDS split into (uint8 NHWC, int32) arrays."""
    n = len(ds)
    if n == 0:
        raise DatasetFormatError(f"{where} is empty")
    first = ds[0]
    images = np.empty((n, *np.shape(first["image"])), np.uint8)
    labels = np.empty(n, np.int32)
    # Item by item: TFDS's mock data source (tfds.testing.mock_data) breaks __getitems__.
    for i in range(n):
        example = first if i == 0 else ds[i]
        images[i] = example["image"]
        labels[i] = example["label"]
    return images, labels
