"""Write the planned shards in parallel, deterministically and resumably (prep/plan.py
decides what goes where; prep/output_folder.py what counts as done).

Each shard is written by one worker process from its own items, so its bytes never depend
on --workers. Workers are a ProcessPoolExecutor: a worker killed mid-shard (OOM, kill -9)
breaks the pool, and the run fails at once with a message instead of waiting forever for
a result that will never come (multiprocessing.Pool hung at 70% in that case). On Linux
each worker also dies with the main process (PR_SET_PDEATHSIG), so a killed run leaves no
orphans writing into the folder; its completed shards are kept and verified on resume.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from shared.manifest import Manifest, Skip, SplitInfo, write_manifest
from shared.shards import AtomicShardWriter, Sample

from .array_layouts import read_array_image
from .config import PrepConfig
from .output_folder import INFO_DIR, OutputLock, prepare_output, read_record, shard_is_done, write_record
from .plan import ShardTask, plan_fingerprint, plan_shards
from shared.patch import encode_jpeg, image_to_patch, resize_centre_crop, warn_if_stock_pillow
from .sources import Item, Source

# Exceptions that mean "this input is bad", not "this program is broken": Pillow raises
# OSError for truncated data, UnidentifiedImageError (an OSError) for unknown formats,
# SyntaxError/ValueError from some plugins on corrupt headers; simplejpeg ValueError for
# damaged JPEGs; ours ValueError for images over --max-pixels.
BAD_INPUT_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


class PrepInterrupted(RuntimeError):
    """The run stopped before every shard was written; re-running the command resumes it."""


def process_item(src: Path, layout: str, item: Item, cfg: PrepConfig) -> Sample:
    if item.member >= 0:
        img = read_array_image(src, item, layout)
        original = img.size
        patch = resize_centre_crop(img.convert("RGB"), cfg.size, cfg.resample)
    else:
        patch, original = image_to_patch((src / item.source).read_bytes(), cfg.size, cfg.resample, cfg.max_pixels)
    meta = {"class": None, "source": item.source, "width": original[0], "height": original[1]}
    return Sample(item.key, encode_jpeg(patch, cfg.quality), item.label, meta)


def write_one_shard(args) -> tuple[str, int]:
    task, src, layout, class_labels, out, cfg = args
    skips = []
    with AtomicShardWriter(out / task.name) as writer:
        for item in task.items:
            try:
                sample = process_item(src, layout, item, cfg)
            except BAD_INPUT_ERRORS as exc:
                skips.append({"path": item.source, "split": task.split,
                              "reason": f"unreadable or not a decodable image: {type(exc).__name__}: {exc}"})
                continue
            sample.meta["class"] = class_labels[item.label]
            writer.write(sample)
    write_record(out, task.name, writer.count, skips)
    return task.name, len(task.items)


def die_with_parent(parent: int) -> None:
    """Pool initializer: on Linux, SIGKILL this worker when the main process dies."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


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
        with ProcessPoolExecutor(cfg.workers, mp_context=multiprocessing.get_context("fork"),
                                 initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
            try:
                for future in as_completed([pool.submit(write_one_shard, job) for job in jobs]):
                    bar.update(future.result()[1])
            except BrokenProcessPool:
                raise PrepInterrupted(f"a worker process died (killed, or out of memory?) while writing {out}; "
                                      f"completed shards are kept and checked: run the same command again to "
                                      f"resume") from None


def find_done(tasks: list[ShardTask], out: Path, workers: int) -> set[str]:
    """Names of shards that verifiably match their records (hashing is parallel)."""
    names = [t.name for t in tasks if (out / t.name).exists()]
    if workers <= 1 or len(names) < 2:
        return {n for n in names if shard_is_done(out, n)}
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return {n for n, ok in zip(names, pool.map(shard_is_done, [out] * len(names), names)) if ok}


def build_manifest(source: Source, tasks: list[ShardTask], out: Path, cfg: PrepConfig, flavour: dict) -> Manifest:
    splits: dict[str, SplitInfo] = {}
    skipped = list(source.skipped)
    for task in tasks:
        record = read_record(out, task.name)
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
    versions = {"python": sys.version.split()[0], "numpy": np.__version__, **flavour}
    return Manifest(source.task, source.layout, cfg.size, source.classes, splits, prep, versions,
                    skipped, source.ignored)


def write_dataset(source: Source, cfg: PrepConfig, out: Path) -> Manifest | None:
    """Writes every shard this machine owns; the manifest once all shards exist.
    Returns the manifest, or None when other parts are still missing."""
    flavour = warn_if_stock_pillow()
    tasks = plan_shards(source, cfg)
    with OutputLock(out):
        prepare_output(out, plan_fingerprint(tasks, cfg), cfg.overwrite)
        part = cfg.parse_part()
        mine = [t for g, t in enumerate(tasks) if part is None or g % part[1] == part[0] - 1]
        done = find_done(tasks, out, cfg.workers)
        todo = [t for t in mine if t.name not in done]
        if len(todo) < len(mine):
            print(f"resuming: {len(mine) - len(todo)} of {len(mine)} shards already complete (size, sha256 and "
                  f"sample count checked)", file=sys.stderr)
        if todo:
            run_tasks(todo, source, out, cfg)
            done |= {t.name for t in todo}
        missing = [t.name for t in tasks if t.name not in done]
        if missing:
            print(f"part {cfg.part} done; {len(missing)} shards of other parts missing (e.g. {missing[0]}). "
                  f"Copy every part's output folder (with {INFO_DIR}/) into one and re-run without --part "
                  f"to write the manifest.", file=sys.stderr)
            return None
        manifest = build_manifest(source, tasks, out, cfg, flavour)
        write_manifest(manifest, out)
    return manifest
