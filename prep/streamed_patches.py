"""Images inside tar.gz archives (Hugging Face's imagenet-1k, an ImageNetV2 tar.gz): decoded
in one streaming pass per archive, then assembled into the planned shards.

gzip has no random access and one of Hugging Face's train archives is ~30 GB, so its images
cannot be read one at a time as a folder's or a zip's are, nor held in memory. Phase 1
streams each archive once, in archive order, and hands runs of RUN consecutive images to the
workers, which make each image's patch (the bytes a folder of the same images gives) and
write the run to `<out>/.patches/<archive>-NNNNNN.tar` atomically with a record. Phase 2
writes the planned shards from those patches (prep/write_shards.py), reading each by offset.

Memory: at most 2 x workers runs are in flight (bench/imagenet_archives.py measures it). Resume: a run whose
file matches its record is not decoded again (its members are still inflated on the way).
Runs are cut by archive position, never by --workers, so the patches -- and the shards --
are byte-identical whatever --workers is. Disk: the store is about as big as the shards;
it is deleted once the manifest is written. With --part k/N a machine decodes every N-th run;
the run without --part, in a folder holding every part's `.patches/`, writes the shards.
"""
from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from shared.shards import MEMBER_ORDER, AtomicShardWriter, iter_members

from .archives import ArchivePath, resolve
from .output_folder import INFO_DIR, STORE, read_record, refuse_foreign, shard_state, write_record
from .sources import Item, Source
from .worker_pool import run_jobs

RUN = 128  # images per run: 2 x workers runs of ImageNet's ~110 KB JPEGs stay within ~30 MB per worker

# key -> (patch file, offsets and sizes of its .jpg and .json), or None for an image phase 1
# skipped (its reason is in the run's record). Set in the main process before phase 2's
# workers fork; they inherit it.
PATCHES: dict[str, tuple[str, int, int, int, int] | None] = {}


def streamed_items(source: Source) -> dict[str, list[tuple[str, Item, str]]]:
    """Archive path -> (member, item, split) of the image items that live in a streamed
    archive, in archive order."""
    by_archive: dict[str, dict[str, tuple[Item, str]]] = {}
    archives = {}
    for split, items in source.items.items():
        for item in items:
            if item.member >= 0:
                continue
            where = resolve(source.root, item.source)
            if isinstance(where, ArchivePath) and where.archive.streamed:
                by_archive.setdefault(where.archive.path, {})[where.member] = (item, split)
                archives[where.archive.path] = where.archive
    return {path: [(m, *members[m]) for m in archives[path].order if m in members]
            for path, members in sorted(by_archive.items())}


def plan_runs(streamed: dict[str, list[tuple[str, Item, str]]]) -> list[tuple[str, str, list]]:
    """(run name, archive path, its members) in archive order: RUN images per run."""
    runs = []
    for path, members in streamed.items():
        stem = Path(path).name.split(".")[0]
        for index, start in enumerate(range(0, len(members), RUN)):
            runs.append((f"{stem}-{index:06d}.tar", path, members[start:start + RUN]))
    return runs


def make_patches(source: Source, out: Path, cfg, make_sample, part: tuple[int, int] | None, plan: dict) -> bool:
    """Phase 1. Returns True when every run's patches are on disk (phase 2 can start)."""
    PATCHES.clear()
    streamed = streamed_items(source)
    if not streamed:
        return True
    store = out / STORE
    (store / INFO_DIR).mkdir(parents=True, exist_ok=True)
    runs = plan_runs(streamed)
    mine = {name for g, (name, _, _) in enumerate(runs) if part is None or g % part[1] == part[0] - 1}
    done = set()
    for name, _, _ in runs:
        state = shard_state(store, name, plan) if (store / name).exists() else None
        if state not in (None, "done"):
            refuse_foreign(store, name, state)
        if state == "done":
            done.add(name)
    todo = [r for r in runs if r[0] in mine and r[0] not in done]
    labels = [c.label for c in source.classes]
    with tqdm(total=sum(len(m) for _, _, m in todo), unit="img", desc=f"decode {out.name}", file=sys.stderr) as bar:
        run_jobs(write_patch_run, _stream_runs(source, todo, PatchRun(store, labels, cfg, make_sample, plan)),
                 cfg.workers,
                 lambda n: bar.update(n), f"decoding the images of {', '.join(Path(p).name for p in streamed)}",
                 "completed runs are kept and checked: run the same command again to resume")
    missing = [name for name, _, _ in runs if name not in done and name not in {r[0] for r in todo}]
    if missing:
        print(f"part {cfg.part}: this part's images are decoded; {len(missing)} runs of other parts are missing "
              f"(e.g. {STORE}/{missing[0]}). Copy every part's {out.name}/{STORE}/ into one folder and re-run "
              f"without --part to write the shards.", file=sys.stderr)
        return False
    index_patches(store, [name for name, _, _ in runs])
    return True


