"""Kaggle's ILSVRC-2012 (`imagenet-object-localization-challenge`, zip or folder):
LOC_synset_mapping.txt (line i = class i, checked against ILSVRC-2012's), ILSVRC/Data/CLS-LOC/
train/<wnid>/ and val/ labelled by LOC_val_solution.csv; test/ has no labels."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from shared.manifest import ClassInfo

from ..sources import Source, ignore_rest, read_text_file
from .imagenet_classes import checked_imagenet_table
from .wnid_folders import WNID, LabelFile, read_labelled_folder, read_wnid_folders

KAGGLE_MAPPING = "LOC_synset_mapping.txt"


KAGGLE_SOLUTION = "LOC_val_solution.csv"


KAGGLE_CLS_LOC = Path("ILSVRC/Data/CLS-LOC")


def is_kaggle_imagenet(src: Path) -> bool:
    return (src / KAGGLE_MAPPING).is_file() and (src / KAGGLE_CLS_LOC).is_dir()


def read_kaggle_mapping(path: Path) -> list[ClassInfo]:
    classes = []
    for lineno, line in enumerate(read_text_file(path).splitlines(), 1):
        if not line.strip():
            continue
        wnid, _, name = line.partition(" ")
        if not WNID.fullmatch(wnid):
            raise ValueError(f"{path}:{lineno}: expected 'nXXXXXXXX name, synonyms', got {line!r}")
        classes.append(ClassInfo(len(classes), wnid, name.strip()))
    if not classes:
        raise ValueError(f"{path}: no classes (expected one 'wnid name' per line)")
    wnids = [c.wnid for c in classes]
    if len(set(wnids)) != len(wnids):
        raise ValueError(f"{path}: a wnid appears twice; each line must name a different class")
    return classes


def read_kaggle_imagenet(src: Path) -> Source:
    # ILSVRC-2012's table, or a dataset of its own (e.g. `alexnet-prep synth`) never
    # reported beside the paper's ImageNet figures (prep/forms/imagenet_classes.py)
    classes, task = checked_imagenet_table(read_kaggle_mapping(src / KAGGLE_MAPPING), str(src / KAGGLE_MAPPING),
                                           "kaggle")
    by_wnid = {c.wnid: c.index for c in classes}
    source = Source(task, LAYOUT, src, classes, {})
    base = src / KAGGLE_CLS_LOC
    train_dir = base / "train"
    if not train_dir.is_dir():
        raise FileNotFoundError(f"{train_dir}: missing; the Kaggle layout needs ILSVRC/Data/CLS-LOC/train/<wnid>/")
    source.items["train"] = read_wnid_folders(source, train_dir, by_wnid, KAGGLE_MAPPING)
    val_dir, solution = base / "val", src / KAGGLE_SOLUTION
    if not (val_dir.is_dir() and solution.is_file()):  # the form's val split never goes missing quietly
        raise FileNotFoundError(f"{val_dir if not val_dir.is_dir() else solution}: missing; the Kaggle layout's val "
                                f"split is ILSVRC/Data/CLS-LOC/val/ labelled by {KAGGLE_SOLUTION}")
    labels = read_kaggle_solution(solution)
    source.items["val"] = read_labelled_folder(source, val_dir, labels, by_wnid, KAGGLE_MAPPING,
                                               lambda p: p.stem, lambda image_id: val_dir / f"{image_id}.JPEG")
    if (base / "test").is_dir():
        source.ignore(base / "test", "Kaggle test set has no labels")
    ignore_rest(source, src, {KAGGLE_MAPPING, KAGGLE_SOLUTION, "ILSVRC"}, "not part of the classification data")
    ignore_rest(source, src / "ILSVRC", {"Data"}, "not part of the classification data (boxes, image lists)")
    ignore_rest(source, src / "ILSVRC" / "Data", {"CLS-LOC"}, "not part of the classification data")
    ignore_rest(source, base, {"train", "val", "test"}, "not part of the classification data")
    return source


def read_kaggle_solution(path: Path) -> LabelFile:
    """ImageId -> wnid: the first token of PredictionString (boxes may follow)."""
    labels = LabelFile(KAGGLE_SOLUTION)
    with io.StringIO(read_text_file(path), newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != ["ImageId", "PredictionString"]:
            raise ValueError(f"{path}: header {header}, expected ['ImageId', 'PredictionString']")
        for lineno, row in enumerate(reader, 2):
            if len(row) != 2 or not row[1].split():
                raise ValueError(f"{path}:{lineno}: expected 'ImageId,wnid [boxes...]', got {row}")
            labels.add(row[0], row[1].split()[0])
    return labels


# ---- the form (prep/forms/__init__.py) --------------------------------------------------------
LAYOUT = "kaggle-imagenet"
HOLDS = "Kaggle's `imagenet-object-localization-challenge` (the zip or its folder): `LOC_synset_mapping.txt`, `ILSVRC/Data/CLS-LOC/train/<wnid>/`, `val/` + `LOC_val_solution.csv`"
OWN_IDS = True  # file stems are ImageNet's image ids


def detect(src) -> str | None:
    return "imagenet" if is_kaggle_imagenet(src) else None


def read(src, task: str) -> Source:
    return read_kaggle_imagenet(src)
