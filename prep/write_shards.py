"""Plan shards from a `Source` and write them in parallel, deterministically and resumably.

Determinism: the plan (which item goes to which shard, in which order) depends only on
the source listing and the config, and each shard is written by one process from its
own items, so the bytes never depend on --workers or on scheduling.
Crash safety: a shard is written to `<name>.tmp` and renamed when complete; its
record (sample count, skips) goes to `.shard-info/<name>.json` just before. A re-run
redoes exactly the shards without both, and writes the manifest once all exist.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import webdataset
from PIL import Image
from tqdm import tqdm

from shared.json_files import write_json_atomic
from shared.manifest import MANIFEST_NAME, Manifest, Skip, SplitInfo, write_manifest
from shared.shards import SHARD_PATTERN, Sample, ShardWriter, file_sha256, shard_name
from shared.stats import MEAN_IMAGE_NAME, STATS_NAME

from .array_layouts import read_array_image
from .config import DEFAULT_HOLDOUT, HOLDOUT_MAX_FRACTION, PrepConfig
from .resize_image import encode_jpeg, open_image, resize_centre_crop, warn_if_stock_pillow
from .sources import Item, Source

INFO_DIR = ".shard-info"
PLAN_NAME = "plan.json"
# Exceptions that mean "this input is bad", not "this program is broken".
# Pillow raises OSError for truncated data, UnidentifiedImageError (an OSError) for
# unknown formats, SyntaxError/ValueError from some plugins on corrupt headers.
BAD_INPUT_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


@dataclass(frozen=True)
class ShardTask:
    split: str
    index: int
    items: list[Item]

    @property
    def name(self) -> str:
        return shard_name(self.split, self.index)


def holdout_size(task: str, n_train: int, requested: int | None) -> int:
    cap = int(n_train * HOLDOUT_MAX_FRACTION)
    wanted = requested if requested is not None else DEFAULT_HOLDOUT.get(task, cap)
    if requested is not None and requested > cap:
        raise ValueError(f"--holdout {requested}: at most 10% of the {n_train} training images ({cap})")
    return min(wanted, cap)


def split_holdout(items: list[Item], count: int, seed: int) -> tuple[list[Item], list[Item]]:
    """Class-stratified holdout: round-robin over classes (seeded order), one item each."""
    rng = random.Random(seed)
    by_class: dict[int, list[Item]] = {}
    for item in items:
        by_class.setdefault(item.label, []).append(item)
    for group in by_class.values():
        rng.shuffle(group)
    order = sorted(by_class)
    rng.shuffle(order)
    chosen: set[str] = set()
    depth = 0
    while len(chosen) < count:
        for label in order:
            if depth < len(by_class[label]) and len(chosen) < count:
                chosen.add(by_class[label][depth].key)
        depth += 1
    holdout = [it for it in items if it.key in chosen]
    train = [it for it in items if it.key not in chosen]
    return train, holdout


def plan_shards(source: Source, cfg: PrepConfig) -> list[ShardTask]:
    train = source.items["train"]
    n_holdout = holdout_size(source.task, len(train), cfg.holdout)
    train, holdout = split_holdout(train, n_holdout, cfg.seed)
    random.Random(cfg.seed + 1).shuffle(train)  # every train shard mixes classes
    splits = {"train": train, "holdout": holdout}
    if "val" in source.items:
        splits["val"] = source.items["val"]
    tasks = []
    for split, items in splits.items():
        for index, start in enumerate(range(0, len(items), cfg.shard_size)):
            tasks.append(ShardTask(split, index, items[start:start + cfg.shard_size]))
    return tasks


def plan_fingerprint(tasks: list[ShardTask], cfg: PrepConfig) -> dict:
    digest = hashlib.sha256()
    for task in tasks:
        for item in task.items:
            digest.update(f"{task.name}\t{item.key}\t{item.label}\t{item.source}\n".encode())
    return {"size": cfg.size, "quality": cfg.quality, "resample": cfg.resample,
            "shard_size": cfg.shard_size, "seed": cfg.seed, "holdout": cfg.holdout,
            "items_sha256": digest.hexdigest()}


def process_item(src: Path, layout: str, item: Item, cfg: PrepConfig) -> Sample:
    if item.member >= 0:
        img = read_array_image(src, item, layout)
        original = img.size
        img = img.convert("RGB")
    else:
        with open(src / item.source, "rb") as f:
            img, original = open_image(f, cfg.size)
    patch = resize_centre_crop(img, cfg.size, cfg.resample)
    meta = {"class": None, "source": item.source, "width": original[0], "height": original[1]}
    return Sample(item.key, encode_jpeg(patch, cfg.quality), item.label, meta)


def write_one_shard(args) -> tuple[str, int]:
    task, src, layout, class_labels, out, cfg = args
    skips = []
    with ShardWriter(out / task.name) as writer:
        for item in task.items:
            try:
                sample = process_item(src, layout, item, cfg)
            except BAD_INPUT_ERRORS as exc:
                skips.append({"path": item.source, "split": task.split,
                              "reason": f"unreadable or not a decodable image: {type(exc).__name__}: {exc}"})
                continue
            sample.meta["class"] = class_labels[item.label]
            writer.write(sample)
    path = out / task.name
    record = {"name": task.name, "samples": writer.count, "bytes": path.stat().st_size,
              "sha256": file_sha256(path), "skipped": skips}
    write_json_atomic(out / INFO_DIR / f"{task.name}.json", record)
    return task.name, len(task.items)


def prepare_output(out: Path, fingerprint: dict, overwrite: bool) -> None:
    """Refuses to clobber complete output; clears it with --overwrite; checks a
    partial run was made with the same plan before resuming it."""
    if (out / MANIFEST_NAME).exists() and not overwrite:
        raise FileExistsError(f"{out} already holds a complete dataset ({MANIFEST_NAME}); "
                              f"pass --overwrite to rebuild it")
    if overwrite and out.exists():
        for path in out.iterdir():
            if SHARD_PATTERN.fullmatch(path.name) or path.name.endswith(".tmp") or path.name in (
                    MANIFEST_NAME, STATS_NAME, MEAN_IMAGE_NAME):
                path.unlink()
        shutil.rmtree(out / INFO_DIR, ignore_errors=True)
    (out / INFO_DIR).mkdir(parents=True, exist_ok=True)
    plan_path = out / INFO_DIR / PLAN_NAME
    if plan_path.exists():
        previous = json.loads(plan_path.read_text())
        if previous != fingerprint:
            changed = sorted(k for k in fingerprint if previous.get(k) != fingerprint[k])
            raise ValueError(f"{out} holds a partial run made with different inputs or parameters "
                             f"({', '.join(changed)}); pass --overwrite to start again")
    else:
        write_json_atomic(plan_path, fingerprint)
    for stale in out.glob("*.tmp"):
        stale.unlink()  # left by a killed run


def shard_is_done(out: Path, name: str) -> bool:
    return (out / name).exists() and (out / INFO_DIR / f"{name}.json").exists()


def run_tasks(todo: list[ShardTask], source: Source, out: Path, cfg: PrepConfig) -> None:
    labels = [c.label for c in source.classes]
    jobs = [(t, source.root, source.layout, labels, out, cfg) for t in todo]
    total = sum(len(t.items) for t in todo)
    with tqdm(total=total, unit="img", desc=f"shard {out.name}", smoothing=0.05, file=sys.stderr) as bar:
        if cfg.workers <= 1:
            for job in jobs:
                bar.update(write_one_shard(job)[1])
            return
        # fork: workers inherit the imported modules; nothing here holds threads or CUDA.
        with multiprocessing.get_context("fork").Pool(cfg.workers) as pool:
            for _, n in pool.imap_unordered(write_one_shard, jobs, chunksize=1):
                bar.update(n)


def build_manifest(source: Source, tasks: list[ShardTask], out: Path, cfg: PrepConfig,
                   flavour: dict) -> Manifest:
    splits: dict[str, SplitInfo] = {}
    skipped = list(source.skipped)
    for task in tasks:
        record = json.loads((out / INFO_DIR / f"{task.name}.json").read_text())
        split = splits.setdefault(task.split, SplitInfo([], [], [], []))
        split.shards.append(task.name)
        split.shard_samples.append(record["samples"])
        split.shard_bytes.append(record["bytes"])
        split.shard_sha256.append(record["sha256"])
        skipped += [Skip(**s) for s in record["skipped"]]
    prep = cfg.to_dict()
    for volatile in ("workers", "part", "overwrite", "allow_skips", "out"):
        prep.pop(volatile)
    prep["task"] = source.task
    prep["holdout"] = splits["holdout"].samples if "holdout" in splits else 0
    versions = {"python": sys.version.split()[0], "numpy": np.__version__,
                "webdataset": webdataset.__version__, **flavour}
    return Manifest(source.task, source.layout, cfg.size, source.classes, splits, prep, versions,
                    skipped, source.ignored)


def write_dataset(source: Source, cfg: PrepConfig, out: Path) -> Manifest | None:
    """Writes every shard this machine owns; the manifest once all shards exist.
    Returns the manifest, or None when other parts are still missing."""
    flavour = warn_if_stock_pillow()
    tasks = plan_shards(source, cfg)
    prepare_output(out, plan_fingerprint(tasks, cfg), cfg.overwrite)
    part = cfg.parse_part()
    mine = [t for g, t in enumerate(tasks) if part is None or g % part[1] == part[0] - 1]
    todo = [t for t in mine if not shard_is_done(out, t.name)]
    if len(todo) < len(mine):
        print(f"resuming: {len(mine) - len(todo)} of {len(mine)} shards already complete", file=sys.stderr)
    if todo:
        run_tasks(todo, source, out, cfg)
    missing = [t.name for t in tasks if not shard_is_done(out, t.name)]
    if missing:
        print(f"part {cfg.part} done; {len(missing)} shards of other parts missing (e.g. {missing[0]}). "
              f"Copy every part's output folder (with {INFO_DIR}/) into one and re-run without --part "
              f"to write the manifest.", file=sys.stderr)
        return None
    manifest = build_manifest(source, tasks, out, cfg, flavour)
    write_manifest(manifest, out)
    return manifest
