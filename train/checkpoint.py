"""Checkpoints: everything needed to resume a run or to use its model on anyone's images.

Written atomically (temp file, fsync, rename) and loaded with torch.load(weights_only=True),
which unpickles tensors and plain containers only: a checkpoint from a stranger cannot run
code. A checkpoint holds the model, optimizer, schedule, epoch, config, the architecture,
the class list (index, wnid, name), the normalisation statistics and the patch size, so
`predict` needs nothing else and a dataset with other classes (or another order) is refused.

Format 3 adds what makes a checkpoint trustworthy by content, not by name:
- `digest`: sha256 over everything else in it (every tensor's bytes, every value), checked on
  every load: one flipped byte in last.pt resumed and trained on without a word;
- `identity`: the run's id (made when the run starts, kept by its resumes) and its dataset's
  fingerprint (shared/manifest.py). A resume checks them, and the config, against the run
  folder (`check_same_run`): a last.pt from another run beside this run's best.pt and
  config.json, or trained on another dataset with the same classes, is refused.
Format 2 (before both) still loads, checked by its config alone.
"""
from __future__ import annotations

import hashlib
import io
import math
import pickle
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from shared.json_files import read_json, write_atomic

from shared.limits import MAX_PATCH_SIZE

from .architecture import ARCH, Architecture
from .config import RESUME_MAY_CHANGE, TrainConfig, flags_of, resume_differences
from .model import AlexNet
from .run_folder import CONFIG_NAME

FORMAT = 3
READABLE_FORMATS = (2, 3)
BEST, LAST = "best.pt", "last.pt"
HEX = re.compile(r"[0-9a-f]{16,64}")
CPU_RNG_BYTES = torch.get_rng_state().numel()  # a CPU generator's state (mt19937), as torch.set_rng_state takes it


@dataclass(frozen=True)
class ModelCard:
    """What anyone using the weights needs beside them (`predict` reads nothing else)."""
    architecture: dict
    classes: list  # [index, wnid, name]
    normalization: dict  # InputStats.state()
    patch_size: int
    config: dict  # the run's resolved TrainConfig


@dataclass(frozen=True)
class RunProgress:
    """Where the run stands after `epoch` (the last completed one; -1 before the first)."""
    epoch: int
    best_error: float
    best_epoch: int
    metrics_row: dict | None


def checkpoint_state(model, optimizer, schedule, card: ModelCard, progress: RunProgress, identity: dict) -> dict:
    return {"format": FORMAT, "arch": ARCH, "architecture": card.architecture, "num_classes": len(card.classes),
            "classes": card.classes, "normalization": card.normalization, "patch_size": card.patch_size,
            "epoch": progress.epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(), "config": card.config, "best_error": progress.best_error,
            "best_epoch": progress.best_epoch, "metrics_row": progress.metrics_row, "identity": identity}


def content_digest(state: dict) -> str:
    """sha256 of a checkpoint's content, `digest` aside: every tensor's dtype, shape and bytes and
    every other value, dict keys in sorted order."""
    h = hashlib.sha256()

    def feed(obj) -> None:
        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}|".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy())
        elif isinstance(obj, dict):
            h.update(b"{")
            for key in sorted(obj, key=repr):
                h.update(repr(key).encode() + b":")
                feed(obj[key])
            h.update(b"}")
        elif isinstance(obj, (list, tuple)):
            h.update(b"[")
            for item in obj:
                feed(item)
            h.update(b"]")
        else:
            h.update(repr(obj).encode() + b";")

    feed({k: v for k, v in state.items() if k != "digest"})
    return h.hexdigest()


