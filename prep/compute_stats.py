"""Training-set pixel statistics: per-channel mean (§2), RGB covariance PCA (§4.1) and the
per-pixel mean image cuda-convnet subtracted, at the speed of decoding the shards.

Exact: every sum is an integer. One pass per image (`_accumulate`, compiled by numba: numpy
needed ~5 array passes per image, and a 3x3 float64 Gram of a 65,536 x 3 matrix is one of
BLAS's worst shapes -- 900 us per patch against 240 us to decode it) adds the pixels into a
uint32 image sum (exact up to 16.8M images, flushed into int64 before) and their six products
r*r ... b*b into uint64s. Channel sums come from the image sum; totals are Python ints, so
ImageNet's 8.4e10 pixels lose nothing. Memory stays flat: a worker holds one shard and its
sums, the main process one int64 image sum.

Patches are decoded by `shared.patch.decode_patch`, the decoder training uses, so the
statistics are those of the pixels the network sees."""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
from tqdm import tqdm

from shared.folder_locks import DatasetWriteLock
from shared.json_files import write_atomic
from shared.manifest import read_manifest
from shared.patch import decode_patch
from shared.shards import iter_shard, shard_error
from shared.stats import MEAN_IMAGE_NAME, STATS_NAME, RgbStats, write_stats

from .worker_pool import run_jobs

FLUSH_IMAGES = (2**32 - 1) // 255  # uint32 image sums stay exact for this many images
PAIRS = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))  # the order of `moments`


@numba.njit(nogil=True, boundscheck=False, cache=False)
def _accumulate(pixels, image_sum, moments):  # pragma: no cover (compiled; tested through compute_rgb_stats)
    """pixels: one HWC uint8 image, flat; image_sum: uint32, same length; moments: uint64[6]."""
    rr = rg = rb = gg = gb = bb = 0
    for k in range(pixels.size // 3):
        r, g, b = np.uint32(pixels[3 * k]), np.uint32(pixels[3 * k + 1]), np.uint32(pixels[3 * k + 2])
        image_sum[3 * k] += r
        image_sum[3 * k + 1] += g
        image_sum[3 * k + 2] += b
        rr += r * r
        rg += r * g
        rb += r * b
        gg += g * g
        gb += g * b
        bb += b * b
    moments[0] += rr
    moments[1] += rg
    moments[2] += rb
    moments[3] += gg
    moments[4] += gb
    moments[5] += bb


@dataclass
class ShardSums:
    images: int
    image_sum: np.ndarray  # int64 (patch, patch, 3)
    moments: list[int]  # sums of r*r, r*g, r*b, g*g, g*b, b*b


def accumulate_shard(job) -> ShardSums:
    """Integer sums over one shard's images (in a worker process). The shard is checked
    against its manifest entry as it is read: size before, sample count after."""
    path, expected_samples, expected_bytes, patch = job
    if Path(path).stat().st_size != expected_bytes:
        raise shard_error(path, f"{Path(path).stat().st_size:,} bytes, the manifest says {expected_bytes:,}")
    total = np.zeros(patch * patch * 3, np.int64)
    acc = np.zeros(patch * patch * 3, np.uint32)
    moments = np.zeros(6, np.uint64)
    images = 0
    for sample in iter_shard(path, meta=False):
        try:
            pixels = decode_patch(sample.jpg)
        except ValueError as exc:
            raise shard_error(path, f"sample {sample.key!r} cannot be decoded ({exc})") from None
        if pixels.shape != (patch, patch, 3):
            raise shard_error(path, f"sample {sample.key!r} is {pixels.shape}, the manifest's patches are "
                                   f"{(patch, patch, 3)}")
        _accumulate(pixels.reshape(-1), acc, moments)
        images += 1
        if images % FLUSH_IMAGES == 0:
            total += acc
            acc[:] = 0
    if images != expected_samples:
        raise shard_error(path, f"{images} samples, the manifest says {expected_samples}")
    return ShardSums(images, (total + acc).reshape(patch, patch, 3), [int(m) for m in moments])


def summarise(n_images: int, n_pixels: int, sums: list[int], outer: list[list[int]],
              split: str) -> RgbStats:
    """Mean, population covariance and its eigen-decomposition from exact integer sums."""
    n = n_pixels
    mean = [s / n for s in sums]
    # (n * sum(x x^T) - sum(x) sum(x)^T) / n^2 in exact integers, one rounding at the end.
    cov = [[(n * outer[i][j] - sums[i] * sums[j]) / (n * n) for j in range(3)] for i in range(3)]
    values, vectors = np.linalg.eigh(np.array(cov))
    values = np.clip(values, 0.0, None)  # rank-deficient data (greyscale) gives -1e-13 for 0
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order].T  # rows = eigenvectors
    for row in vectors:  # sign convention: largest-magnitude component positive
        if row[np.argmax(np.abs(row))] < 0:
            row *= -1
    return RgbStats(split=split, image_count=n_images, pixel_count=n_pixels, sum_rgb=sums,
                    sum_outer_rgb=outer, mean_rgb=mean, std_rgb=[math.sqrt(cov[i][i]) for i in range(3)],
                    covariance_rgb=cov, eigenvalues=values.tolist(), eigenvectors=vectors.tolist())


