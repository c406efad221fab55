"""Image folders: `train/<class>/*` and `test/<class>/*` image files as uint8 NHWC arrays.

The layout that torchvision's ImageFolder, Keras' image_dataset_from_directory and TFDS'
ImageFolder read: a directory, or a .tar / .tar.gz / .tgz of one (inside the archive the folder
may sit under a top folder, as `cifar-10-images/train/...` does). Class names are the class
folders' names, sorted; label k is the k-th. Files within a split are taken in the sorted order of
their paths, so every load of a folder gives the same arrays in the same order, and
`ImageSplits.train_files` / `test_files` name each image relative to the folder
("train/cat/0001.jpg").

An order map `original_order.tsv.gz` (or `.tsv`) beside the folder or archive, with the columns
split, index, label and source_path (as ../shared/data/cifar10-jpeg ships), puts each split in its
original order instead: image i of a split is the file the map gives index i. For the CIFAR-10
JPEG copy that is CIFAR-10's own order, so its test split lines up with the real test set.

Decoding is Pillow's, in one worker process per core for large folders (threads gain nothing on
small images: Python's share of each decode holds the GIL; two processes decode the CIFAR-10
JPEG copy in less than half the time of two threads). The decoded arrays are cached once, as an
uncompressed .npz in `$JAXNETS_CACHE_DIR/image-folders` (default ~/.cache/jaxnets/...; the data
folder may be read-only), named by the folder's path and the resize and holding a fingerprint of
the folder (each image file's path, size and mtime; an archive's size and mtime; the order map's):
the next load reads that one file, and a folder that changed is decoded again.

Scripts that call `load_image_folder` on a large folder need the usual
`if __name__ == "__main__":` guard of any code that starts processes (`workers=1` decodes here).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import csv
import gzip
import hashlib
import io
import itertools
import json
import multiprocessing
import os
import tarfile
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from jaxnets.cache import cache_root
from jaxnets.data.errors import DatasetFormatError, DatasetNotFoundError
from jaxnets.data.images import CIFAR10_CLASSES, ImageSplits

SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")
ORDER_FILES = ("original_order.tsv.gz", "original_order.tsv")
LAYOUT = "an image folder holds train/<class>/* and test/<class>/* image files"
CIFAR10_JPEG_NAME = "CIFAR-10 (JPEG copy)"  # its lossy pixels must never pass for CIFAR-10's
CACHE_VERSION = 2  # bump whenever the same folder would decode to different arrays
# Below this many images, decoding here beats starting worker processes (~0.3 s each to import).
PARALLEL_MIN_IMAGES = 2000
_GRAY_MODES = ("1", "L", "LA")  # kept as one channel; every other mode is converted to RGB


# ----------------------------------------------------------------------------- finding the folder
def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _visible(path: Path) -> bool:
    # ".DS_Store", and macOS' "._0001.jpg" resource forks, which carry an image suffix.
    return not path.name.startswith(".")


def _has_split_folder(path: Path) -> bool:
    return any((path / split).is_dir() for split in SPLITS)


def find_image_folder(path: str | Path) -> Path | None:
    """The image folder or archive at `path`: `path` itself when it is an archive or holds train/
    or test/, else the one subfolder of it that does or the one archive in it; None when neither.

    A folder holding train/ but no test/ counts, so the reader can say which one is missing.
    """
    path = Path(path)
    if is_archive(path):
        return path
    if not path.is_dir():
        return None
    if _has_split_folder(path):
        return path
    found = [
        p
        for p in sorted(path.iterdir())
        if _visible(p) and (is_archive(p) or (p.is_dir() and _has_split_folder(p)))
    ]
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise DatasetFormatError(
            f"{path}: several image folders or archives ({names}); pass the one to read"
        )
    return found[0] if found else None


def find_order_map(data_dir: Path, folder: Path) -> Path | None:
    """An order map beside the folder or archive, or in the directory the user named."""
    places = [folder.parent, data_dir] if is_archive(folder) else [folder, data_dir]
    for place in dict.fromkeys(places):  # in order, without repeats
        for name in ORDER_FILES:
            if (place / name).is_file():
                return place / name
    return None


# ----------------------------------------------------------------------------- listing
@dataclass
class _Listing:
    """What a folder holds, before decoding: per split, (name relative to the folder, label)."""

    where: str  # "FOLDER/" or "ARCHIVE:PREFIX/": a file's name after it is where the file is
    class_names: list[str]
    files: dict[str, list[tuple[str, int]]]
    payloads: dict[str, bytes | str]  # relative name -> the archive member's bytes, or the path


def _class_files(tree: dict[str, dict[str, list[str]]], where: str) -> _Listing:
    """Labels from the train split's sorted class names; both splits must have the same classes
    and no class folder may be empty."""
    for split in SPLITS:
        if split not in tree:
            raise DatasetFormatError(f"{where.rstrip('/:')}: no {split}/ folder ({LAYOUT})")
        if not tree[split]:
            raise DatasetFormatError(f"{where}{split}/: no class folders in it ({LAYOUT})")
        for name, files in tree[split].items():
            if not files:
                raise DatasetFormatError(
                    f"{where}{split}/{name}/: an empty class folder (no "
                    f"{', '.join(IMAGE_SUFFIXES)} files in it)"
                )
    train, test = set(tree["train"]), set(tree["test"])
    if train != test:
        only = [
            f"only in {s}/: {', '.join(sorted(c))}"
            for s, c in (("train", train - test), ("test", test - train))
            if c
        ]
        raise DatasetFormatError(
            f"{where.rstrip('/:')}: train/ and test/ have different classes ({'; '.join(only)})"
        )
    class_names = sorted(train)
    files = {
        split: [
            (name, label)
            for label, cls in enumerate(class_names)
            for name in sorted(tree[split][cls])
        ]
        for split in SPLITS
    }
    return _Listing(where, class_names, files, {})


def _walk_images(top: Path) -> list[tuple[str, os.stat_result]]:
    """Every visible image file under `top` (recursively): (path relative to top, its stat)."""
    found = []
    with os.scandir(top) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                found += [(f"{entry.name}/{rel}", st) for rel, st in _walk_images(Path(entry.path))]
            elif entry.name.lower().endswith(IMAGE_SUFFIXES):
                found.append((entry.name, entry.stat()))
    return found


def _list_directory(root: Path) -> tuple[_Listing, list]:
    """The listing of a folder, and what its fingerprint hashes: each image's path, size, mtime."""
    tree: dict[str, dict[str, list[str]]] = {}
    stamp: list = []
    for split in SPLITS:
        if not (root / split).is_dir():
            continue
        tree[split] = {}
        for entry in sorted(filter(_visible, (root / split).iterdir())):
            if entry.is_dir():
                images = _walk_images(entry)
                tree[split][entry.name] = [f"{split}/{entry.name}/{rel}" for rel, _ in images]
                stamp += [
                    (f"{split}/{entry.name}/{rel}", st.st_size, st.st_mtime_ns)
                    for rel, st in images
                ]
            elif entry.name.lower().endswith(IMAGE_SUFFIXES):
                raise DatasetFormatError(f"{entry}: an image outside any class folder ({LAYOUT})")
    stamp.append(("classes", sorted((s, sorted(c)) for s, c in tree.items())))
    listing = _class_files(tree, f"{root}/")
    listing.payloads = {
        name: str(root / name) for split in SPLITS for name, _ in listing.files[split]
    }
    return listing, stamp