def _save(path: Path, state: dict) -> None:
    """Serialized in memory, then written by Python: an error inside torch.save's own writer
    loses its errno (a full disk became "unexpected pos 9949248 vs 9949136", an internal error,
    in a real run), where a write here raises OSError naming the file."""
    state["digest"] = content_digest(state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(path, lambda f: f.write(buffer.getbuffer()))


def copy_into(src: Path, f) -> None:
    with open(src, "rb") as source:
        shutil.copyfileobj(source, f)


def save_epoch_checkpoints(run: Path, state: dict, improved: bool) -> None:
    """best.pt first, then last.pt: a kill between the two leaves best.pt newer than last.pt,
    which `check_best_matches` recognises, never a stale best.pt behind a newer last.pt."""
    if improved:
        _save(run / BEST, state)
        write_atomic(run / LAST, lambda f: copy_into(run / BEST, f))
    else:
        _save(run / LAST, state)


def save_last(run: Path, state: dict) -> None:
    """A mid-epoch checkpoint (train/mid_epoch.py) replaces last.pt; best.pt is untouched."""
    _save(run / LAST, state)


def load_checkpoint(path: Path) -> dict:
    """The checkpoint's state, or a one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file (0 bytes), not a checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only met a class it does not allow
        raise ValueError(f"{path}: refused -- it holds objects other than tensors and plain data "
                         f"({first_line(exc)})") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        raise ValueError(f"{path}: not a readable checkpoint (truncated or corrupt: {first_line(exc)})") from None
    if not isinstance(state, dict) or state.get("arch") != ARCH:
        raise ValueError(f"{path}: not an {ARCH} checkpoint")
    if state.get("format") not in READABLE_FORMATS:
        raise ValueError(f"{path}: checkpoint format {state.get('format')}, this version reads "
                         f"{' and '.join(map(str, READABLE_FORMATS))} (format 1 was written before checkpoints carried "
                         f"their class list); retrain, or evaluate it with the version that wrote it")
    if state["format"] >= 3 and state.get("digest") != content_digest(state):
        raise ValueError(f"{path}: its content does not match the digest it was written with: the file changed "
                         f"after it was saved (damaged on disk or in a copy); use another copy, or best.pt")
    check_checkpoint(state, path)
    return state


def _need(state: dict, key: str, kind, path):
    value = state.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ValueError(f"{path}: field {key!r} is {type(value).__name__} {str(value)[:40]!r}, expected "
                         f"{getattr(kind, '__name__', kind)}")
    return value


def check_checkpoint(state: dict, path) -> None:
    """Every field evaluate, predict and resume read, against what the code can handle: one
    line naming the file and field. A crafted file (another architecture, an extra class,
    `patch_size` "eighty" or 60000 -- 23.5 GB before the OOM killer) is refused here."""
    try:
        arch = Architecture(**_need(state, "architecture", dict, path))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: field 'architecture': {exc}") from None
    classes = _need(state, "classes", list, path)
    if not classes or _need(state, "num_classes", int, path) != len(classes):
        raise ValueError(f"{path}: {len(classes)} classes, num_classes {state['num_classes']}")
    for i, c in enumerate(classes):
        if not (isinstance(c, (list, tuple)) and len(c) == 3 and c[0] == i and isinstance(c[1], (str, type(None)))
                and isinstance(c[2], str)):
            raise ValueError(f"{path}: classes[{i}] is {str(c)[:60]!r}, expected [{i}, wnid or None, name]")
    patch = _need(state, "patch_size", int, path)
    if not arch.crop <= patch <= MAX_PATCH_SIZE:
        raise ValueError(f"{path}: patch_size {patch}, expected {arch.crop}..{MAX_PATCH_SIZE} (crop {arch.crop})")
    check_normalization(_need(state, "normalization", dict, path), arch.crop, path)
    check_weights(_need(state, "model", dict, path), len(classes), arch, path)
    for key, kind in (("epoch", int), ("best_epoch", int), ("config", dict), ("optimizer", dict),
                      ("schedule", dict), ("best_error", (int, float))):
        _need(state, key, kind, path)
    if not (state["epoch"] == -1 and state.get("metrics_row") is None):  # none before the first epoch ends
        wall = _need(state, "metrics_row", dict, path).get("wall_s")  # absent in checkpoints before it was kept
        if wall is not None and not (type(wall) in (int, float) and 0 <= wall < math.inf):
            raise ValueError(f"{path}: field 'metrics_row.wall_s' is {str(wall)[:40]!r}, expected seconds (>= 0)")
    if "in_epoch" in state:
        check_in_epoch(state["in_epoch"], state["epoch"], path)
    if state["format"] >= 3:
        identity = _need(state, "identity", dict, path)
        if set(identity) != {"run_id", "dataset"} or not all(
                isinstance(identity[k], str) and HEX.fullmatch(identity[k]) for k in identity):
            raise ValueError(f"{path}: field 'identity' is not a run id and a dataset fingerprint (hex strings)")
    try:
        TrainConfig.from_dict(state["config"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: field 'config': {exc}") from None


def check_in_epoch(record, epoch: int, path) -> None:
    """A mid-epoch checkpoint's record (train/mid_epoch.py): the epoch after the last completed
    one, a step count, and per rank generator states torch can restore."""
    fields = {"epoch": int, "step": int, "images": int, "seconds": (int, float), "world": int, "ranks": list,
              "writer": dict}
    if not isinstance(record, dict) or set(record) - {"epoch_order"} != set(fields):  # no epoch_order: format 2
        raise ValueError(f"{path}: field 'in_epoch' is not a mid-epoch record (keys {sorted(fields)})")
    if not isinstance(record.get("epoch_order", ""), str):
        raise ValueError(f"{path}: field 'in_epoch.epoch_order' is not a name")
    for key, kind in fields.items():
        _need(record, key, kind, f"{path}: in_epoch")
    if record["epoch"] != epoch + 1 or record["step"] < 1 or record["world"] != len(record["ranks"]) \
            or record["world"] < 1 or record["images"] < 0 or not 0 <= record["seconds"] < 1e9:
        raise ValueError(f"{path}: in_epoch says epoch {record['epoch']} step {record['step']} on {record['world']} "
                         f"ranks, after completed epoch {epoch}: inconsistent")
    for rank in record["ranks"]:
        if not isinstance(rank, dict) or not {"loss_sum", "torch_rng", "lighting_rng"} <= set(rank) \
                or not set(rank) <= {"loss_sum", "torch_rng", "lighting_rng", "cuda_rng"} \
                or not isinstance(rank["loss_sum"], float) or not math.isfinite(rank["loss_sum"]) \
                or not all(isinstance(rank[k], torch.Tensor) and rank[k].dtype == torch.uint8 and rank[k].dim() == 1
                           and rank[k].numel() == (CPU_RNG_BYTES if k != "cuda_rng" else rank[k].numel() or -1)
                           for k in rank if k.endswith("_rng")):
            raise ValueError(f"{path}: in_epoch.ranks holds an entry that is not a rank's loss sum and generator "
                             f"states")
    try:
        TrainConfig.from_dict({**TrainConfig().to_dict(), **record["writer"]})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: in_epoch.writer: {exc}") from None


def check_normalization(norm: dict, crop: int, path) -> None:
    shapes = {"mean": [(3, crop, crop), (3, 1, 1)], "std": [(3, 1, 1)], "eigenvalues": [(3,)], "eigenvectors": [(3, 3)]}
    for key, allowed in shapes.items():
        t = norm.get(key)
        if not (isinstance(t, torch.Tensor) and t.is_floating_point() and tuple(t.shape) in allowed
                and bool(torch.isfinite(t).all())):
            raise ValueError(f"{path}: normalization[{key!r}] is not a finite float tensor of shape "
                             f"{' or '.join(map(str, allowed))}")
    if not bool((norm["std"] > 0).all()) or not bool((norm["eigenvalues"] >= 0).all()):
        raise ValueError(f"{path}: normalization: std must be > 0 and eigenvalues >= 0")
    if set(norm) != set(shapes):
        raise ValueError(f"{path}: normalization holds {sorted(norm)}, expected {sorted(shapes)}")


def check_weights(weights: dict, classes: int, arch: Architecture, path) -> None:
    """The model's tensors are exactly those of the architecture the checkpoint names (built
    on the meta device: no memory), finite."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in AlexNet(classes, arch).state_dict().items()}
    got = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else None for k, v in weights.items()}
    if got != expected:
        wrong = sorted(k for k in set(got) | set(expected) if got.get(k) != expected.get(k))
        raise ValueError(f"{path}: the model's tensors do not match its architecture ({len(wrong)} differ, first "
                         f"{wrong[0]!r}: {got.get(wrong[0])} vs {expected.get(wrong[0])})")
    bad = [k for k, v in weights.items() if not bool(torch.isfinite(v).all())]
    if bad:
        raise ValueError(f"{path}: non-finite values in {bad[:3]} (a diverged run)")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def check_classes(state: dict, classes: list, path) -> None:
    """The dataset's classes must be the checkpoint's, in the same order: by wnid where both
    have one (ImageNet's forms name classes from the devkit or Kaggle's mapping: the same
    class may be worded differently), by name otherwise."""
    def ident(c):
        return (c[0], c[1]) if c[1] else (c[0], c[2])

    theirs = [list(c) for c in state["classes"]]
    ours = [list(c) for c in classes]
    if [ident(c) for c in theirs] == [ident(c) for c in ours]:
        return
    if len(theirs) != len(ours):
        raise ValueError(f"{path}: trained for {len(theirs)} classes but the dataset has {len(ours)}; "
                         f"use a checkpoint of this dataset")
    diffs = [f"index {a[0]}: checkpoint {a[1] or a[2]!r}, dataset {b[1] or b[2]!r}"
             for a, b in zip(theirs, ours) if ident(a) != ident(b)]
    raise ValueError(f"{path}: the dataset's class list differs from the checkpoint's in {len(diffs)} places "
                     f"(first: {'; '.join(diffs[:3])}); its predictions would be scored against the wrong labels")


