"""`stats.json`: training-set pixel statistics (paper §2 mean activity, §4.1 RGB PCA).

All values are on the 0–255 pixel scale. `eigenvectors[i]` is the unit eigenvector
(R, G, B components) belonging to `eigenvalues[i]`; eigenvalues are sorted descending.
The exact integer sums are stored too, so the figures can be audited or merged.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .json_files import read_json, write_json_atomic

STATS_NAME = "stats.json"
MEAN_IMAGE_NAME = "mean_image.npy"


@dataclass
class RgbStats:
    split: str
    image_count: int
    pixel_count: int
    sum_rgb: list[int]  # exact per-channel sums
    sum_outer_rgb: list[list[int]]  # exact sums of x x^T over pixels
    mean_rgb: list[float]
    std_rgb: list[float]
    covariance_rgb: list[list[float]]  # population covariance
    eigenvalues: list[float]
    eigenvectors: list[list[float]]
    mean_image: str | None = None  # file beside stats.json: float64 (256, 256, 3)


def write_stats(stats: RgbStats, root: str | os.PathLike) -> Path:
    return write_json_atomic(Path(root) / STATS_NAME, asdict(stats))


def read_stats(root: str | os.PathLike) -> RgbStats:
    path = Path(root) / STATS_NAME
    d = read_json(path, f"the trainer needs the training-set mean and RGB PCA (paper §2, §4.1); "
                        f"run `alexnet-prep stats --shards {root}`")
    try:
        stats = RgbStats(**d)
    except TypeError as exc:
        raise ValueError(f"{path}: malformed stats file ({exc})") from exc
    check_stats(stats, path)
    return stats


def read_mean_image(root: str | os.PathLike, patch: int):
    """The (patch, patch, 3) float64 mean image beside stats.json (cuda-convnet subtracted it).
    The .npy header is checked (float64, that shape) before any data is read: a header
    claiming 10^10 values or a structured dtype is refused, never allocated; no pickle."""
    import numpy as np  # only readers of the mean image need numpy here

    path = Path(root) / MEAN_IMAGE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `alexnet-prep stats --shards {root}` (it writes the mean "
                                f"image), or train with --normalize mean")
    expected = (patch, patch, 3)
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f, max_header_size=10_000)
            if shape != expected or dtype != np.dtype("<f8") or fortran:
                raise ValueError(f"holds {dtype} of shape {shape}, expected float64 of shape {expected}")
            image = np.fromfile(f, dtype="<f8", count=patch * patch * 3)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ValueError(f"{path}: not the mean image ({exc}); re-run alexnet-prep stats") from None
    if image.size != patch * patch * 3:
        raise ValueError(f"{path}: cut short ({image.size} of {patch * patch * 3} values); re-run alexnet-prep stats")
    image = image.reshape(expected)
    if not np.isfinite(image).all() or image.min() < 0 or image.max() > 255:
        raise ValueError(f"{path}: values outside 0..255 (or not finite); re-run alexnet-prep stats")
    return image


def _numbers(values, n: int) -> bool:
    return isinstance(values, list) and len(values) == n and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def check_stats(stats: RgbStats, path) -> None:
    """What training relies on: finite means in 0..255, std > 0, eigenvalues >= 0 (descending),
    orthonormal eigenvectors, a positive image count. A file failing this (NaN from a broken
    run, a hand edit) would otherwise train a whole epoch into NaN or evaluate silently wrong."""
    problems = []
    if not (_numbers(stats.mean_rgb, 3) and all(0 <= m <= 255 for m in stats.mean_rgb)):
        problems.append(f"mean_rgb {stats.mean_rgb} (3 finite values in 0..255)")
    if not (_numbers(stats.std_rgb, 3) and all(s > 0 for s in stats.std_rgb)):
        problems.append(f"std_rgb {stats.std_rgb} (3 finite values > 0)")
    if not (_numbers(stats.eigenvalues, 3) and all(v >= 0 for v in stats.eigenvalues)
            and stats.eigenvalues == sorted(stats.eigenvalues, reverse=True)):
        problems.append(f"eigenvalues {stats.eigenvalues} (3 finite values >= 0, descending)")
    vectors = stats.eigenvectors
    if not (isinstance(vectors, list) and len(vectors) == 3 and all(_numbers(v, 3) for v in vectors)):
        problems.append("eigenvectors (3 rows of 3 finite values)")
    elif any(abs(sum(a * b for a, b in zip(vectors[i], vectors[j])) - (i == j)) > 1e-6
             for i in range(3) for j in range(3)):
        problems.append("eigenvectors (not orthonormal)")
    if not (type(stats.image_count) is int and stats.image_count > 0):  # `true` is no count
        problems.append(f"image_count {stats.image_count!r} (> 0)")
    if problems:
        raise ValueError(f"{path}: invalid statistics: " + "; ".join(problems)
                         + ". Re-run `alexnet-prep stats` on this folder.")
