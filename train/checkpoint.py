"""Checkpoints: everything needed to resume a run or to use its model on anyone's images.

Written atomically (temp file, fsync, rename) and loaded with torch.load(weights_only=True),
which unpickles tensors and plain containers only: a checkpoint from a stranger cannot run
code. A checkpoint holds the model, optimizer, schedule, epoch, config, the architecture,
the class list (index, wnid, name), the normalisation statistics and the patch size, so
`predict` needs nothing else and a dataset with other classes (or another order) is refused.
"""
from __future__ import annotations

import pickle
import shutil
import zipfile
from pathlib import Path

import torch

from shared.json_files import write_atomic

from .architecture import ARCH

FORMAT = 2
BEST, LAST = "best.pt", "last.pt"


def checkpoint_state(*, model, optimizer, schedule, epoch: int, config: dict, arch: dict, classes: list,
                     normalization: dict, patch_size: int, best_error: float, best_epoch: int,
                     metrics_row: dict) -> dict:
    return {"format": FORMAT, "arch": ARCH, "architecture": arch, "num_classes": len(classes), "classes": classes,
            "normalization": normalization, "patch_size": patch_size, "epoch": epoch,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
            "config": config, "best_error": best_error, "best_epoch": best_epoch, "metrics_row": metrics_row}


def copy_into(src: Path, f) -> None:
    with open(src, "rb") as source:
        shutil.copyfileobj(source, f)


def save_epoch_checkpoints(run: Path, state: dict, improved: bool) -> None:
    """best.pt first, then last.pt: a kill between the two leaves best.pt newer than last.pt,
    which `check_best_matches` recognises, never a stale best.pt behind a newer last.pt."""
    if improved:
        write_atomic(run / BEST, lambda f: torch.save(state, f))
        write_atomic(run / LAST, lambda f: copy_into(run / BEST, f))
    else:
        write_atomic(run / LAST, lambda f: torch.save(state, f))


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
    if state.get("format") != FORMAT:
        raise ValueError(f"{path}: checkpoint format {state.get('format')}, this version reads {FORMAT} "
                         f"(written before checkpoints carried their class list); retrain, or evaluate it "
                         f"with the version that wrote it")
    return state


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def check_classes(state: dict, classes: list, path) -> None:
    """The dataset's (index, wnid, name) list must be the checkpoint's, in the same order."""
    theirs = [list(c) for c in state["classes"]]
    ours = [list(c) for c in classes]
    if theirs == ours:
        return
    if len(theirs) != len(ours):
        raise ValueError(f"{path}: trained for {len(theirs)} classes but the dataset has {len(ours)}; "
                         f"use a checkpoint of this dataset")
    diffs = [f"index {a[0]}: checkpoint {a[1] or a[2]!r}, dataset {b[1] or b[2]!r}"
             for a, b in zip(theirs, ours) if a != b]
    raise ValueError(f"{path}: the dataset's class list differs from the checkpoint's in {len(diffs)} places "
                     f"(first: {'; '.join(diffs[:3])}); its predictions would be scored against the wrong labels")


def check_best_matches(run: Path, last: dict) -> tuple[float, int]:
    """On resume: (best error, best epoch) given last.pt and the best.pt beside it."""
    best_path = run / BEST
    if last["best_epoch"] < 0:
        return last["best_error"], last["best_epoch"]
    if not best_path.is_file():
        raise FileNotFoundError(f"{best_path} missing: last.pt names epoch {last['best_epoch']} as the best; "
                                f"cannot resume without it")
    best = torch.load(best_path, map_location="cpu", weights_only=True)
    if best.get("epoch") == last["best_epoch"]:
        return last["best_error"], last["best_epoch"]
    if best.get("epoch", -1) > last["epoch"]:  # killed between writing best.pt and last.pt
        return best["best_error"], best["epoch"]
    raise ValueError(f"{best_path} is epoch {best.get('epoch')} but {run / LAST} names epoch "
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
