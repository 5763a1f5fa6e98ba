"""The torchvision references' ImageNet: train/<wnid>/, val/<wnid>/ (classes from a devkit or
Kaggle's mapping beside them, else the shipped table)."""
from __future__ import annotations

from pathlib import Path

from ..sources import Source, ignore_rest, list_folder
from .devkit import DEVKIT, class_table
from .kaggle import KAGGLE_MAPPING
from .wnid_folders import WNID, read_wnid_folders

def is_imagenet_folders(src) -> bool:
    """train/ holding class folders named by wnids (the torchvision references). wnid
    folders mixed with others are refused, never read as generic class folders (whose
    string-sorted classes would permute ImageNet's labels)."""
    train = src / "train"
    if not train.is_dir():
        return False
    names = [d.name for d in list_folder(train, src).dirs]
    wnids = [n for n in names if WNID.fullmatch(n)]
    others = [n for n in names if not WNID.fullmatch(n)]
    if wnids and others:
        raise ValueError(f"--src {src}: train/ holds {len(wnids)} class folders named by wnids (ImageNet as the "
                         f"torchvision references keep it) and {len(others)} that are not (e.g. "
                         f"{', '.join(others[:3])}): move those out of train/, or pass --form folder to read every "
                         f"folder as a class of a dataset of its own")
    return bool(wnids)


def read_imagenet_folders(src: Path) -> Source:
    classes, task = class_table(src, LAYOUT)
    source = Source(task, LAYOUT, src, classes, {})
    by_wnid = {c.wnid: c.index for c in classes}
    source.items["train"] = read_wnid_folders(source, src / "train", by_wnid, "the ILSVRC-2012 classes")
    if (src / "val").is_dir():
        source.items["val"] = read_wnid_folders(source, src / "val", by_wnid, "the ILSVRC-2012 classes",
                                                 split="val")
    ignore_rest(source, src, {"train", "val", DEVKIT, KAGGLE_MAPPING}, "not part of the train/ and val/ folders")
    return source


# ---- the form (prep/forms/__init__.py) --------------------------------------------------------
LAYOUT = "imagenet-folders"
HOLDS = "the torchvision references' ImageNet: `train/<wnid>/`, `val/<wnid>/` (a devkit or mapping beside them names the classes, else the shipped table)"
OWN_IDS = True


def detect(src) -> str | None:
    return "imagenet" if is_imagenet_folders(src) else None


def read(src, task: str) -> Source:
    return read_imagenet_folders(src)
