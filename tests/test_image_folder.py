"""The image-folder reader (`jaxnets.data.image_folder`) on folders written here with Pillow, the
`jaxnets train images` command on one, and the shared CIFAR-10 JPEG copy (skipped when absent)."""

from __future__ import annotations

import gzip
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxnets import cli
from jaxnets.cache import cache_root
from jaxnets.data import image_folder
from jaxnets.data.errors import DatasetFormatError, DatasetNotFoundError
from jaxnets.data.image_folder import (
    CIFAR10_JPEG_NAME,
    cache_file,
    describe_image_folder,
    find_image_folder,
    load_image_folder,
)
from jaxnets.data.images import CIFAR10_CLASSES, load_image_dataset

CLASSES = ("cat", "dog", "owl")  # written in another order below: labels follow sorted names


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch) -> Path:
    """Decoded folders go to this test's own cache, not ~/.cache/jaxnets."""
    root = tmp_path / "cache"
    monkeypatch.setattr(image_folder, "cache_root", lambda: root)
    return root / "image-folders"


def write_folder(
    root: Path,
    *,
    fmt: str = "png",
    classes=("owl", "cat", "dog"),
    counts=(("train", 4), ("test", 2)),
    size=(8, 6),  # (width, height)
    seed: int = 0,
) -> dict[str, dict[str, np.ndarray]]:
    """root/SPLIT/CLASS/NNN.fmt random RGB images; returns what was written, per split and file."""
    rng = np.random.default_rng(seed)
    written: dict[str, dict[str, np.ndarray]] = {}
    for split, n in counts:
        written[split] = {}
        for cls in classes:
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                if fmt == "png":  # lossless: any pixels come back
                    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                else:  # one colour per image, which JPEG keeps within a few levels
                    colour = rng.integers(16, 240, 3, dtype=np.uint8)
                    pixels = np.broadcast_to(colour, (size[1], size[0], 3)).copy()
                name = f"{split}/{cls}/{i:03d}.{fmt}"
                Image.fromarray(pixels).save(root / name)
                written[split][name] = pixels
    return written


def make_tar(folder: Path, archive: Path, prefix: str = "") -> Path:
    mode = "w:gz" if archive.name.endswith(".gz") else "w"
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, mode) as tar:
        tar.add(folder, arcname=prefix or ".")
    return archive


# ----------------------------------------------------------------------------- reading
def test_png_folder_round_trip(tmp_path):
    written = write_folder(tmp_path / "pets")
    ds = load_image_folder(tmp_path / "pets")
    assert ds.class_names == sorted(CLASSES) and ds.name == "pets"
    assert ds.train_images.shape == (12, 6, 8, 3) and ds.test_images.shape == (6, 6, 8, 3)
    assert ds.train_images.dtype == np.uint8
    # Files in sorted path order, labels from the sorted class names; PNG is lossless.
    assert ds.train_files[:2] == ("train/cat/000.png", "train/cat/001.png")
    for split in ("train", "test"):
        files = getattr(ds, f"{split}_files")
        assert list(files) == sorted(written[split])
        for name, image, label in zip(
            files, getattr(ds, f"{split}_images"), getattr(ds, f"{split}_labels"), strict=True
        ):
            np.testing.assert_array_equal(image, written[split][name])
            assert ds.class_names[label] == name.split("/")[1]
    assert "PNG" in ds.source and "12 train / 6 test" in ds.source


def test_jpeg_folder_and_gray_images(tmp_path):
    written = write_folder(tmp_path / "pics", fmt="jpg", size=(16, 16))
    Image.fromarray(np.full((16, 16), 77, np.uint8)).save(tmp_path / "pics/test/owl/gray.jpeg")
    ds = load_image_folder(tmp_path / "pics")
    assert ds.test_images.shape == (7, 16, 16, 3)  # the gray one joins as three equal channels
    gray = ds.test_images[ds.test_files.index("test/owl/gray.jpeg")]
    assert np.abs(gray.astype(int) - 77).max() <= 2
    first = ds.train_images[0].astype(int)
    assert np.abs(first - written["train"]["train/cat/000.jpg"]).max() <= 4  # lossy, but close
    assert "JPEG" in ds.source and ds.name == "pics"  # not CIFAR-10's classes: no JPEG-copy name


