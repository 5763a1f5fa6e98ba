"""ILSVRC-2012's 1,000 classes, the one class table both stages hold an ImageNet dataset to:
class i is the i-th wnid in sorted order (the devkit's leaf synsets; Kaggle's
LOC_synset_mapping.txt order; what ReaL and ImageNetV2 index). The table ships with the
project (`ilsvrc2012_classes.txt`: Kaggle's mapping, "wnid words" per line).

A form whose table has exactly these wnids in another order is read in this order (with a
warning naming its file); one with other wnids is not ImageNet (prep/forms/imagenet_classes.py)."""
from __future__ import annotations

import functools
import re
from pathlib import Path

TABLE = Path(__file__).with_name("ilsvrc2012_classes.txt")
CLASSES = 1000
VAL_IMAGES = 50_000  # ILSVRC2012_img_val.tar, the devkit's ground truth, ReaL's lists
VAL_KEY = "ILSVRC2012_val_{:08d}"  # image n of val (1-based): its file stem and its sample key
VAL_KEY_PATTERN = re.compile(r"ILSVRC2012_val_[0-9]{8}")  # use fullmatch


@functools.cache
def ilsvrc_table() -> tuple[tuple[str, str], ...]:
    """(wnid, words) of the 1,000 classes, in class-index order."""
    rows = tuple((wnid, words.strip()) for wnid, _, words in
                 (line.partition(" ") for line in TABLE.read_text(encoding="utf-8").splitlines() if line.strip()))
    if len(rows) != CLASSES or [w for w, _ in rows] != sorted(w for w, _ in rows):
        raise RuntimeError(f"{TABLE}: the shipped class table is damaged (reinstall the project)")
    return rows


def ilsvrc_wnids() -> list[str]:
    return [wnid for wnid, _ in ilsvrc_table()]


def is_ilsvrc_order(wnids: list) -> bool:
    """Whether a dataset's class list is ILSVRC-2012's, index for index."""
    return list(wnids) == ilsvrc_wnids()
