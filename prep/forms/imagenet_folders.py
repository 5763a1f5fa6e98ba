"""The torchvision references' ImageNet: train/<wnid>/, val/<wnid>/ (classes from a devkit or
Kaggle's mapping beside them, else the shipped table).

Such a tree is ImageNet when it says so: a folder for each of ILSVRC-2012's 1,000 classes, or
ILSVRC-2012's own table beside it (the devkit, or Kaggle's mapping listing the 1,000 classes).
Any other tree of wnid folders is a subset (Imagenette, Imagewoof, ImageNet-100) and is read by
prep/forms/imagenet_subset.py; `--form imagenet` and `--form imagenet-subset` choose either
reading of any tree of wnid folders."""
from __future__ import annotations

from pathlib import Path

from shared.ilsvrc import CLASSES, ilsvrc_wnids

from ..sources import Source, ignore_rest, list_folder, read_text_file
from .devkit import DEVKIT, class_table, shipped_classes
from .kaggle import KAGGLE_MAPPING
from .wnid_folders import WNID, read_wnid_folders


def wnid_folder_names(src) -> list[str]:
    """The wnid class folders of train/ (none: not this shape). wnid folders mixed with others
    are refused, never read as generic class folders (whose string-sorted classes would permute
    ImageNet's labels)."""
    train = src / "train"
    if not train.is_dir():
        return []
    names = [d.name for d in list_folder(train, src).dirs]
    wnids = [n for n in names if WNID.fullmatch(n)]
    others = [n for n in names if not WNID.fullmatch(n)]
    if wnids and others:
        raise ValueError(f"--src {src}: train/ holds {len(wnids)} class folders named by wnids (ImageNet as the "
                         f"torchvision references keep it) and {len(others)} that are not (e.g. "
                         f"{', '.join(others[:3])}): move those out of train/, or pass --form folder to read every "
                         f"folder as a class of a dataset of its own")
    return wnids


def table_beside(src) -> str | None:
    """The file beside train/ that declares ILSVRC-2012's 1,000 classes, if one does: the devkit,
    or a Kaggle mapping of 1,000 lines (a shorter one names a subset, not ImageNet)."""
    if (src / DEVKIT).is_file():
        return DEVKIT
    if (src / KAGGLE_MAPPING).is_file():
        lines = [ln for ln in read_text_file(src / KAGGLE_MAPPING).splitlines() if ln.strip()]
        return KAGGLE_MAPPING if len(lines) >= CLASSES else None
    return None


def reading(src) -> tuple[str, str] | None:
    """("imagenet" or "imagenet-subset", the one-line reason) for a tree of wnid folders, else None."""
    wnids = wnid_folder_names(src)
    if not wnids:
        return None
    held = len(set(wnids) & set(ilsvrc_wnids()))
    table = table_beside(src)
    if held == CLASSES:
        return "imagenet", f"read as ImageNet: train/ holds a folder for each of ILSVRC-2012's {CLASSES:,} classes"
    if table is not None:
        return "imagenet", (f"read as ImageNet ({CLASSES:,} classes, {CLASSES - held:,} without a folder): {table} "
                            f"beside train/ declares ILSVRC-2012; --form imagenet-subset reads the {len(wnids):,} "
                            f"class folders as a dataset of their own")
    return "imagenet-subset", (f"read as a {len(wnids):,}-class ImageNet subset: train/ holds {held:,} of "
                               f"ILSVRC-2012's {CLASSES:,} classes (--form imagenet reads it as ImageNet, with "
                               f"{CLASSES - held:,} classes empty)")


def read_imagenet_folders(src: Path) -> Source:
    table = table_beside(src)
    classes, task = class_table(src, LAYOUT) if table else (shipped_classes(), "imagenet")
    source = Source(task, LAYOUT, src, classes, {})
    if table is None and (src / KAGGLE_MAPPING).is_file():
        source.ignore(src / KAGGLE_MAPPING, f"lists fewer than ILSVRC-2012's {CLASSES:,} classes: the shipped "
                                            f"table names them")
    by_wnid = {c.wnid: c.index for c in classes}
    source.items["train"] = read_wnid_folders(source, src / "train", by_wnid, "the ILSVRC-2012 classes")
    if (src / "val").is_dir():
        source.items["val"] = read_wnid_folders(source, src / "val", by_wnid, "the ILSVRC-2012 classes",
                                                 split="val")
    ignore_rest(source, src, {"train", "val", DEVKIT, KAGGLE_MAPPING}, "not part of the train/ and val/ folders")
    return source


# ---- the form (prep/forms/__init__.py) --------------------------------------------------------
LAYOUT = "imagenet-folders"
HOLDS = ("the torchvision references' ImageNet: `train/<wnid>/`, `val/<wnid>/` with a folder for each of the "
         "1,000 classes or a devkit or mapping beside them (else the shipped table names the classes)")
OWN_IDS = True


def detect(src) -> str | None:
    found = reading(src)
    return "imagenet" if found and found[0] == "imagenet" else None


def fits(src) -> bool:
    """--form imagenet: any tree of wnid class folders may be read as ImageNet."""
    return bool(wnid_folder_names(src))


def read(src, task: str) -> Source:
    source = read_imagenet_folders(src)
    found = reading(src)
    source.reading = found[1] if found and found[0] == "imagenet" else \
        "read as ImageNet (--form imagenet): ILSVRC-2012's 1,000 classes, whichever have folders here"
    return source
