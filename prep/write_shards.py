"""Write the planned shards in parallel, deterministically and resumably (prep/plan.py
decides what goes where; prep/output_folder.py what counts as done; prep/worker_pool.py
how a dead worker or Ctrl-C stops the run).

Each shard is written by one worker process from its own items, so its bytes never depend
on --workers. A killed or interrupted run keeps its completed shards; they are verified on
resume.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from shared.folder_locks import DatasetWriteLock
from shared.manifest import Manifest, Skip, SplitInfo, write_manifest
from shared.patch import BAD_IMAGE_ERRORS, encode_jpeg, image_to_patch, resize_centre_crop, warn_if_stock_pillow
from shared.shards import AtomicShardWriter, Sample

from .archives import resolve
from .config import PrepConfig
from .output_folder import (INFO_DIR, prepare_output, read_record, refuse_foreign, shard_state,
                            write_record)
from .plan import ShardTask, items_sha256, plan_fingerprint, plan_shards
from .sources import Item, Source
from .streamed_patches import PATCHES, make_patches, phase_one_skips, read_patch, remove_store
from .worker_pool import run_jobs



RESUME = "completed shards are kept and checked: run the same command again to resume"


def image_sample(item: Item, data: bytes, cfg: PrepConfig) -> Sample:
    patch, original = image_to_patch(data, cfg.size, cfg.resample, cfg.max_pixels)
    meta = {"class": None, "source": item.source, "width": original[0], "height": original[1]}
    return Sample(item.key, encode_jpeg(patch, cfg.quality), item.label, meta)


def unreadable(exc: BaseException) -> str:
    return f"unreadable or not a decodable image: {type(exc).__name__}: {exc}"


def patch_or_skip(item: Item, data: bytes, cfg: PrepConfig) -> tuple[Sample | None, str | None]:
    """Phase 1 of a streamed archive (prep/streamed_patches.py): the sample, or why not."""
    try:
        return image_sample(item, data, cfg), None
    except BAD_IMAGE_ERRORS as exc:
        return None, unreadable(exc)


def process_item(src: Path, read_record, item: Item, cfg: PrepConfig) -> Sample | None:
    """The item's sample; None for an image phase 1 already skipped (and recorded)."""
    if item.key in PATCHES:  # decoded in phase 1 from a streamed archive
        stored = read_patch(item.key)
        return None if stored is None else Sample(item.key, stored[0], item.label, json.loads(stored[1]))
    if item.member < 0:
        return image_sample(item, resolve(src, item.source).read_bytes(), cfg)
    img = read_record(src, item)  # a record of an array file (the form's reader)
    patch = resize_centre_crop(img.convert("RGB"), cfg.size, cfg.resample)
    meta = {"class": None, "source": item.source, "width": img.size[0], "height": img.size[1]}
    return Sample(item.key, encode_jpeg(patch, cfg.quality), item.label, meta)


@dataclass(frozen=True)
class ShardJob:
    """One shard for a pool worker to write: its items, and what every shard shares."""
    task: ShardTask
    root: object  # --src resolved (a folder or an ArchivePath)
    read_record: object  # the form's reader of array-file records (MNIST's idx, CIFAR's pickles), or None
    class_labels: list[str]  # class index -> the name written into each sample's metadata
    out: Path
    cfg: PrepConfig
    plan: dict  # the run's fingerprint, kept in the shard's record (prep/plan.py)


def write_one_shard(job: ShardJob) -> tuple[str, int]:
    task, skips, written = job.task, [], []
    with AtomicShardWriter(job.out / task.name) as writer:
        for item in task.items:
            try:
                sample = process_item(job.root, job.read_record, item, job.cfg)
            except BAD_IMAGE_ERRORS as exc:
                skips.append({"path": item.source, "split": task.split, "reason": unreadable(exc)})
                continue
            if sample is not None:
                sample.meta["class"] = job.class_labels[item.label]
                writer.write(sample)
                written.append((item.key, item.label, item.source))
    write_record(job.out, task.name, writer.count, skips, job.plan, items_sha256(written))
    return task.name, len(task.items)


