"""ILSVRC-2012's devkit and class table, for the forms that do not carry Kaggle's mapping.

The devkit's IDs are not class indices: ILSVRC2012_validation_ground_truth.txt line n is the
ILSVRC2012_ID of val image n, and meta.mat maps IDs to wnids (val_00000001's ID 490 is
n01751748, index 65). The table is read from meta.mat every time, never hard-coded."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from shared.ilsvrc import VAL_IMAGES, VAL_KEY, VAL_KEY_PATTERN, ilsvrc_table
from shared.manifest import ClassInfo, Skip

from ..archives import archive_root
from ..sources import Source, read_text_file, walk
from .imagenet_classes import checked_imagenet_table
from .kaggle import KAGGLE_MAPPING, read_kaggle_mapping
from .wnid_folders import WNID, LabelFile

DEVKIT = "ILSVRC2012_devkit_t12.tar.gz"


@dataclass
class Devkit:
    classes: list[ClassInfo]  # sorted-wnid order; names from meta.mat's `words`
    val_labels: LabelFile  # ILSVRC2012_val_%08d -> wnid, from the ground truth by way of the IDs


def _member(root, name: str):
    found = [p for p in walk(root, root).files if p.name == name]
    if len(found) != 1:
        raise ValueError(f"{root}: expected one {name}, found {len(found)}")
    return found[0]


def read_devkit(path: Path) -> Devkit:
    """The class table and val labels of ILSVRC2012_devkit_t12.tar.gz, read with scipy."""
    import scipy.io  # torchvision reads meta.mat the same way; only this form needs scipy

    root = archive_root(path)
    meta, truth = _member(root, "meta.mat"), _member(root, "ILSVRC2012_validation_ground_truth.txt")
    data = meta.read_bytes()
    try:
        synsets = scipy.io.loadmat(io.BytesIO(data), squeeze_me=True)["synsets"]
        rows = [(int(s["ILSVRC2012_ID"]), str(s["WNID"]), str(s["words"]), int(s["num_children"])) for s in synsets]
    except Exception as exc:  # noqa: BLE001 -- scipy's MAT reader raises many kinds on damaged bytes (MatReadError,
        # struct.error, EOFError, OSError, ValueError...); every one means "not the devkit's meta.mat"
        raise ValueError(f"{meta}: not the devkit's meta.mat (a `synsets` struct array with ILSVRC2012_ID, WNID, "
                         f"words, num_children): {exc}") from None
    leaves = [(i, w, words) for i, w, words, children in rows if children == 0]
    wnids = sorted(w for _, w, _ in leaves)
    ids = sorted(i for i, _, _ in leaves)
    if len(leaves) != 1000 or len(set(wnids)) != 1000 or not all(WNID.fullmatch(w) for w in wnids) \
            or ids != list(range(1, 1001)):
        raise ValueError(f"{meta}: {len(leaves)} leaf synsets (num_children == 0), expected ILSVRC-2012's 1,000 "
                         f"distinct wnids with IDs 1..1000")
    words = {w: name for _, w, name in leaves}
    classes = [ClassInfo(k, w, words[w]) for k, w in enumerate(wnids)]
    wnid_of = {i: w for i, w, _ in leaves}
    labels = LabelFile(truth.name)
    lines = read_text_file(truth).split()
    if len(lines) != VAL_IMAGES or not all(x.isdigit() and int(x) in wnid_of for x in lines):
        raise ValueError(f"{truth}: expected {VAL_IMAGES:,} lines, each an ILSVRC2012_ID in 1..1000")
    for n, x in enumerate(lines, 1):
        labels.add(VAL_KEY.format(n), wnid_of[int(x)])
    return Devkit(classes, labels)


def class_table(src, layout: str) -> tuple[list[ClassInfo], str]:
    """ILSVRC-2012's classes for a folder form: the devkit beside it, else Kaggle's mapping
    beside it, else the table shipped with this project; checked against ILSVRC-2012's
    (prep/forms/imagenet_classes.py). Returns (classes, task)."""
    if (src / DEVKIT).is_file():
        return checked_imagenet_table(read_devkit(src / DEVKIT).classes, str(src / DEVKIT), layout)
    if (src / KAGGLE_MAPPING).is_file():
        return checked_imagenet_table(read_kaggle_mapping(src / KAGGLE_MAPPING), str(src / KAGGLE_MAPPING), layout)
    return shipped_classes(), "imagenet"


def shipped_classes() -> list[ClassInfo]:
    return [ClassInfo(i, wnid, words) for i, (wnid, words) in enumerate(ilsvrc_table())]


def keep_split_keys(source: Source) -> None:
    """ImageNet's keys follow its splits' names (ReaL and the val labels are matched by key):
    a val image is ILSVRC2012_val_NNNNNNNN, and a training image never takes such a key (a
    train file named like one pushed the real val image to `-dup1`)."""
    for split, items in source.items.items():
        kept = []
        for item in items:
            val_named = VAL_KEY_PATTERN.fullmatch(item.key) is not None
            if split == "train" and val_named:
                source.skipped.append(Skip(item.source, split, "named like an ImageNet val image "
                                                               "(ILSVRC2012_val_NNNNNNNN): a training image never "
                                                               "takes a val image's key"))
            elif split == "val" and not val_named:
                source.skipped.append(Skip(item.source, split, "not named as ImageNet's val images are "
                                                               "(ILSVRC2012_val_NNNNNNNN)"))
            else:
                kept.append(item)
        source.items[split] = kept