def check_same_run(last: dict, cfg: TrainConfig, manifest, path: Path) -> tuple[float, int]:
    """On resume: last.pt may carry this run on (the flags it may change: RESUME_MAY_CHANGE), on
    its own dataset, beside its own run's records. Returns (best error, best epoch) given the
    best.pt beside it."""
    differences = resume_differences(last["config"], cfg)
    if differences:
        said = "; ".join(f"{flag} {theirs} in the checkpoint, {ours} now" for flag, theirs, ours in differences)
        allowed = ", ".join(flags_of(name)[0] for name in RESUME_MAY_CHANGE)
        raise ValueError(f"{path}: a resume carries its run on and may change only {allowed} (docs/training.md); "
                         f"here {said}. Resume with the checkpoint's values, or start a new run")
    identity = last.get("identity")
    if identity is not None and identity["dataset"] != manifest.fingerprint():
        raise ValueError(f"{path}: trained on another dataset than {cfg.shards} (its shards differ from those the "
                         f"checkpoint was trained on, whatever the classes); resume on the dataset it was trained on")
    check_run_record(Path(path).parent / CONFIG_NAME, last, path)
    return check_best_matches(Path(path).parent, last, path)


def belongs_elsewhere(record: Path, last: dict, path: Path, their_id: str | None, their_config: dict) -> None:
    """`record` (the run folder's config.json or best.pt) is of last.pt's run: the same run id
    where both carry one, and a config that no resume could have changed."""
    ours = (last.get("identity") or {}).get("run_id")
    if their_id is not None and ours is not None and their_id != ours:
        raise ValueError(f"{record} belongs to another run (run id {their_id[:12]}) than {path} ({ours[:12]}): "
                         f"resume from the last.pt of {record.parent}'s own run, or move the two apart")
    differences = resume_differences(their_config, TrainConfig.from_dict(last["config"]))
    if differences:
        said = "; ".join(f"{flag} {theirs} there, {mine} in {path.name}" for flag, theirs, mine in differences)
        raise ValueError(f"{record} belongs to another run than {path} ({said}): resume from the last.pt of "
                         f"{record.parent}'s own run, or move the two apart")