def test_all_gray_images_keep_one_channel(tmp_path):
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            Image.fromarray(np.full((5, 5), 9, np.uint8)).save(tmp_path / split / cls / "x.png")
    ds = load_image_folder(tmp_path)
    assert ds.train_images.shape == (2, 5, 5, 1) and ds.train_labels.tolist() == [0, 1]


@pytest.mark.parametrize("archive", ["pets.tar", "pets.tar.gz"])
def test_tar_archives_read_as_the_folder(tmp_path, archive):
    write_folder(tmp_path / "pets")
    ds = load_image_folder(tmp_path / "pets")
    # Under a top folder, as `git archive --prefix` writes it; found from its parent folder too.
    tar = make_tar(tmp_path / "pets", tmp_path / "packed" / archive, prefix="pets-images")
    (tmp_path / "packed" / "notes.txt").write_text("not an image folder")
    for path in (tar, tar.parent):
        got = load_image_folder(path)
        np.testing.assert_array_equal(got.train_images, ds.train_images)
        np.testing.assert_array_equal(got.test_labels, ds.test_labels)
        assert got.train_files == ds.train_files and got.class_names == ds.class_names
        assert f"{tar}:pets-images/" in got.source
    flat = make_tar(tmp_path / "pets", tmp_path / f"flat-{archive}")  # ./train/... at the top
    np.testing.assert_array_equal(load_image_folder(flat).train_images, ds.train_images)


def test_parallel_decoding_gives_the_same_arrays(tmp_path):
    write_folder(tmp_path / "pets", counts=(("train", 20), ("test", 4)))
    here = load_image_folder(tmp_path / "pets", workers=1, cache=False)
    spread = load_image_folder(tmp_path / "pets", workers=2, cache=False)
    np.testing.assert_array_equal(here.train_images, spread.train_images)
    np.testing.assert_array_equal(here.test_images, spread.test_images)


def test_resize(tmp_path):
    write_folder(tmp_path / "pets", size=(8, 6))
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "pets/train/dog/big.png")
    with pytest.raises(DatasetFormatError, match="different sizes") as err:
        load_image_folder(tmp_path / "pets")
    message = str(err.value)
    assert "train/dog/big.png is 40x30" in message and "is 8x6" in message
    assert "--image-size" in message and "\n" not in message
    ds = load_image_folder(tmp_path / "pets", image_size=12)
    assert ds.train_images.shape == (13, 12, 12, 3) and ds.test_images.shape == (6, 12, 12, 3)
    assert "resized to 12x12" in ds.source
    assert not ds.train_images[ds.train_files.index("train/dog/big.png")].any()
    with pytest.raises(ValueError, match="image_size must be >= 1"):
        load_image_folder(tmp_path / "pets", image_size=0)


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "damage",
    [
        lambda f: f.write_bytes(b"this is not a PNG file"),
        lambda f: f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2]),  # truncated
        lambda f: f.write_bytes(b""),
    ],
    ids=["garbage", "truncated", "empty"],
)
def test_unreadable_image_is_named(tmp_path, damage):
    write_folder(tmp_path / "pets", fmt="jpg", size=(32, 32))
    bad = tmp_path / "pets/train/dog/002.jpg"
    damage(bad)
    with pytest.raises(DatasetFormatError, match="not a readable image") as err:
        load_image_folder(tmp_path / "pets")
    assert str(bad) in str(err.value)
    tar = make_tar(tmp_path / "pets", tmp_path / "pets.tar.gz")
    with pytest.raises(DatasetFormatError, match=r"pets\.tar\.gz:train/dog/002\.jpg"):
        load_image_folder(tar)