def run_tasks(todo: list[ShardTask], source: Source, out: Path, cfg: PrepConfig, plan: dict) -> None:
    labels = [c.label for c in source.classes]
    jobs = [ShardJob(t, source.root, source.read_record, labels, out, cfg, plan) for t in todo]
    total = sum(len(t.items) for t in todo)
    with tqdm(total=total, unit="img", desc=f"shard {out.name}", smoothing=0.05, file=sys.stderr) as bar:
        run_jobs(write_one_shard, jobs, cfg.workers, lambda done: bar.update(done[1]), f"writing {out}", RESUME)


def find_done(tasks: list[ShardTask], out: Path, workers: int, plan: dict) -> set[str]:
    """Names of shards that verifiably match their records and this plan (hashing is
    parallel); an intact shard of another plan is refused (prep/output_folder.py)."""
    names = [t.name for t in tasks if (out / t.name).exists()]
    states: dict[str, str | None] = {}
    run_jobs(_check_done, [(out, n, plan) for n in names], workers if len(names) > 1 else 1,
             lambda result: states.__setitem__(*result), f"checking the shards in {out}", RESUME)
    for name in names:
        if states[name] not in (None, "done"):
            refuse_foreign(out, name, states[name])
    return {name for name in names if states[name] == "done"}


def _check_done(job) -> tuple[str, str | None]:
    out, name, plan = job
    return name, shard_state(out, name, plan)


def build_manifest(source: Source, tasks: list[ShardTask], out: Path, cfg: PrepConfig, flavour: dict) -> Manifest:
    splits: dict[str, SplitInfo] = {}
    skipped = list(source.skipped)
    for task in tasks:
        record = read_record(out, task.name)
        split = splits.setdefault(task.split, SplitInfo([], [], [], [], []))
        split.shards.append(task.name)
        split.shard_items_sha256.append(record["items_sha256"])
        split.shard_samples.append(record["samples"])
        split.shard_bytes.append(record["bytes"])
        split.shard_sha256.append(record["sha256"])
        skipped += [Skip(**s) for s in record["skipped"]]
    skipped += [Skip(**s) for s in phase_one_skips(out)]
    prep = cfg.to_dict()
    for volatile in ("workers", "part", "overwrite", "allow_skips", "out"):
        prep.pop(volatile)
    prep["task"] = source.task
    prep["holdout"] = splits["holdout"].samples if "holdout" in splits else 0
    versions = {"python": sys.version.split()[0], "numpy": np.__version__, **flavour}
    return Manifest(source.task, source.layout, cfg.size, source.classes, splits, prep, versions,
                    skipped, source.ignored)


def write_dataset(source: Source, cfg: PrepConfig, out: Path) -> Manifest | None:
    """Writes every shard this machine owns; the manifest once all shards exist.
    Returns the manifest, or None when other parts are still missing."""
    flavour = warn_if_stock_pillow()
    tasks = plan_shards(source, cfg)
    with DatasetWriteLock(out):
        plan = plan_fingerprint(source, tasks, cfg)
        prepare_output(out, plan, cfg.overwrite)
        part = cfg.parse_part()
        mine = [t for g, t in enumerate(tasks) if part is None or g % part[1] == part[0] - 1]
        done = find_done(tasks, out, cfg.workers, plan)
        todo = [t for t in mine if t.name not in done]
        if len(todo) < len(mine):
            print(f"resuming: {len(mine) - len(todo)} of {len(mine)} shards already complete (size, sha256 and "
                  f"sample count checked)", file=sys.stderr)
        if todo and not make_patches(source, out, cfg, patch_or_skip, part, plan):
            return None  # other parts' images are still to be decoded
        if todo:
            run_tasks(todo, source, out, cfg, plan)
            done |= {t.name for t in todo}
        missing = [t.name for t in tasks if t.name not in done]
        if missing:
            print(f"part {cfg.part} done; {len(missing)} shards of other parts missing (e.g. {missing[0]}). "
                  f"Copy every part's output folder (with {INFO_DIR}/) into one and re-run without --part "
                  f"to write the manifest.", file=sys.stderr)
            return None
        manifest = build_manifest(source, tasks, out, cfg, flavour)
        write_manifest(manifest, out)
        remove_store(out)  # the streamed archives' patches are in the shards now
    return manifest