def outer_from_moments(moments: list[int]) -> list[list[int]]:
    outer = [[0] * 3 for _ in range(3)]
    for (i, j), m in zip(PAIRS, moments):
        outer[i][j] = outer[j][i] = m
    return outer


def compute_rgb_stats(root: Path, workers: int, mean_image: bool = True) -> RgbStats:
    """stats.json (and the mean image) of a dataset folder, written as its only writer: never
    under a training that reads them (shared/folder_locks.py)."""
    with DatasetWriteLock(root):
        return _compute_rgb_stats(root, workers, mean_image)


def _compute_rgb_stats(root: Path, workers: int, mean_image: bool) -> RgbStats:
    manifest = read_manifest(root)
    info = manifest.splits.get("train")
    if info is None or info.samples == 0:
        raise ValueError(f"{root}: no train split; statistics describe the training set")
    patch = manifest.patch_size
    jobs = [(str(root / name), n, size, patch) for name, n, size in zip(info.shards, info.shard_samples,
                                                                          info.shard_bytes)]
    missing = [path for path, *_ in jobs if not Path(path).is_file()]
    if missing:
        raise shard_error(missing[0], f"missing ({len(missing)} of {len(jobs)} train shards are)")
    _accumulate(np.zeros(3, np.uint8), np.zeros(3, np.uint32), np.zeros(6, np.uint64))  # compile before forking
    totals = {"images": 0, "image_sum": np.zeros((patch, patch, 3), np.int64), "moments": [0] * 6}

    def add(sums: ShardSums) -> None:
        totals["images"] += sums.images
        totals["image_sum"] += sums.image_sum
        totals["moments"] = [a + b for a, b in zip(totals["moments"], sums.moments)]
        bar.update(sums.images)

    with tqdm(total=info.samples, unit="img", desc=f"stats {root.name}", file=sys.stderr) as bar:
        run_jobs(accumulate_shard, jobs, workers, add, f"computing the statistics of {root}",
                 "nothing was written: run the same command again")
    images, image_sum = totals["images"], totals["image_sum"]
    sums = [int(s) for s in image_sum.reshape(-1, 3).sum(axis=0)]
    stats = summarise(images, images * patch * patch, sums, outer_from_moments(totals["moments"]), "train")
    (root / STATS_NAME).unlink(missing_ok=True)  # never a new mean image beside old statistics
    if mean_image:
        mean = image_sum / images  # cuda-convnet subtracted this image
        write_atomic(root / MEAN_IMAGE_NAME, lambda f: np.save(f, mean, allow_pickle=False))
        stats.mean_image = MEAN_IMAGE_NAME
    write_stats(stats, root)
    return stats