def test_layout_errors(tmp_path):
    write_folder(tmp_path / "pets")
    (tmp_path / "pets/test/emu").mkdir()
    (tmp_path / "pets/test/emu/.DS_Store").write_bytes(b"")  # hidden files do not count
    with pytest.raises(DatasetFormatError, match=r"test/emu/: an empty class folder"):
        load_image_folder(tmp_path / "pets")
    (tmp_path / "pets/test/emu/.DS_Store").unlink()
    (tmp_path / "pets/test/emu").rmdir()

    (tmp_path / "pets/train/cat/000.png").rename(tmp_path / "pets/train/cat.png")
    with pytest.raises(DatasetFormatError, match="an image outside any class folder"):
        load_image_folder(tmp_path / "pets")
    (tmp_path / "pets/train/cat.png").unlink()

    (tmp_path / "pets/test/owl").rename(tmp_path / "pets/test/bat")
    with pytest.raises(DatasetFormatError, match="only in train/: owl; only in test/: bat"):
        load_image_folder(tmp_path / "pets")

    for split in ("test", "train"):
        other = {"test": "train", "train": "test"}[split]
        case = tmp_path / f"no-{split}"
        write_folder(case, counts=((other, 1),))
        with pytest.raises(DatasetFormatError, match=f"no {split}/ folder"):
            load_image_folder(case)
        with pytest.raises(DatasetFormatError, match=f"no {split}/ folder"):
            load_image_folder(make_tar(case, tmp_path / f"no-{split}.tar"))

    (tmp_path / "nothing").mkdir()
    with pytest.raises(DatasetNotFoundError, match="holds no image folder"):
        load_image_folder(tmp_path / "nothing")
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "absent")
    (tmp_path / "broken.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DatasetFormatError, match="not a readable tar archive"):
        load_image_folder(tmp_path / "broken.tar.gz")


def test_errors_reach_the_command_line_as_one_line(tmp_path, capsys):
    write_folder(tmp_path / "pets")
    (tmp_path / "pets/test/cat/001.png").write_bytes(b"junk")
    argv = ["train", "images", "--data-dir", str(tmp_path / "pets"), "--out", str(tmp_path / "r")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "test/cat/001.png: not a readable image" in err
    assert "Traceback" not in err and not (tmp_path / "r" / "results.json").exists()


# ----------------------------------------------------------------------------- cache
def test_cache_reuse_and_invalidation(tmp_path, private_cache, monkeypatch):
    write_folder(tmp_path / "pets")
    first = load_image_folder(tmp_path / "pets")
    cached = cache_file(tmp_path / "pets", None, private_cache)
    assert cached.is_file() and len(list(private_cache.iterdir())) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    real_decode = image_folder._decode_all
    monkeypatch.setattr(image_folder, "_decode_all", no_decoding)
    again = load_image_folder(tmp_path / "pets")
    np.testing.assert_array_equal(again.train_images, first.train_images)
    assert again.train_files == first.train_files and again.source == first.source

    # A changed file, a new file, a removed file: each is decoded afresh, in the same cache file.
    monkeypatch.setattr(image_folder, "_decode_all", real_decode)
    image = tmp_path / "pets/train/owl/000.png"
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(image)
    os.utime(image, ns=(1, 1))  # a different mtime even on a coarse clock
    changed = load_image_folder(tmp_path / "pets")
    assert not changed.train_images[changed.train_files.index("train/owl/000.png")].any()
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / "pets/test/dog/new.png")
    assert len(load_image_folder(tmp_path / "pets").test_images) == 7
    (tmp_path / "pets/test/dog/new.png").unlink()
    assert len(load_image_folder(tmp_path / "pets").test_images) == 6
    assert len(list(private_cache.iterdir())) == 1

    # Another size is another cache file; cache=False neither reads nor writes one.
    load_image_folder(tmp_path / "pets", image_size=4)
    assert len(list(private_cache.iterdir())) == 2
    cached.write_bytes(b"torn by a kill")  # an unreadable cache is decoded again, not an error
    assert len(load_image_folder(tmp_path / "pets").train_images) == 12
    monkeypatch.setattr(image_folder, "_write_cache", no_decoding)
    load_image_folder(tmp_path / "pets", cache=False)


def test_archive_cache_follows_the_archive(tmp_path, private_cache, monkeypatch):
    write_folder(tmp_path / "pets")
    tar = make_tar(tmp_path / "pets", tmp_path / "pets.tar")
    load_image_folder(tar)
    calls = []
    real_list = image_folder._list_archive
    monkeypatch.setattr(image_folder, "_list_archive", lambda a: calls.append(a) or real_list(a))
    load_image_folder(tar)
    assert calls == []  # a cache hit does not even open the archive
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / "pets/test/dog/new.png")
    make_tar(tmp_path / "pets", tar)
    os.utime(tar, ns=(2, 2))
    assert len(load_image_folder(tar).test_images) == 7 and calls == [tar]


