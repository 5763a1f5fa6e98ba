"""`alexnet-prep verify`: is a dataset folder (copied, synced, downloaded) what its manifest
says? Every shard is re-read: size, sha256, member order and sample count; stats.json is
checked for sane values and for the train split it claims to describe."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from shared.manifest import read_manifest
from shared.shards import MEMBER_ORDER, list_members, shard_problem
from shared.stats import STATS_NAME, read_mean_image, read_stats


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
        if not problems:
            problems += repeated_keys([job[0] for job in jobs], pool)
    problems += stats_problems(root, manifest.splits["train"].samples if "train" in manifest.splits else 0,
                               manifest.patch_size)
    return problems, len(jobs)


def repeated_keys(paths: list[Path], pool) -> list[str]:
    """A sample key must name one sample in the whole dataset (each shard checks its own)."""
    where: dict[str, str] = {}
    problems = []
    for path, names in zip(paths, pool.map(list_members, paths)):
        for name in names[::len(MEMBER_ORDER)]:
            key = name.partition(".")[0]
            if key in where:
                problems.append(f"sample key {key!r} appears in {where[key]} and in {path.name}")
            where.setdefault(key, path.name)
    return problems[:20]


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
            read_mean_image(root, patch)
        except (FileNotFoundError, ValueError) as exc:
            problems.append(str(exc))
    return problems