def check_run_record(config_json: Path, last: dict, path: Path) -> None:
    if not config_json.is_file():
        return
    record = read_json(config_json, "")
    saved = record.get("config") if isinstance(record, dict) else None
    run_id = record.get("run_id") if isinstance(record, dict) else None
    try:
        TrainConfig.from_dict(saved)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{config_json}: not a run's config.json ({exc})") from None
    belongs_elsewhere(config_json, last, path, run_id if isinstance(run_id, str) else None, saved)


def check_best_matches(run: Path, last: dict, path: Path) -> tuple[float, int]:
    """(best error, best epoch) given last.pt and the best.pt beside it, which must be of its run."""
    best_path = run / BEST
    if last["best_epoch"] < 0:
        return last["best_error"], last["best_epoch"]
    if not best_path.is_file():
        raise FileNotFoundError(f"{best_path} missing: last.pt names epoch {last['best_epoch']} as the best; "
                                f"cannot resume without it")
    best = load_checkpoint(best_path)
    belongs_elsewhere(best_path, last, path, (best.get("identity") or {}).get("run_id"), best["config"])
    if best["epoch"] == last["best_epoch"]:
        return last["best_error"], last["best_epoch"]
    if best["epoch"] > last["epoch"]:  # killed between writing best.pt and last.pt
        return best["best_error"], best["epoch"]
    raise ValueError(f"{best_path} is epoch {best['epoch']} but {run / LAST} names epoch "
                     f"{last['best_epoch']} as the best: best.pt is stale; delete the run folder or resume "
                     f"from a consistent pair")


def remove_partial_writes(run: Path) -> list[Path]:
    """Temp files of a save that a kill interrupted."""
    stale = sorted(run.glob("*.pt.tmp"))
    for path in stale:
        path.unlink()
    return stale


def restore_best(run: Path) -> dict | None:
    path = run / BEST
    return load_checkpoint(path) if path.is_file() else None
