"""Training-set pixel statistics: per-channel mean (§2) and RGB covariance PCA (§4.1).

Exact accumulation: channel sums and sums of x x^T are integers. Per chunk of at most
64 images (4.2M pixels), x^T x is a float64 matmul whose every partial sum is an integer
below 2^53 (<= 4.2M * 255^2 = 2.7e11), hence exact; totals are kept as Python ints, so
ImageNet's 8.4e10 pixels lose nothing.
"""
from __future__ import annotations

import io
import math
import multiprocessing
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from shared.manifest import read_manifest
from shared.shards import iter_shard
from shared.stats import MEAN_IMAGE_NAME, RgbStats, write_stats

CHUNK_IMAGES = 64


def _accumulate_chunk(chunk: list[np.ndarray], acc: dict) -> None:
    stacked = np.stack(chunk)
    acc["image_sum"] += stacked.sum(axis=0, dtype=np.int64)
    x = stacked.reshape(-1, 3)
    acc["sum"] += x.sum(axis=0, dtype=np.int64)
    xf = x.astype(np.float64)
    acc["outer"] += np.rint(xf.T @ xf).astype(np.int64)
    acc["pixels"] += x.shape[0]


def accumulate_shard(path: str) -> dict:
    """Integer sums over one shard's images (runs in a worker process)."""
    acc = {"images": 0, "pixels": 0, "sum": np.zeros(3, np.int64),
           "outer": np.zeros((3, 3), np.int64), "image_sum": None}
    chunk: list[np.ndarray] = []
    for sample in iter_shard(path):
        with Image.open(io.BytesIO(sample.jpg)) as img:
            arr = np.asarray(img.convert("RGB"))
        if acc["image_sum"] is None:
            acc["image_sum"] = np.zeros(arr.shape, np.int64)
        elif arr.shape != acc["image_sum"].shape:
            raise ValueError(f"{path}: sample {sample.key} is {arr.shape}, others {acc['image_sum'].shape}")
        acc["images"] += 1
        chunk.append(arr)
        if len(chunk) == CHUNK_IMAGES:
            _accumulate_chunk(chunk, acc)
            chunk = []
    if chunk:
        _accumulate_chunk(chunk, acc)
    return acc


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


def compute_rgb_stats(root: Path, workers: int, mean_image: bool = True) -> RgbStats:
    manifest = read_manifest(root)
    paths = manifest.shard_paths(root, "train")
    images, pixels = 0, 0
    sums, outer = [0, 0, 0], [[0] * 3 for _ in range(3)]
    image_sum = None
    expected = manifest.splits["train"].samples
    with tqdm(total=expected, unit="img", desc=f"stats {root.name}", file=sys.stderr) as bar:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(max(1, workers)) as pool:
            for acc in pool.imap_unordered(accumulate_shard, paths):
                images += acc["images"]
                pixels += acc["pixels"]
                sums = [a + int(b) for a, b in zip(sums, acc["sum"])]
                outer = [[outer[i][j] + int(acc["outer"][i, j]) for j in range(3)] for i in range(3)]
                if acc["image_sum"] is not None:
                    image_sum = acc["image_sum"] if image_sum is None else image_sum + acc["image_sum"]
                bar.update(acc["images"])
    if images != expected:
        raise ValueError(f"{root}: read {images} train samples, manifest says {expected}")
    stats = summarise(images, pixels, sums, outer, "train")
    if mean_image and image_sum is not None:
        np.save(root / MEAN_IMAGE_NAME, image_sum / images)  # cuda-convnet subtracted this image
        stats.mean_image = MEAN_IMAGE_NAME
    write_stats(stats, root)
    return stats