def _archive_prefix(names: list[PurePosixPath], archive: Path) -> PurePosixPath:
    """The folder inside the archive that holds train/ and test/: the shallowest one with both
    (or, failing that, with either, so the error can name the missing one)."""
    splits_at: dict[PurePosixPath, set[str]] = {}
    for name in names:
        for i, part in enumerate(name.parts[:-2]):  # SPLIT/CLASS/FILE needs two parts after it
            if part in SPLITS:
                splits_at.setdefault(PurePosixPath(*name.parts[:i]), set()).add(part)
    if not splits_at:
        raise DatasetFormatError(
            f"{archive}: no train/<class>/ or test/<class>/ images in it ({LAYOUT})"
        )
    full = [p for p, s in splits_at.items() if len(s) == len(SPLITS)] or list(splits_at)
    depth = min(len(p.parts) for p in full)
    shallowest = sorted(str(p) for p in full if len(p.parts) == depth)
    if len(shallowest) > 1:
        raise DatasetFormatError(
            f"{archive}: several image folders in it ({', '.join(shallowest)}); "
            "unpack the one to read"
        )
    return PurePosixPath(shallowest[0])


def _list_archive(archive: Path) -> _Listing:
    """Read the archive once, keeping each image member's bytes (a .tar.gz cannot seek back)."""
    members: dict[PurePosixPath, bytes] = {}
    try:
        with tarfile.open(archive, "r|*") as tar:  # streaming: one pass through the gzip
            for member in tar:
                name = PurePosixPath(member.name.removeprefix("./"))
                if (
                    member.isfile()
                    and name.suffix.lower() in IMAGE_SUFFIXES
                    and not any(part.startswith(".") for part in name.parts)
                ):
                    members[name] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as exc:  # EOFError: a truncated gzip stream
        raise DatasetFormatError(f"{archive}: not a readable tar archive ({exc})") from exc
    prefix = _archive_prefix(list(members), archive)
    where = f"{archive}:{prefix}/" if prefix.parts else f"{archive}:"
    tree: dict[str, dict[str, list[str]]] = {}
    payloads: dict[str, bytes | str] = {}
    for name, data in members.items():
        if name.parts[: len(prefix.parts)] != prefix.parts:
            continue
        rel = PurePosixPath(*name.parts[len(prefix.parts) :])
        if rel.parts[0] not in SPLITS:
            continue
        if len(rel.parts) < 3:
            raise DatasetFormatError(f"{where}{rel}: an image outside any class folder ({LAYOUT})")
        tree.setdefault(rel.parts[0], {}).setdefault(rel.parts[1], []).append(str(rel))
        payloads[str(rel)] = data
    listing = _class_files(tree, where)
    listing.payloads = payloads
    return listing