def test_unwritable_cache_costs_only_the_cache(tmp_path, monkeypatch):
    write_folder(tmp_path / "pets")
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    with pytest.warns(UserWarning, match="could not cache"):
        ds = load_image_folder(tmp_path / "pets", cache_dir=blocker / "sub")
    assert len(ds.train_images) == 12


# ----------------------------------------------------------------------------- order map
def test_order_map_puts_each_split_in_its_original_order(tmp_path):
    write_folder(tmp_path / "pets", counts=(("train", 2), ("test", 1)))
    plain = load_image_folder(tmp_path / "pets", cache=False)
    rows = ["split\tindex\tlabel\tsource_path"]
    for split in ("train", "test"):
        files = getattr(plain, f"{split}_files")
        labels = getattr(plain, f"{split}_labels")
        for index, i in enumerate(reversed(range(len(files)))):
            rows.append(f"{split}\t{index}\t{labels[i]}\t{files[i]}")
    (tmp_path / "pets" / "original_order.tsv.gz").write_bytes(
        gzip.compress("\n".join(rows).encode())
    )
    mapped = load_image_folder(tmp_path / "pets")
    np.testing.assert_array_equal(mapped.train_images, plain.train_images[::-1])
    np.testing.assert_array_equal(mapped.test_labels, plain.test_labels[::-1])
    assert mapped.train_files == plain.train_files[::-1] and "in the order of" in mapped.source

    good = list(rows)
    split, index, label, name = rows[1].split("\t")  # a label the file's folder contradicts
    rows[1] = "\t".join([split, index, str((int(label) + 1) % 3), name])
    (tmp_path / "pets" / "original_order.tsv.gz").write_bytes(
        gzip.compress("\n".join(rows).encode())
    )
    with pytest.raises(DatasetFormatError, match=r"original_order\.tsv\.gz: .* has label"):
        load_image_folder(tmp_path / "pets")
    (tmp_path / "pets" / "original_order.tsv.gz").write_bytes(
        gzip.compress("\n".join(good[:-1]).encode())  # one test file left out
    )
    with pytest.raises(DatasetFormatError, match="belongs to another copy"):
        load_image_folder(tmp_path / "pets")


# ----------------------------------------------------------------------------- CIFAR-10
@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_cifar10_classes_as_a_folder(tmp_path, fmt):
    write_folder(
        tmp_path / "c", fmt=fmt, classes=CIFAR10_CLASSES, counts=(("train", 2), ("test", 1)),
        size=(32, 32),
    )  # fmt: skip
    ds = load_image_dataset("cifar10", tmp_path / "c")
    assert ds.class_names == CIFAR10_CLASSES and len(ds.train_images) == 20
    if fmt == "jpg":  # lossy pixels: never reported as CIFAR-10
        assert ds.name == CIFAR10_JPEG_NAME and ds.source.startswith(CIFAR10_JPEG_NAME)
    else:
        assert ds.name == "cifar10" and "CIFAR-10 (JPEG copy)" not in ds.source
    with pytest.raises(DatasetFormatError, match="not CIFAR-10's"):
        load_image_dataset("cifar10", (write_folder(tmp_path / "p"), tmp_path / "p")[1])


def test_image_size_is_for_image_folders_only(tmp_path):
    with pytest.raises(ValueError, match="image_size resizes image folders"):
        load_image_dataset("digits", image_size=8)
    with pytest.raises(DatasetNotFoundError, match="--data-dir FOLDER"):
        load_image_dataset("images")


