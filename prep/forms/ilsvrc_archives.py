"""image-net.org's downloads in one folder, read in place: ILSVRC2012_img_train.tar (a tar of
1,000 per-class tars), ILSVRC2012_img_val.tar, ILSVRC2012_devkit_t12.tar.gz (classes and val labels)."""
from __future__ import annotations

from pathlib import Path

from ..archives import archive_root
from ..sources import Source, ignore_rest
from .devkit import DEVKIT, read_devkit
from .imagenet_classes import checked_imagenet_table
from .wnid_folders import read_labelled_folder, read_wnid_folders

TRAIN_TAR, VAL_TAR = "ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"


# ---- detection ------------------------------------------------------------------------------
def is_ilsvrc_archives(src) -> bool:
    return isinstance(src, Path) and (src / DEVKIT).is_file() and ((src / TRAIN_TAR).is_file()
                                                                   or (src / VAL_TAR).is_file())


# ---- readers ----------------------------------------------------------------------------------
def read_ilsvrc_archives(src: Path) -> Source:
    devkit = read_devkit(src / DEVKIT)
    classes, task = checked_imagenet_table(devkit.classes, str(src / DEVKIT), LAYOUT)
    source = Source(task, LAYOUT, src, classes, {})
    by_wnid = {c.wnid: c.index for c in classes}
    if (src / TRAIN_TAR).is_file():
        train = archive_root(src / TRAIN_TAR)
        source.items["train"] = read_wnid_folders(source, train, by_wnid, DEVKIT, folder_wnid=_tar_stem)
    if (src / VAL_TAR).is_file():
        val = archive_root(src / VAL_TAR)
        source.items["val"] = read_labelled_folder(source, val, devkit.val_labels, by_wnid, DEVKIT,
                                                   lambda p: p.stem, lambda image_id: val / f"{image_id}.JPEG")
    ignore_rest(source, src, {TRAIN_TAR, VAL_TAR, DEVKIT}, "not one of the ILSVRC-2012 archives read here "
                                                            "(the test set has no labels)")
    return source


def _tar_stem(name: str) -> str:
    return name[:-4] if name.lower().endswith(".tar") else name


# ---- the form (prep/forms/__init__.py) --------------------------------------------------------
LAYOUT = "ilsvrc-archives"
HOLDS = "image-net.org's `ILSVRC2012_img_train.tar`, `ILSVRC2012_img_val.tar` and `ILSVRC2012_devkit_t12.tar.gz` in one folder (read in place)"
OWN_IDS = True


def detect(src) -> str | None:
    return "imagenet" if is_ilsvrc_archives(src) else None


def read(src, task: str) -> Source:
    return read_ilsvrc_archives(src)
