"""`alexnet-prep verify`: is a dataset folder (copied, synced, downloaded) what its manifest
says? Every shard is re-read: size, sha256, member order and sample count; stats.json is
checked for sane values and for the train split it claims to describe."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from shared.manifest import read_manifest
from shared.shards import shard_problem
from shared.stats import MEAN_IMAGE_NAME, STATS_NAME, read_stats


def verify_dataset(root: Path, workers: int = 4) -> tuple[list[str], int]:
    """(problems, shards checked). Problems name the file and what differs."""
    try:
        manifest = read_manifest(root)
    except (FileNotFoundError, ValueError) as exc:
        return [str(exc)], 0
    jobs = [(root / name, n, size, digest) for info in manifest.splits.values()
            for name, n, size, digest in zip(info.shards, info.shard_samples, info.shard_bytes, info.shard_sha256)]
    with ThreadPoolExecutor(max(1, workers)) as pool:  # hashlib and file reads release the GIL
        problems = [p for p in pool.map(lambda job: shard_problem(*job), jobs) if p]
    problems += stats_problems(root, manifest.splits["train"].samples if "train" in manifest.splits else 0,
                               manifest.patch_size)
    return problems, len(jobs)


def stats_problems(root: Path, train_samples: int, patch: int) -> list[str]:
    if not (root / STATS_NAME).exists():
        return []  # not computed yet: `alexnet-prep stats` makes it
    try:
        stats = read_stats(root)
    except (ValueError, FileNotFoundError) as exc:
        return [str(exc)]
    problems = []
    if stats.image_count != train_samples:
        problems.append(f"{root / STATS_NAME}: covers {stats.image_count} images, the train split has {train_samples}")
    if stats.mean_image:
        try:
            shape = np.load(root / MEAN_IMAGE_NAME, allow_pickle=False).shape
        except (OSError, ValueError) as exc:
            problems.append(f"{root / MEAN_IMAGE_NAME}: unreadable ({exc})")
        else:
            if shape != (patch, patch, 3):
                problems.append(f"{root / MEAN_IMAGE_NAME}: shape {shape}, expected {(patch, patch, 3)}")
    return problems