# ----------------------------------------------------------------------------- decoding
def _decode_chunk(
    items: list[tuple[str, bytes | str]], image_size: int | None
) -> list[tuple[np.ndarray | None, str]]:
    """Decode each (name, bytes or path): (uint8 HxWxC, Pillow's format) or (None, the error).

    Runs in the worker processes: errors come back as text, so the caller can name the file.
    """
    from PIL import Image

    out: list[tuple[np.ndarray | None, str]] = []
    for _, payload in items:
        try:
            source = io.BytesIO(payload) if isinstance(payload, bytes) else payload
            with Image.open(source) as image:
                fmt = image.format or "image"
                image.load()  # decode now: a truncated file fails here, not in a later step
                image = image.convert("L" if image.mode in _GRAY_MODES else "RGB")
                if image_size is not None and image.size != (image_size, image_size):
                    # Bilinear, with Pillow's antialiasing when shrinking (as torchvision's
                    # Resize); the aspect ratio is not kept, as in Keras' default.
                    image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
                array = np.asarray(image, np.uint8)
        except Exception as exc:  # OSError, SyntaxError, DecompressionBombError, ...: any of them
            out.append((None, f"{type(exc).__name__}: {exc}"))
            continue
        out.append((array[..., None] if array.ndim == 2 else array, fmt))
    return out


def _worker_count(workers: int | None, count: int) -> int:
    if workers is not None:
        return max(1, workers)
    if count < PARALLEL_MIN_IMAGES:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cores or 1)