# ----------------------------------------------------------------------------- commands
def test_data_info_of_an_image_folder(tmp_path, capsys):
    write_folder(tmp_path / "pets")
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(tmp_path / "pets/train/dog/big.png")
    info = describe_image_folder(tmp_path / "pets")
    assert info.counts == {"train": [4, 5, 4], "test": [2, 2, 2]}
    assert info.sizes == {(8, 6): 18, (40, 30): 1} and info.modes == {"RGB": 18, "L": 1}
    assert cli.main(["data", "info", "images", "--data-dir", str(tmp_path / "pets")]) == 0
    out = capsys.readouterr().out
    assert "images: 13 train / 6 test" in out and "classes: 3" in out
    assert "8x6 (18), 40x30 (1)" in out and "--image-size" in out
    assert cli.main(["data", "info", "images", "--data-dir", str(tmp_path / "none")]) == 2


def test_train_images_smoke(tmp_path):
    """`jaxnets train images` for one epoch on 24 + 9 images of three classes."""
    write_folder(tmp_path / "pets", counts=(("train", 8), ("test", 3)), size=(12, 10))
    out = tmp_path / "run"
    argv = ["train", "images", "--data-dir", str(tmp_path / "pets"), "--image-size", "16"]
    argv += ["--epochs", "1", "--batch-size", "8", "--width", "4", "--out", str(out)]
    assert cli.main([*argv, "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["num_train"] + results["num_val"] == 24 and results["num_test"] == 9
    assert results["experiment"] == "images" and results["class_names"] == sorted(CLASSES)
    assert results["config"]["image_size"] == 16 and "resized to 16x16" in results["data_source"]
    assert len(results["confusion_matrix"]) == 3


def test_find_image_folder_refuses_two(tmp_path):
    write_folder(tmp_path / "a")
    make_tar(tmp_path / "a", tmp_path / "b.tar")
    assert find_image_folder(tmp_path / "a") == tmp_path / "a"
    with pytest.raises(DatasetFormatError, match="several image folders or archives"):
        find_image_folder(tmp_path)


# ----------------------------------------------------------------------------- shared copy
def _shared_jpeg_copy(shared_data: Path, *, cached_only: bool) -> Path:
    copy = shared_data / "cifar10-jpeg"
    if not (copy / "cifar10_jpeg.tar.gz").is_file():
        pytest.skip(f"{copy}/cifar10_jpeg.tar.gz is absent")
    if cached_only and not cache_file(copy / "cifar10_jpeg.tar.gz", None, _real_cache()).is_file():
        pytest.skip(
            "the JPEG copy is not decoded yet (about 7 s; `jaxnets data info cifar10 --data-dir "
            f"{copy}` caches it, or run -m slow)"
        )
    return copy


def _real_cache() -> Path:
    return cache_root() / "image-folders"  # jaxnets.cache's, not the fixture's


def _check_full_copy(ds) -> None:
    assert ds.name == CIFAR10_JPEG_NAME and ds.source.startswith(CIFAR10_JPEG_NAME)
    assert ds.train_images.shape == (50_000, 32, 32, 3) and ds.test_images.shape == (
        10_000,
        32,
        32,
        3,
    )
    assert np.bincount(ds.train_labels).tolist() == [5000] * 10
    assert np.bincount(ds.test_labels).tolist() == [1000] * 10
    # CIFAR-10's own order (the order map): its first labels are frog, truck, truck; cat, ship.
    assert ds.train_labels[:3].tolist() == [6, 9, 9] and ds.test_labels[:2].tolist() == [3, 8]


def test_shared_jpeg_copy_counts_from_the_cache(shared_data):
    copy = _shared_jpeg_copy(shared_data, cached_only=True)
    _check_full_copy(load_image_folder(copy, cache_dir=_real_cache()))


@pytest.mark.slow
def test_shared_jpeg_copy_decodes(shared_data, tmp_path):
    copy = _shared_jpeg_copy(shared_data, cached_only=False)
    _check_full_copy(load_image_dataset("cifar10", copy))  # into the fixture's private cache
