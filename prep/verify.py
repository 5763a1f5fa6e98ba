"""`alexnet-prep verify`: is a dataset folder (copied, synced, downloaded) what its manifest
says? Every shard is re-read: size, sha256, member order and sample count; then every
sample: its patch's side against the manifest's patch_size, its class index against the
classes, and the shard's provenance -- the (key, label, source) rows recomputed from its
samples against the manifest's record (a shard of another source or --seed differs); keys
once in the whole dataset. stats.json is checked for sane values and for the train split it
claims to describe."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import simplejpeg

from shared.manifest import read_manifest
from shared.shards import MEMBER_ORDER, iter_shard, list_members, shard_problem
from shared.stats import STATS_NAME, read_mean_image, read_stats

from .plan import items_sha256 as items_sha256_of


def verify_dataset(root: Path, workers: int = 4) -> tuple[list[str], int]:
    """(problems, shards checked). Problems name the file and what differs."""
    try:
        manifest = read_manifest(root)
    except (FileNotFoundError, ValueError) as exc:
        return [str(exc)], 0
    jobs = [(root / name, n, size, digest) for info in manifest.splits.values()
            for name, n, size, digest in zip(info.shards, info.shard_samples, info.shard_bytes, info.shard_sha256)]
    provenance = [(root / name, items) for info in manifest.splits.values()
                  for name, items in zip(info.shards, info.shard_items_sha256 or [None] * len(info.shards))]
    with ThreadPoolExecutor(max(1, workers)) as pool:  # hashlib and file reads release the GIL
        problems = [p for p in pool.map(lambda job: shard_problem(*job), jobs) if p]
        if not problems:  # every shard is whole: its samples can be read
            problems += [p for found in pool.map(lambda job: sample_problems(*job, manifest), provenance)
                         for p in found]
            problems += repeated_keys([job[0] for job in jobs], pool)
    problems += stats_problems(root, manifest.splits["train"].samples if "train" in manifest.splits else 0,
                               manifest.patch_size)
    return problems, len(jobs)


MAX_LISTED = 3  # problems named per shard; the rest are counted


def sample_problems(path: Path, items_sha256: str | None, manifest) -> list[str]:
    """Each sample's patch side and class index, and the shard's provenance."""
    problems, rows = [], []
    side = manifest.patch_size
    try:
        samples = list(iter_shard(path))
    except (ValueError, OSError) as exc:
        return [f"{path.name}: unreadable samples ({exc})"]
    for sample in samples:
        rows.append((sample.key, sample.label, sample.meta.get("source") if isinstance(sample.meta, dict) else None))
        try:
            height, width, _, _ = simplejpeg.decode_jpeg_header(sample.jpg)
        except ValueError as exc:
            problems.append(f"{path.name}: sample {sample.key!r}: not a readable JPEG ({exc})")
            continue
        if (width, height) != (side, side):
            problems.append(f"{path.name}: sample {sample.key!r} is {width}x{height} px, the manifest's patch_size "
                            f"is {side}")
        if not 0 <= sample.label < manifest.num_classes:
            problems.append(f"{path.name}: sample {sample.key!r} has class {sample.label}, outside the manifest's "
                            f"0..{manifest.num_classes - 1}")
    if len(problems) > MAX_LISTED:
        problems = problems[:MAX_LISTED] + [f"{path.name}: ... {len(problems) - MAX_LISTED} more samples like these"]
    if items_sha256 is not None and items_sha256_of(rows) != items_sha256:
        problems.append(f"{path.name}: its samples (keys, labels, sources) are not the ones the manifest records for "
                        f"it: a shard of another source, --seed or --shard-size (a --part of another run?)")
    return problems


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