def _decode_all(
    items: list[tuple[str, bytes | str]], image_size: int | None, workers: int | None
) -> list[tuple[np.ndarray | None, str]]:
    workers = _worker_count(workers, len(items))
    if workers == 1:
        return _decode_chunk(items, image_size)
    # Several chunks per worker, so a slow one (large photos) does not hold up the end.
    size = min(1000, max(16, len(items) // (8 * workers)))
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    # "spawn", not fork: the caller may already run JAX's threads, which a fork would copy mid-lock.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        done = pool.map(_decode_chunk, chunks, itertools.repeat(image_size))
        return [result for chunk in done for result in chunk]


def _stack(
    listing: _Listing, decoded: dict[str, list[tuple[np.ndarray | None, str]]]
) -> tuple[dict[str, np.ndarray], set[str]]:
    """One uint8 NHWC array per split; names the file of any image that is unreadable or of
    another size. Gray images join RGB ones as three equal channels."""
    first: tuple[str, tuple[int, int]] | None = None
    formats, channels = set(), 1
    for split in SPLITS:
        for (name, _), (array, fmt) in zip(listing.files[split], decoded[split], strict=True):
            if array is None:
                raise DatasetFormatError(f"{listing.where}{name}: not a readable image ({fmt})")
            formats.add(fmt)
            channels = max(channels, array.shape[2])
            h, w = array.shape[:2]
            if first is None:
                first = (name, (h, w))
            elif (h, w) != first[1]:
                (a, (ha, wa)) = first
                raise DatasetFormatError(
                    f"images of different sizes: {listing.where}{a} is {wa}x{ha}, "
                    f"{listing.where}{name} is {w}x{h}; resize them all with --image-size N "
                    "(image_size=N)"
                )
    arrays = {}
    for split in SPLITS:
        images = [a for a, _ in decoded[split]]
        if channels == 3:
            images = [np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a for a in images]
        arrays[split] = np.stack(images)
    return arrays, formats


# ----------------------------------------------------------------------------- order map
def _read_order_map(path: Path) -> list[dict[str, str]]:
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8")), delimiter="\t"))
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetFormatError(f"{path}: not a readable order map ({exc})") from exc
    needed = {"split", "index", "source_path"}
    if not rows or not needed <= rows[0].keys():
        raise DatasetFormatError(
            f"{path}: an order map needs tab-separated columns {', '.join(sorted(needed))} "
            "(and optionally label)"
        )
    return rows


def _order(listing: _Listing, rows: list[dict[str, str]], path: Path) -> dict[str, np.ndarray]:
    """Per split, the permutation that puts the listed files in the map's order. The map must
    list exactly the split's files, each once, with indices 0..N-1 and (if given) its label."""
    orders = {}
    for split in SPLITS:
        files = listing.files[split]
        position = {name: i for i, (name, _) in enumerate(files)}
        mine = [r for r in rows if r["split"] == split]
        if len(mine) != len(files):
            raise DatasetFormatError(
                f"{path}: lists {len(mine):,} {split} images but {listing.where}{split}/ has "
                f"{len(files):,}; the map belongs to another copy"
            )
        perm = np.full(len(files), -1, np.int64)
        for line, row in enumerate(mine, 2):
            i = position.get(row["source_path"])
            try:
                index = int(row["index"])
                label = None if row.get("label") in (None, "") else int(row["label"])
            except ValueError as exc:
                raise DatasetFormatError(f"{path}: {split} row {line}: {exc}") from exc
            if i is None:
                raise DatasetFormatError(f"{path}: {row['source_path']} is not in {listing.where}")
            if not 0 <= index < len(files) or perm[index] != -1:
                raise DatasetFormatError(f"{path}: {split} index {index} out of range or repeated")
            if label is not None and label != files[i][1]:
                raise DatasetFormatError(
                    f"{path}: {row['source_path']} has label {label}, but its folder is class "
                    f"{files[i][1]} ({listing.class_names[files[i][1]]})"
                )
            perm[index] = i
        if len(np.unique(perm)) != len(perm):
            raise DatasetFormatError(f"{path}: names one {split} file twice")
        orders[split] = perm
    return orders


# ----------------------------------------------------------------------------- cache
def cache_file(folder: Path, image_size: int | None, cache_dir: str | Path | None = None) -> Path:
    """Where the decoded arrays of `folder` (at `image_size`) are cached: one file per folder
    and size, overwritten when the folder changes, so stale copies do not pile up."""
    key = hashlib.sha256(f"{folder.resolve()}|{image_size}".encode()).hexdigest()[:16]
    stem = folder.name.split(".")[0] or "folder"
    size = f"-{image_size}px" if image_size is not None else ""
    directory = Path(cache_dir) if cache_dir is not None else cache_root() / "image-folders"
    return directory / f"{stem}{size}-{key}.npz"


def _read_cache(path: Path, fingerprint: str) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["fingerprint"]) != fingerprint:
                return None
            return {k: z[k] for k in z.files}
    except Exception:  # absent, torn by a kill mid-write, another version: decode again
        return None


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    partial = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
            partial = f.name
            np.savez(f, **arrays)  # uncompressed: the next load is a plain read
        os.replace(partial, path)  # atomic: a reader never sees half a file
    except OSError as exc:  # a full or read-only disk costs the cache, not the run
        warnings.warn(f"could not cache the decoded images in {path} ({exc})", stacklevel=3)
        if partial is not None:
            with contextlib.suppress(OSError):
                os.unlink(partial)


def _splits(arrays: dict[str, np.ndarray]) -> ImageSplits:
    return ImageSplits(
        train_images=arrays["train_images"],
        train_labels=arrays["train_labels"],
        test_images=arrays["test_images"],
        test_labels=arrays["test_labels"],
        class_names=[str(c) for c in arrays["class_names"]],
        source=str(arrays["source"]),
        name=str(arrays["name"]),
        train_files=tuple(str(f) for f in arrays["train_files"]),
        test_files=tuple(str(f) for f in arrays["test_files"]),
    )


# ----------------------------------------------------------------------------- the reader
def _stat(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns


def dataset_name(folder: Path, class_names: list[str], formats: set[str]) -> str:
    """The folder's name, except that CIFAR-10's classes in JPEG files are the lossy JPEG copy
    (its pixels differ from CIFAR-10's, costing 2-3 points of accuracy), and say so."""
    if class_names == CIFAR10_CLASSES and "JPEG" in formats:
        return CIFAR10_JPEG_NAME
    return folder.name.split(".")[0] or str(folder)


def load_image_folder(
    path: str | Path,
    *,
    image_size: int | None = None,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
) -> ImageSplits:
    """The train and test splits of the image folder (or archive of one) at `path`.

    image_size: resize every image to image_size x image_size; without it, all images must
        have one size (else the error names two files and their sizes).
    cache: read and write the decoded arrays in `cache_dir` (default
        `$JAXNETS_CACHE_DIR/image-folders`); see the module docstring.
    workers: decoding processes (default: one per core for 2,000 images or more; 1: here).
    """
    if image_size is not None and image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    data_dir = Path(path)
    folder = find_image_folder(data_dir)
    if folder is None:
        state = "does not exist" if not data_dir.exists() else "holds no image folder"
        raise DatasetNotFoundError(f"{data_dir} {state}: {LAYOUT}, or a .tar/.tar.gz of one")
    order_path = find_order_map(data_dir, folder)
    listing = None
    if is_archive(folder):
        stamp: list = [_stat(folder)]  # a stat, not a read: a cache hit never opens the archive
    else:
        listing, stamp = _list_directory(folder)
    stamp += [_stat(order_path) if order_path else None, image_size, CACHE_VERSION]
    fingerprint = hashlib.sha256(json.dumps(stamp, default=str).encode()).hexdigest()
    cached_at = cache_file(folder, image_size, cache_dir)
    if cache and (arrays := _read_cache(cached_at, fingerprint)) is not None:
        return _splits(arrays)

    if listing is None:
        listing = _list_archive(folder)
    items = [(name, listing.payloads[name]) for split in SPLITS for name, _ in listing.files[split]]
    results = _decode_all(items, image_size, workers)
    n_train = len(listing.files["train"])
    images, formats = _stack(listing, {"train": results[:n_train], "test": results[n_train:]})
    labels = {s: np.array([y for _, y in listing.files[s]], np.int32) for s in SPLITS}
    names = {s: np.array([n for n, _ in listing.files[s]]) for s in SPLITS}
    note = ""
    if order_path is not None:
        for split, perm in _order(listing, _read_order_map(order_path), order_path).items():
            images[split], labels[split], names[split] = (
                images[split][perm],
                labels[split][perm],
                names[split][perm],
            )
        note = f", in the order of {order_path}"
    resized = f", resized to {image_size}x{image_size}" if image_size is not None else ""
    kinds = "/".join(sorted(formats))
    name = dataset_name(folder, listing.class_names, formats)
    # The run's data_source is what a reader of results.json sees: the JPEG copy says so first.
    said = f"{CIFAR10_JPEG_NAME}: " if name == CIFAR10_JPEG_NAME else ""
    arrays = {
        "train_images": images["train"],
        "train_labels": labels["train"],
        "test_images": images["test"],
        "test_labels": labels["test"],
        "class_names": np.array(listing.class_names),
        "train_files": names["train"],
        "test_files": names["test"],
        "source": np.array(
            f"{said}image folder {listing.where} ({n_train:,} train / {len(results) - n_train:,} "
            f"test {kinds} files{resized}{note})"
        ),
        "name": np.array(name),
        "fingerprint": np.array(fingerprint),
    }
    splits = _splits(arrays)  # checks shapes and labels before anything is cached
    if cache:
        _write_cache(cached_at, arrays)
    return splits


# ----------------------------------------------------------------------------- facts
@dataclass
class FolderInfo:
    """What `jaxnets data info images` prints: read from the files' headers, nothing decoded."""

    where: str
    class_names: list[str]
    counts: dict[str, list[int]]  # per split, images per class (in class_names' order)
    sizes: collections.Counter  # (width, height) -> images
    modes: collections.Counter  # Pillow mode ("RGB", "L", ...) -> images
    unreadable: list[str]  # "FILE: the error", for files Pillow cannot open
    order_map: Path | None

    def lines(self) -> list[str]:
        total = {s: sum(c) for s, c in self.counts.items()}
        lines = [
            f"image folder: {self.where}",
            f"images: {total['train']:,} train / {total['test']:,} test",
            f"classes: {len(self.class_names)}",
        ]
        width = max(len(c) for c in self.class_names)
        lines += [
            f"  {k:>3} {c:<{width}}  train {tr:>7,}  test {te:>7,}"
            for k, (c, tr, te) in enumerate(
                zip(self.class_names, self.counts["train"], self.counts["test"], strict=True)
            )
        ]
        common = ", ".join(f"{w}x{h} ({n:,})" for (w, h), n in self.sizes.most_common(5))
        more = f", and {len(self.sizes) - 5} more" if len(self.sizes) > 5 else ""
        lines.append(f"sizes (width x height): {common}{more}")
        if len(self.sizes) > 1:
            lines.append("  several sizes: train with --image-size N to resize them all to NxN")
        lines.append("modes: " + ", ".join(f"{m} ({n:,})" for m, n in self.modes.most_common()))
        lines.append(f"order map: {self.order_map or 'none (sorted file names)'}")
        if self.unreadable:
            lines.append(f"unreadable: {len(self.unreadable):,}, e.g. {self.unreadable[0]}")
        return lines


def describe_image_folder(path: str | Path) -> FolderInfo:
    """Classes, per-class counts, sizes and modes of the image folder (or archive) at `path`,
    from each file's header (Pillow reads no pixels for it)."""
    from PIL import Image

    data_dir = Path(path)
    folder = find_image_folder(data_dir)
    if folder is None:
        state = "does not exist" if not data_dir.exists() else "holds no image folder"
        raise DatasetNotFoundError(f"{data_dir} {state}: {LAYOUT}, or a .tar/.tar.gz of one")
    listing = _list_archive(folder) if is_archive(folder) else _list_directory(folder)[0]
    sizes: collections.Counter = collections.Counter()
    modes: collections.Counter = collections.Counter()
    unreadable = []
    for split in SPLITS:
        for name, _ in listing.files[split]:
            payload = listing.payloads[name]
            source = io.BytesIO(payload) if isinstance(payload, bytes) else payload
            try:
                with Image.open(source) as im:
                    sizes[im.size] += 1
                    modes[im.mode] += 1
            except Exception as exc:
                unreadable.append(f"{listing.where}{name}: {type(exc).__name__}: {exc}")
    per_class = {s: collections.Counter(y for _, y in listing.files[s]) for s in SPLITS}
    counts = {s: [per_class[s][k] for k in range(len(listing.class_names))] for s in SPLITS}
    return FolderInfo(
        listing.where.rstrip("/:"),
        listing.class_names,
        counts,
        sizes,
        modes,
        unreadable,
        find_order_map(data_dir, folder),
    )
