"""`stats.json`: training-set pixel statistics (paper §2 mean activity, §4.1 RGB PCA).

All values are on the 0–255 pixel scale. `eigenvectors[i]` is the unit eigenvector
(R, G, B components) belonging to `eigenvalues[i]`; eigenvalues are sorted descending.
The exact integer sums are stored too, so the figures can be audited or merged.
"""
from __future__ import annotations

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
    if len(stats.mean_rgb) != 3 or len(stats.eigenvalues) != 3 or len(stats.eigenvectors) != 3:
        raise ValueError(f"{path}: expected 3 channel means, 3 eigenvalues and 3 eigenvectors")
    return stats
