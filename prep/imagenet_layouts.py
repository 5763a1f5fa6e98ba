"""ImageNet-style layouts: the Kaggle ILSVRC-2012 archive and tiny-imagenet-200."""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from shared.manifest import ClassInfo, Skip
from shared.shards import sanitize_key

from .sources import Item, Source, relative

WNID = re.compile(r"^n\d{8}$")
KAGGLE_MAPPING = "LOC_synset_mapping.txt"
KAGGLE_SOLUTION = "LOC_val_solution.csv"
KAGGLE_CLS_LOC = Path("ILSVRC/Data/CLS-LOC")


def is_kaggle_imagenet(src: Path) -> bool:
    return (src / KAGGLE_MAPPING).is_file() and (src / KAGGLE_CLS_LOC).is_dir()


def is_tiny_imagenet(src: Path) -> bool:
    return (src / "wnids.txt").is_file() and (src / "train").is_dir()


def _sorted_files(folder: Path) -> list[Path]:
    # os.scandir: listing 1.28M ImageNet files with Path.rglob takes minutes more.
    with os.scandir(folder) as it:
        return sorted(Path(e.path) for e in it if e.is_file() and not e.name.startswith("."))


def read_kaggle_mapping(path: Path) -> list[ClassInfo]:
    classes = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        wnid, _, name = line.partition(" ")
        if not WNID.match(wnid):
            raise ValueError(f"{path}:{lineno}: expected 'nXXXXXXXX name, synonyms', got {line!r}")
        classes.append(ClassInfo(len(classes), wnid, name.strip()))
    if not classes:
        raise ValueError(f"{path}: no classes (expected one 'wnid name' per line)")
    return classes


def _read_class_folders(train_dir: Path, root: Path, by_wnid: dict[str, int], mapping_name: str,
                        images_subdir: str = "") -> tuple[list[Item], list[Skip]]:
    items, skipped = [], []
    with os.scandir(train_dir) as it:
        entries = sorted(Path(e.path) for e in it)
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_file():
            skipped.append(Skip(relative(entry, root), "train", "not inside a class folder"))
            continue
        label = by_wnid.get(entry.name)
        folder = entry / images_subdir if images_subdir else entry
        files = _sorted_files(folder) if folder.is_dir() else []
        for path in files:
            rel = relative(path, root)
            if label is None:
                skipped.append(Skip(rel, "train", f"class folder {entry.name!r} is not in {mapping_name}"))
            else:
                items.append(Item(sanitize_key(path.stem), label, rel))
    return items, skipped


def read_kaggle_imagenet(src: Path) -> Source:
    classes = read_kaggle_mapping(src / KAGGLE_MAPPING)
    by_wnid = {c.wnid: c.index for c in classes}
    base = src / KAGGLE_CLS_LOC
    items: dict[str, list[Item]] = {}
    ignored: list[dict] = []
    train_dir = base / "train"
    if not train_dir.is_dir():
        raise FileNotFoundError(f"{train_dir}: missing; the Kaggle layout needs ILSVRC/Data/CLS-LOC/train/<wnid>/")
    items["train"], skipped = _read_class_folders(train_dir, src, by_wnid, KAGGLE_MAPPING)

    val_dir = base / "val"
    solution = src / KAGGLE_SOLUTION
    if val_dir.is_dir() and not solution.is_file():
        ignored.append({"path": relative(val_dir, src), "reason": f"{KAGGLE_SOLUTION} missing: no labels"})
    elif val_dir.is_dir():
        labels = read_kaggle_solution(solution)
        val_items = []
        files = {p.stem: p for p in _sorted_files(val_dir)}
        for stem, path in files.items():
            rel = relative(path, src)
            wnid = labels.get(stem)
            if wnid is None:
                skipped.append(Skip(rel, "val", f"not listed in {KAGGLE_SOLUTION}"))
            elif wnid not in by_wnid:
                skipped.append(Skip(rel, "val", f"{KAGGLE_SOLUTION} names {wnid!r}, not in {KAGGLE_MAPPING}"))
            else:
                val_items.append(Item(sanitize_key(stem), by_wnid[wnid], rel))
        for image_id in sorted(set(labels) - set(files)):
            skipped.append(Skip(relative(val_dir / f"{image_id}.JPEG", src), "val",
                                f"listed in {KAGGLE_SOLUTION} but the file is missing"))
        items["val"] = val_items
    test_dir = base / "test"
    if test_dir.is_dir():
        ignored.append({"path": relative(test_dir, src), "reason": "Kaggle test set has no labels"})
    # ILSVRC-2012 has 1000 classes; a Kaggle-layout folder with others (e.g. `alexnet-prep
    # synth`) must not be reported beside the paper's ImageNet figures.
    task = "imagenet" if len(classes) == 1000 else f"kaggle-{len(classes)}-classes"
    return Source(task, "kaggle-imagenet", src, classes, items, skipped, ignored)


def read_kaggle_solution(path: Path) -> dict[str, str]:
    """ImageId -> wnid: the first token of PredictionString (boxes may follow)."""
    labels = {}
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != ["ImageId", "PredictionString"]:
            raise ValueError(f"{path}: header {header}, expected ['ImageId', 'PredictionString']")
        for lineno, row in enumerate(reader, 2):
            if len(row) != 2 or not row[1].split():
                raise ValueError(f"{path}:{lineno}: expected 'ImageId,wnid [boxes...]', got {row}")
            labels[row[0]] = row[1].split()[0]
    return labels


def read_tiny_imagenet(src: Path) -> Source:
    wnids_path = src / "wnids.txt"
    wnids = sorted({w.strip() for w in wnids_path.read_text().split() if w.strip()})
    bad = [w for w in wnids if not WNID.match(w)]
    if bad or not wnids:
        raise ValueError(f"{wnids_path}: expected one WordNet id per line, got {bad[:3] or 'nothing'}")
    names = {}
    words = src / "words.txt"
    if words.is_file():
        for line in words.read_text().splitlines():
            wnid, _, name = line.partition("\t")
            names[wnid] = name.strip()
    # Class index = position in sorted wnids.txt (wnids.txt's own order is arbitrary).
    classes = [ClassInfo(i, w, names.get(w, w)) for i, w in enumerate(wnids)]
    by_wnid = {c.wnid: c.index for c in classes}
    train, skipped = _read_class_folders(src / "train", src, by_wnid, "wnids.txt", images_subdir="images")
    items = {"train": train}
    ignored = []
    val_images = src / "val" / "images"
    annotations = src / "val" / "val_annotations.txt"
    if val_images.is_dir():
        labels = {}
        if annotations.is_file():
            for line in annotations.read_text().splitlines():
                fields = line.split("\t")
                if len(fields) >= 2:
                    labels[fields[0]] = fields[1]
        val = []
        for path in _sorted_files(val_images):
            rel = relative(path, src)
            wnid = labels.get(path.name)
            if wnid is None:
                skipped.append(Skip(rel, "val", "not listed in val/val_annotations.txt"))
            elif wnid not in by_wnid:
                skipped.append(Skip(rel, "val", f"val_annotations.txt names {wnid!r}, not in wnids.txt"))
            else:
                val.append(Item(sanitize_key(path.stem), by_wnid[wnid], rel))
        items["val"] = val
    if (src / "test").is_dir():
        ignored.append({"path": "test", "reason": "tiny-imagenet test set has no labels"})
    return Source("tiny-imagenet", "tiny-imagenet", src, classes, items, skipped, ignored)
