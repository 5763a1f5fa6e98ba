"""Checkpoints: written atomically, loaded with torch.load(weights_only=True)."""
from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import torch

from .model import ARCH

FORMAT = 1


def save_checkpoint(path: Path, *, model, optimizer, schedule, epoch: int, config: dict,
                    num_classes: int, best_error: float, metrics: dict) -> None:
    state = {
        "format": FORMAT, "arch": ARCH, "num_classes": num_classes, "epoch": epoch,
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
        "config": config, "best_error": best_error, "metrics": metrics,
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a half checkpoint under the real name


def copy_checkpoint(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def load_checkpoint(path: Path, num_classes: int | None = None) -> dict:
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("arch") != ARCH or state.get("format") != FORMAT:
        raise ValueError(f"{path}: checkpoint of {state.get('arch')!r} (format {state.get('format')}), "
                         f"expected {ARCH!r} format {FORMAT}")
    if num_classes is not None:
        check_num_classes(state, num_classes, path)
    return state


def check_num_classes(state: dict, num_classes: int, path) -> None:
    if state["num_classes"] != num_classes:
        raise ValueError(f"{path}: trained for {state['num_classes']} classes but the dataset has "
                         f"{num_classes}; use a checkpoint of this dataset")


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(state["rng"]["python"])
    if state["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])


def unwrap(model):
    """The bare module under DDP and torch.compile wrappers (state dict keys stay stable)."""
    while True:
        children = model.__dict__.get("_modules", {})
        inner = children.get("_orig_mod", children.get("module"))  # compile's, DDP's
        if inner is None:
            return model
        model = inner
