"""Host pipeline: splits, statistics, deterministic batching, eval padding, augmentation, prefetch.

Reference values come from explicit loops or direct numpy formulas, not from the code under test.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from jaxnets.data.pipeline import (
    channel_stats,
    crop_flip,
    epoch_permutation,
    iterate_batches,
    normalize,
    num_batches,
    pad_batch,
    prefetch_to_device,
    random_crop_flip,
    train_val_split,
)


def id_images(n: int, h: int = 2, w: int = 2, c: int = 1) -> np.ndarray:
    """Images whose first pixel encodes their index (n <= 256), so a batch tells which it holds."""
    x = np.zeros((n, h, w, c), np.uint8)
    x[:, 0, 0, 0] = np.arange(n)
    return x


# ----------------------------------------------------------------------------- splits and stats
def test_train_val_split_stratified_and_deterministic():
    labels = np.repeat(np.arange(3), [50, 30, 20])
    images = id_images(100)
    a = train_val_split(images, labels, 0.25, seed=3)
    b = train_val_split(images, labels, 0.25, seed=3)
    c = train_val_split(images, labels, 0.25, seed=4)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[2], c[2])
    tr_x, tr_y, va_x, va_y = a
    assert len(va_y) == 25 and len(tr_y) == 75
    # Disjoint and complete: the example ids of both parts are exactly 0..99.
    ids = np.concatenate([tr_x[:, 0, 0, 0], va_x[:, 0, 0, 0]])
    assert sorted(ids.tolist()) == list(range(100))
    np.testing.assert_array_equal(labels[va_x[:, 0, 0, 0]], va_y)
    # 25% of each class exactly: 12.5 -> 12 or 13, 7.5 -> 7 or 8, 5.
    counts = np.bincount(va_y, minlength=3)
    assert counts[0] in (12, 13) and counts[1] in (7, 8) and counts[2] == 5
    shuffled = train_val_split(images, labels, 0.25, seed=3, stratify=False)
    assert len(shuffled[3]) == 25
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split(images, labels, 1.0, seed=0)


def test_channel_stats_and_normalize():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (37, 5, 6, 3), dtype=np.uint8)
    x[..., 2] //= 4  # give the channels different statistics
    mean, std = channel_stats(x, chunk=8)  # several chunks, the last one partial
    flat = x.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(mean, flat.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(std, flat.std(axis=0), rtol=1e-6)
    z = normalize(x, mean, std)
    assert z.dtype == np.float32 and z.shape == x.shape
    np.testing.assert_allclose(z, (x - flat.mean(axis=0)) / flat.std(axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(z.reshape(-1, 3).mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(z.reshape(-1, 3).std(axis=0), 1, atol=1e-5)
    with pytest.raises(ValueError, match="std must be positive"):
        normalize(x, mean, np.zeros(3))


def test_shared_cifar_channel_stats(shared_data):
    path = shared_data / "cifar10" / "cifar10_test_first1017.npz"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    with np.load(path) as z:
        images = z["data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    mean, std = channel_stats(images)
    # SOURCE.md, to its one decimal: mean [126.5, 124.1, 115.0], std [62.9, 61.9, 66.7].
    np.testing.assert_allclose(mean, [126.5, 124.1, 115.0], atol=0.051)
    np.testing.assert_allclose(std, [62.9, 61.9, 66.7], atol=0.051)


# ----------------------------------------------------------------------------- batching
def test_num_batches():
    assert num_batches(10, 4, drop_remainder=True) == 2
    assert num_batches(10, 4, drop_remainder=False) == 3
    assert num_batches(8, 4, drop_remainder=True) == num_batches(8, 4, drop_remainder=False) == 2
    assert num_batches(3, 4, drop_remainder=True) == 0


def flat(lists: list[list[int]]) -> list[int]:
    return [v for part in lists for v in part]


def batch_ids(batches) -> list[list[int]]:
    return [b["label"][b["mask"]].tolist() for b in batches]


def test_permutation_depends_only_on_seed_and_epoch():
    n, bs = 103, 10
    x, y = id_images(n), np.arange(n, dtype=np.int32)

    def run(seed, epoch, **kw):
        kw.setdefault("drop_remainder", True)
        return batch_ids(iterate_batches(x, y, bs, shuffle=True, seed=seed, epoch=epoch, **kw))

    assert run(0, 1) == run(0, 1)
    assert run(0, 1) != run(0, 2) and run(0, 1) != run(1, 1)
    np.testing.assert_array_equal(epoch_permutation(n, 0, 1), epoch_permutation(n, 0, 1))
    # Every example once per epoch; dropping the remainder loses exactly n % bs of them.
    full = run(0, 5, drop_remainder=False)
    assert sorted(flat(full)) == list(range(n))
    dropped = flat(run(0, 5))
    assert len(dropped) == len(set(dropped)) == n - n % bs
    assert dropped == flat(full)[: n - n % bs]
    # Resuming mid-epoch yields exactly the remaining batches of the uninterrupted run.
    assert run(0, 5, start_batch=4) == run(0, 5)[4:]
    # The images travel with their labels.
    for b in iterate_batches(x, y, bs, shuffle=True, seed=0, epoch=0, drop_remainder=True):
        np.testing.assert_allclose(b["image"][:, 0, 0, 0] * 255, b["label"], atol=1e-3)
    # No shuffle: the stored order.
    unshuffled = iterate_batches(x, y, bs, shuffle=False, drop_remainder=True)
    assert batch_ids(unshuffled)[0] == list(range(10))


def test_eval_padding_is_exact_with_a_fixed_shape():
    n, bs = 10, 4
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 3, 3, 2), dtype=np.uint8)
    y = rng.integers(0, 5, n).astype(np.int32)
    batches = list(iterate_batches(x, y, bs, shuffle=False, drop_remainder=False))
    assert len(batches) == num_batches(n, bs, drop_remainder=False) == 3
    for b in batches:
        assert set(b) == {"image", "label", "mask"}
        assert b["image"].shape == (bs, 3, 3, 2) and b["image"].dtype == np.float32
        assert b["label"].shape == (bs,) and b["label"].dtype == np.int32
        assert b["mask"].dtype == np.bool_
    assert [int(b["mask"].sum()) for b in batches] == [4, 4, 2]
    last = batches[-1]
    assert (
        not last["mask"][2:].any()
        and np.all(last["image"][2:] == 0)
        and np.all(last["label"][2:] == 0)
    )
    # A masked metric over the padded batches equals the metric over the plain arrays.
    pixel_sum = sum(float((b["image"].sum(axis=(1, 2, 3)) * b["mask"]).sum()) for b in batches)
    np.testing.assert_allclose(pixel_sum, x.astype(np.float64).sum() / 255, rtol=1e-6)
    hits = sum(int(((b["label"] == 1) & b["mask"]).sum()) for b in batches)
    assert hits == int((y == 1).sum())


def test_pad_batch():
    batch = {"image": np.ones((3, 2, 2, 1), np.float32), "label": np.array([4, 5, 6], np.int32)}
    out = pad_batch(batch, 5)
    assert out["image"].shape == (5, 2, 2, 1) and out["label"].tolist() == [4, 5, 6, 0, 0]
    assert out["mask"].tolist() == [True, True, True, False, False]
    with pytest.raises(ValueError, match="does not fit"):
        pad_batch(batch, 2)


def test_normalisation_inside_the_batcher():
    x = np.full((4, 2, 2, 3), 100, np.uint8)
    y = np.zeros(4, np.int32)
    mean, std = np.array([100.0, 50.0, 0.0]), np.array([1.0, 10.0, 100.0])
    (b,) = iterate_batches(x, y, 4, shuffle=False, drop_remainder=True, mean=mean, std=std)
    np.testing.assert_allclose(b["image"][0, 0, 0], [0.0, 5.0, 1.0])
    (b,) = iterate_batches(x, y, 4, shuffle=False, drop_remainder=True)
    np.testing.assert_allclose(b["image"], 100 / 255, rtol=1e-6)


# ----------------------------------------------------------------------------- augmentation
def reference_crop_flip(images, oy, ox, flip, pad, mode):
    """Pixel-by-pixel: out[i, r, c] = image_i at padded position (oy + r, ox + c'), c' mirrored."""
    n, h, w, _ = images.shape
    out = np.zeros_like(images)

    def source(p, size):  # padded coordinate -> original coordinate, or None outside (zero pad)
        q = p - pad
        if 0 <= q < size:
            return q
        if mode == "constant":
            return None
        return -q if q < 0 else 2 * (size - 1) - q  # reflect without repeating the edge

    for i in range(n):
        for r in range(h):
            for c in range(w):
                cc = w - 1 - c if flip[i] else c
                sr, sc = source(oy[i] + r, h), source(ox[i] + cc, w)
                if sr is not None and sc is not None:
                    out[i, r, c, :] = images[i, sr, sc, :]
    return out


@pytest.mark.parametrize("mode", ["constant", "reflect"])
def test_crop_flip_matches_pixel_loop(mode):
    rng = np.random.default_rng(0)
    x = rng.integers(1, 256, (12, 5, 7, 2), dtype=np.uint8)
    pad = 2
    oy = rng.integers(0, 2 * pad + 1, 12)
    ox = rng.integers(0, 2 * pad + 1, 12)
    flip = rng.random(12) < 0.5
    oy[:2], ox[:2], flip[:2] = [0, 4], [4, 0], [True, False]  # the extreme corners
    got = crop_flip(x, oy, ox, flip, pad=pad, mode=mode)
    np.testing.assert_array_equal(got, reference_crop_flip(x, oy, ox, flip, pad, mode))
    # Offset pad, no flip: the identity.
    same = crop_flip(x, np.full(12, pad), np.full(12, pad), np.zeros(12, bool), pad=pad, mode=mode)
    np.testing.assert_array_equal(same, x)
    with pytest.raises(ValueError, match="offsets must lie"):
        crop_flip(x, np.full(12, 5), ox, flip, pad=pad)


def test_random_crop_flip_really_crops_and_flips():
    pad, n = 4, 300
    # One constructed 32x32x3 image, repeated n times: channel 0 is the row + 1, channel 1 the
    # column + 1, so every pixel is distinct and nonzero and no two crops/flips coincide.
    base = np.full((32, 32, 3), 77, np.uint8)
    base[:, :, 0] = np.arange(1, 33)[:, None]
    base[:, :, 1] = np.arange(1, 33)[None, :]
    images = np.repeat(base[None], n, axis=0)
    out = random_crop_flip(images, np.random.default_rng(0), pad=pad)
    assert out.shape == images.shape and out.dtype == np.uint8
    padded = np.zeros((32 + 2 * pad, 32 + 2 * pad, 3), np.uint8)
    padded[pad:-pad, pad:-pad] = base
    candidates = {}
    for oy in range(2 * pad + 1):
        for ox in range(2 * pad + 1):
            crop = padded[oy : oy + 32, ox : ox + 32]
            candidates[(oy, ox, False)] = crop
            candidates[(oy, ox, True)] = crop[:, ::-1]
    seen = []
    for im in out:
        matches = [k for k, v in candidates.items() if np.array_equal(im, v)]
        assert len(matches) == 1
        seen.append(matches[0])
    flips = sum(f for _, _, f in seen)
    assert 0.35 * n < flips < 0.65 * n
    assert len({(oy, ox) for oy, ox, _ in seen}) > 60  # of 81 offsets
    assert {oy for oy, _, _ in seen} == set(range(2 * pad + 1))
    # Reproducible given the generator's seed; augmented batches are reproducible in the batcher.
    again = random_crop_flip(images, np.random.default_rng(0), pad=pad)
    np.testing.assert_array_equal(out, again)
    labels = np.zeros(n, np.int32)
    run = [
        b["image"]
        for b in iterate_batches(
            images,
            labels,
            50,
            shuffle=True,
            seed=1,
            epoch=2,
            drop_remainder=True,
            augment=random_crop_flip,
        )
    ]
    rerun = iterate_batches(
        images,
        labels,
        50,
        shuffle=True,
        seed=1,
        epoch=2,
        drop_remainder=True,
        augment=random_crop_flip,
    )
    for a, b in zip(run, rerun, strict=True):
        np.testing.assert_array_equal(a, b["image"])


# ----------------------------------------------------------------------------- prefetch
def test_prefetch_to_device_order_errors_and_close():
    import jax

    x, y = id_images(20), np.arange(20, dtype=np.int32)
    host = list(iterate_batches(x, y, 4, shuffle=True, seed=0, epoch=0, drop_remainder=True))
    batches = iterate_batches(x, y, 4, shuffle=True, seed=0, epoch=0, drop_remainder=True)
    got = list(prefetch_to_device(batches, size=2))
    assert len(got) == len(host)
    for g, h in zip(got, host, strict=True):
        assert isinstance(g["image"], jax.Array)
        np.testing.assert_array_equal(np.asarray(g["image"]), h["image"])
        np.testing.assert_array_equal(np.asarray(g["label"]), h["label"])

    def broken():
        yield {"x": np.zeros(2)}
        raise RuntimeError("reader failed")

    it = prefetch_to_device(broken())
    next(it)
    with pytest.raises(RuntimeError, match="reader failed"):
        next(it)

    def endless():
        while True:
            yield {"x": np.zeros(2)}

    before = threading.active_count()
    it = prefetch_to_device(endless(), size=2)
    next(it)
    it.close()  # stops and joins the producer thread
    assert threading.active_count() == before
