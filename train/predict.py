"""Use a trained model on anyone's images: the paper's test-time pipeline (§2, §4.1) with the
checkpoint's own architecture, class list and normalisation.

    from train.predict import load_predictor
    predictor = load_predictor("runs/imagenet/best.pt")      # one call: model, classes, preprocessing
    predictor.top5(["cat.jpg", "photos/"])                    # [{"path": ..., "top5": [...]}, ...]

Each image goes through prep's own patch maker (shared/patch.py: shorter side to the patch
size, centre square), then the centre crop or the ten views, softmax averaged.
"""
from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from shared.patch import BAD_IMAGE_ERRORS, IMAGE_SUFFIXES, image_to_patch

from .augment import DeviceAugment, InputStats
from .checkpoint import load_checkpoint
from .config import TrainConfig
from .device import autocast_for, prepare_device, resolve_device, resolve_precision
from .evaluation import view_probabilities
from .model import AlexNet, Architecture


@dataclass
class Predictor:
    model: AlexNet
    classes: list[list]  # [index, wnid, name]
    augment: DeviceAugment
    patch: int
    crop: int
    device: torch.device
    amp: object

    def patch_of(self, path: Path) -> torch.Tensor:
        """uint8 (3, patch, patch): the patch prep would have stored for this file."""
        kind = os.stat(path).st_mode
        if not stat.S_ISREG(kind):  # a FIFO would block the read forever
            raise ValueError(f"not a regular file ({file_kind(kind)}): not read")
        img, _ = image_to_patch(Path(path).read_bytes(), self.patch)
        return torch.from_numpy(np.array(img)).permute(2, 0, 1)  # a writable copy

    @torch.no_grad()
    def probabilities(self, patches: torch.Tensor, views: int = 10) -> torch.Tensor:
        return view_probabilities(self.model, patches.to(self.device), self.augment, self.crop, views, self.amp).cpu()

    def top5(self, paths: Iterable[str | Path], views: int = 10, batch: int = 32, progress: bool = False) -> list[dict]:
        return list(predict_paths(self, expand_paths(paths), views, batch, progress))


def load_predictor(checkpoint: str | Path, device: str = "auto") -> Predictor:
    state = load_checkpoint(Path(checkpoint))
    arch = Architecture(**state["architecture"])
    model = AlexNet(len(state["classes"]), arch)
    model.load_state_dict(state["model"])
    dev = resolve_device(device)
    prepare_device(dev)
    model = model.to(dev, memory_format=torch.channels_last).eval()
    cfg = TrainConfig.from_dict(state["config"])
    augment = DeviceAugment(InputStats(**state["normalization"]), 0.0, dev)
    return Predictor(model, [list(c) for c in state["classes"]], augment, state["patch_size"], arch.crop, dev,
                     autocast_for(dev, resolve_precision(dev, cfg.precision)))


def file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; folders recursively (links to folders not followed), sorted: image
    files, and every entry that is not a regular file, so that it is named (and skipped)
    rather than dropped without a word."""
    out = []
    for p in map(Path, paths):
        if not p.is_dir():
            out.append(p)
            continue
        found = []
        for folder, _, names in os.walk(p):
            for name in names:
                f = Path(folder) / name
                if f.suffix.lower() in IMAGE_SUFFIXES or not f.is_file():
                    found.append(f)
        if not found:  # a folder that gives nothing is refused, never an exit 0 with no output
            raise ValueError(f"{p}: a folder with no image files in it ({', '.join(sorted(IMAGE_SUFFIXES))})")
        out += sorted(found)
    return out


def predict_paths(predictor: Predictor, paths: list[Path], views: int, batch: int, progress: bool) -> Iterator[dict]:
    """One dict per path, in order: {"path", "top5": [{"index", "wnid", "name", "probability"}]}
    or {"path", "error"} for a file that is missing, unreadable or not a decodable image."""
    bar = tqdm(total=len(paths), unit="img", disable=not progress, file=sys.stderr)
    for start in range(0, len(paths), batch):
        chunk, patches, results = paths[start:start + batch], [], {}
        for path in chunk:
            try:
                patches.append((path, predictor.patch_of(path)))
            except BAD_IMAGE_ERRORS as exc:
                results[path] = {"path": str(path), "error": f"{type(exc).__name__}: {exc}"}
        if patches:
            probs = predictor.probabilities(torch.stack([p for _, p in patches]), views)
            values, indices = probs.topk(min(5, probs.shape[1]), dim=1)
            for (path, _), vs, ix in zip(patches, values.tolist(), indices.tolist()):
                results[path] = {"path": str(path), "top5": [
                    {"index": i, "wnid": predictor.classes[i][1], "name": predictor.classes[i][2], "probability": v}
                    for v, i in zip(vs, ix)]}
        bar.update(len(chunk))
        yield from (results[p] for p in chunk)
    bar.close()