@dataclass(frozen=True)
class PatchRun:
    """What every phase-1 job shares: where and how its patches are made."""
    store: Path
    labels: list[str]  # class index -> the name written into each sample's metadata
    cfg: object  # PrepConfig
    make_sample: Callable  # (item, bytes, cfg) -> (Sample, None) or (None, why it was skipped)
    plan: dict  # the run's fingerprint, kept in each record (prep/plan.py)


def _stream_runs(source, todo, how: PatchRun):
    """Jobs for phase 1, made while the archives stream: one archive after another."""
    for path in sorted({p for _, p, _ in todo}):
        runs = [(name, members) for name, p, members in todo if p == path]
        where = {m: (k, item, split) for k, (_, members) in enumerate(runs) for m, item, split in members}
        got: dict[int, list] = {}
        archive = resolve(source.root, runs[0][1][0][1].source).archive
        for member, data in archive.stream_members(set(where)):
            k, item, split = where[member]
            got.setdefault(k, []).append((item, split, data))
            if len(got[k]) == len(runs[k][1]):
                yield runs[k][0], got.pop(k), how
        if got:
            raise ValueError(f"{path}: {sum(map(len, got.values()))} members listed before were not found on the "
                             f"decode pass (the archive changed?)")


def write_patch_run(job) -> int:
    name, members, how = job
    skips = []
    with AtomicShardWriter(how.store / name) as writer:
        for item, split, data in members:
            sample, problem = how.make_sample(item, data, how.cfg)
            if problem:
                skips.append({"path": item.source, "split": split, "reason": problem, "key": item.key})
                continue
            sample.meta["class"] = how.labels[item.label]
            writer.write(sample)
    write_record(how.store, name, writer.count, skips, how.plan)
    return len(members)


def index_patches(store: Path, names: list[str]) -> None:
    """PATCHES for phase 2: every run's samples, located from its tar headers."""
    PATCHES.clear()
    for name in names:
        path = store / name
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            members = list(iter_members(lambda o, n: os.pread(f.fileno(), n, o), size, path))
        for i in range(0, len(members), len(MEMBER_ORDER)):
            (jpg, jo, js), _, (_, mo, ms) = members[i:i + len(MEMBER_ORDER)]
            PATCHES[jpg.partition(".")[0]] = (str(path), jo, js, mo, ms)
        for skip in read_record(store, name)["skipped"]:
            PATCHES[skip["key"]] = None


def phase_one_skips(out: Path) -> list[dict]:
    """Every image phase 1 could not decode (path, split, reason), from the runs' records."""
    store = out / STORE
    records = sorted((store / INFO_DIR).glob("*.tar.json")) if (store / INFO_DIR).is_dir() else []
    return [{k: s[k] for k in ("path", "split", "reason")} for rec in records
            for s in (read_record(store, rec.name[:-5]) or {"skipped": []})["skipped"]]


def read_patch(key: str):
    """(jpg bytes, meta json bytes) of a phase-1 patch, or None if phase 1 skipped it."""
    entry = PATCHES[key]
    if entry is None:
        return None
    path, jo, js, mo, ms = entry
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, js, jo), os.pread(fd, ms, mo)
    finally:
        os.close(fd)


def remove_store(out: Path) -> None:
    shutil.rmtree(out / STORE, ignore_errors=True)
