"""The output folder of `alexnet-prep shard`: one writer at a time, and a shard counts as
done only when it is verifiably the shard its record describes.

- `OutputLock`: an exclusive flock on `<out>/.lock` for the whole run. A second run into
  the same folder fails at once, naming the holder; the pool workers inherit the lock, so
  it is held until the last of them is gone (they die with the main process: see
  write_shards.die_with_parent).
- `.shard-info/<name>.json`: written by the worker after the shard's atomic rename, with
  its sample count, size and sha256. `shard_is_done` re-checks all three against the file
  (and the count against the tar index), so a shard left by a crash, a second writer or a
  copy gone wrong is rewritten, never trusted.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import time
from pathlib import Path

from shared.json_files import write_json_atomic
from shared.manifest import MANIFEST_NAME
from shared.shards import SHARD_PATTERN, file_sha256, shard_problem
from shared.stats import MEAN_IMAGE_NAME, STATS_NAME

INFO_DIR = ".shard-info"
STORE = ".patches"  # phase 1's patches of images in streamed archives (prep/streamed_patches.py)
PLAN_NAME = "plan.json"
LOCK_NAME = ".lock"


class OutputLock:
    def __init__(self, out: Path):
        self.out, self.path, self.fd = out, out / LOCK_NAME, -1

    def __enter__(self) -> "OutputLock":
        self.out.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 400, 0).decode(errors="replace").strip() or "unknown process"
            os.close(self.fd)
            raise FileExistsError(f"{self.out} is being written by another alexnet-prep run ({holder}); wait for "
                                  f"it to finish or stop it (its pool workers hold the lock too)") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                           f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.fd)  # releases the lock once no worker holds the descriptor either


def check_out_outside_src(src: Path, out: Path) -> None:
    """An --out inside a --src folder would be listed as input (a class named `shards`, then
    a resume refused as "different inputs"): refused before anything is listed or written."""
    if not Path(src).is_dir():
        return  # an archive: nothing can be written inside it
    src_dir, out_dir = Path(src).resolve(), Path(out).resolve()
    if out_dir == src_dir or src_dir in out_dir.parents:
        raise ValueError(f"--out {out} is inside --src {src}: prep would read its own output as input; "
                         f"write the shards outside --src")


def record_path(out: Path, name: str) -> Path:
    return out / INFO_DIR / f"{name}.json"


def write_record(out: Path, name: str, samples: int, skips: list[dict]) -> dict:
    path = out / name
    record = {"name": name, "samples": samples, "bytes": path.stat().st_size, "sha256": file_sha256(path),
              "skipped": skips}
    write_json_atomic(record_path(out, name), record)
    return record


def read_record(out: Path, name: str) -> dict | None:
    try:
        record = json.loads(record_path(out, name).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    keys = {"name", "samples", "bytes", "sha256", "skipped"}
    return record if isinstance(record, dict) and keys <= record.keys() and record["name"] == name else None


def shard_is_done(out: Path, name: str) -> bool:
    """The shard exists and is exactly what its record says: size, sha256, sample count."""
    record = read_record(out, name)
    if record is None:
        return False
    return shard_problem(out / name, record["samples"], record["bytes"], record["sha256"]) is None


def prepare_output(out: Path, fingerprint: dict, overwrite: bool) -> None:
    """Under the lock: refuses to clobber complete output, clears it with --overwrite,
    checks a partial run was made with the same plan, and removes temp files a crash left."""
    if (out / MANIFEST_NAME).exists() and not overwrite:
        raise FileExistsError(f"{out} already holds a complete dataset ({MANIFEST_NAME}); "
                              f"pass --overwrite to rebuild it")
    if overwrite:
        for path in out.iterdir():
            if SHARD_PATTERN.fullmatch(path.name) or path.name.endswith(".tmp") or path.name in (
                    MANIFEST_NAME, STATS_NAME, MEAN_IMAGE_NAME):
                path.unlink()
        shutil.rmtree(out / INFO_DIR, ignore_errors=True)
        shutil.rmtree(out / STORE, ignore_errors=True)
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
    for folder in (out, out / INFO_DIR, out / STORE, out / STORE / INFO_DIR):
        for stale in folder.glob("*.tmp"):
            stale.unlink()  # left by a killed run; nobody else writes here while we hold the lock
