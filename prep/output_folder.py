"""The output folder of `alexnet-prep shard`: one writer at a time, and a shard counts as
done only when it is verifiably the shard its record describes.

- shared/folder_locks.py's DatasetWriteLock: an exclusive flock on `<out>/.lock` for the
  whole run. A second run into the same folder, or one into a dataset a training reads, fails
  at once, naming the holder; the pool workers inherit the lock, so it is held until the last
  of them is gone (they die with the main process: see write_shards.die_with_parent).
- `.shard-info/<name>.json`: written by the worker after the shard's atomic rename, with
  its sample count, size, sha256 and the plan it was made by. `shard_state` re-checks all
  three against the file (and the count against the tar index), so a shard left by a crash,
  a second writer or a copy gone wrong is rewritten, never trusted; an intact shard of
  another plan (a --part made from another source or with another --seed, --size, ...) is
  refused.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from shared.json_files import write_json_atomic
from shared.manifest import MANIFEST_NAME
from shared.output_paths import check_output_folder
from shared.shards import SHARD_PATTERN, file_sha256, shard_problem
from shared.stats import MEAN_IMAGE_NAME, STATS_NAME

from .plan import fingerprint_differences

INFO_DIR = ".shard-info"
STORE = ".patches"  # phase 1's patches of images in streamed archives (prep/streamed_patches.py)
PLAN_NAME = "plan.json"


def check_out_outside_src(src: Path, out: Path) -> None:
    """--out is a folder or a new name, never inside a --src folder: it would be listed as
    input (a class named `shards`, then a resume refused as "different inputs"). Refused
    before anything is listed or written (shared/output_paths.py)."""
    check_output_folder(out, "--out", input_folders=[src] if Path(src).is_dir() else [])


def record_path(out: Path, name: str) -> Path:
    return out / INFO_DIR / f"{name}.json"


def write_record(out: Path, name: str, samples: int, skips: list[dict], plan: dict,
                 items_sha256: str | None = None) -> dict:
    """`items_sha256`: the shard's provenance, its samples' (key, label, source) rows (prep/plan.py)."""
    path = out / name
    record = {"name": name, "samples": samples, "bytes": path.stat().st_size, "sha256": file_sha256(path),
              "skipped": skips, "plan": plan, "items_sha256": items_sha256}
    write_json_atomic(record_path(out, name), record)
    return record


def read_record(out: Path, name: str) -> dict | None:
    try:
        record = json.loads(record_path(out, name).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    keys = {"name", "samples", "bytes", "sha256", "skipped"}
    return record if isinstance(record, dict) and keys <= record.keys() and record["name"] == name else None


def shard_state(out: Path, name: str, plan: dict) -> str | None:
    """"done": the shard exists and is exactly what its record says (size, sha256, sample
    count) and was made by this plan; None: it is to be written (again); else what differs:
    an intact shard made from another source or with other options (a --part of another
    run copied in), which is refused, never taken and never silently replaced."""
    record = read_record(out, name)
    if record is None or shard_problem(out / name, record["samples"], record["bytes"], record["sha256"]) is not None:
        return None
    made = record.get("plan")
    if made == plan:
        return "done"
    if not isinstance(made, dict):
        return None  # a record of an older prep, which kept no plan: made again
    return fingerprint_differences(made, plan)


def refuse_foreign(out: Path, name: str, differences: str) -> None:
    raise ValueError(f"{out / name}: made from other inputs or options than this run ({differences}): a --part "
                     f"of another run? Remove it with its {INFO_DIR}/{name}.json, or pass --overwrite")


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
