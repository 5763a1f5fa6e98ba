"""ImageNet-style layouts: the Kaggle ILSVRC-2012 archive and tiny-imagenet-200."""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from shared.manifest import ClassInfo
from shared.shards import sanitize_key

from .imagenet_classes import checked_imagenet_table
from .sources import Item, Source, Tree, account_tree, ignore_rest, list_folder, read_text_file, relative, walk

WNID = re.compile(r"n[0-9]{8}")  # use fullmatch
KAGGLE_MAPPING = "LOC_synset_mapping.txt"
KAGGLE_SOLUTION = "LOC_val_solution.csv"
KAGGLE_CLS_LOC = Path("ILSVRC/Data/CLS-LOC")


def is_kaggle_imagenet(src: Path) -> bool:
    return (src / KAGGLE_MAPPING).is_file() and (src / KAGGLE_CLS_LOC).is_dir()


def is_tiny_imagenet(src: Path) -> bool:
    return (src / "wnids.txt").is_file() and (src / "train").is_dir()


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


def read_class_folders(source: Source, train_dir: Path, by_wnid: dict[str, int], mapping_name: str,
                       images_subdir: str = "", folder_wnid=lambda name: name, split: str = "train") -> list[Item]:
    """`train_dir/<wnid>/[images_subdir/]<image>`: every entry a sample, a skip or ignored.
    `folder_wnid` reads the wnid from a folder's name (the official train tar: "n01440764.tar")."""
    items = []
    listing = list_folder(train_dir, source.root)
    account_tree(source, Tree(hidden=listing.hidden, problems=listing.problems), split)
    for path in listing.files:
        source.skip(path, split, "not inside a class folder")
    for folder in listing.dirs:
        label = by_wnid.get(folder_wnid(folder.name))
        images = folder / images_subdir if images_subdir else folder
        tree = walk(images, source.root)
        has_images = any(p.parent == images for p in tree.files)
        if label is not None and not has_images:
            tree.empty_dirs = [d for d in tree.empty_dirs if d != images]
            source.ignore(folder, f"class {folder.name} has no {'training' if split == 'train' else split} images")
        account_tree(source, tree, split)
        if images_subdir:
            ignore_rest(source, folder, {images_subdir}, f"not under {images_subdir}/ (tiny-imagenet keeps boxes there)")
        for path in tree.files:
            if label is None:
                source.skip(path, split, f"class folder {folder.name!r} is not in {mapping_name}")
            elif path.parent != images:
                source.skip(path, split, f"in a subfolder of class folder {folder.name}/ (the layout has none)")
            else:
                items.append(Item(sanitize_key(path.stem), label, relative(path, source.root)))
    return items


@dataclass
class LabelFile:
    """Image id -> wnid, as a labels file gives them (LOC_val_solution.csv, val_annotations.txt);
    an id listed with two different wnids is in `conflicts`, never silently the last row's."""
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    conflicts: dict[str, list[str]] = field(default_factory=dict)

    def add(self, image_id: str, wnid: str) -> None:
        if image_id in self.conflicts:
            if wnid not in self.conflicts[image_id]:
                self.conflicts[image_id].append(wnid)
        elif self.labels.setdefault(image_id, wnid) != wnid:
            self.conflicts[image_id] = [self.labels.pop(image_id), wnid]


def read_labelled_folder(source: Source, folder: Path, labels: LabelFile, by_wnid: dict[str, int],
                         mapping_name: str, id_of, path_of) -> list[Item]:
    """Val images labelled by a file (`id_of(path)` -> the id the file uses, `path_of(id)` the
    file an id names); two files with one id are ambiguous: the .JPEG is kept, the other
    skipped. An id the file lists with no image on disk is a skip too."""
    tree = walk(folder, source.root)
    account_tree(source, tree, "val")
    chosen: dict[str, Path] = {}
    for path in sorted(tree.files, key=lambda p: (p.suffix != ".JPEG", p)):
        image_id = id_of(path)
        if path.parent != folder:
            source.skip(path, "val", f"in a subfolder of {relative(folder, source.root)}/ (the layout has none)")
        elif image_id in chosen:
            source.skip(path, "val", f"same image id as {chosen[image_id].name}, which is used")
        else:
            chosen[image_id] = path
    items = []
    for image_id, path in sorted(chosen.items(), key=lambda kv: kv[1]):
        wnid = labels.labels.get(image_id)
        if image_id in labels.conflicts:
            source.skip(path, "val", f"{labels.name} gives it {len(labels.conflicts[image_id])} different labels: "
                                     f"{', '.join(labels.conflicts[image_id])}")
        elif wnid is None:
            source.skip(path, "val", f"not listed in {labels.name}")
        elif wnid not in by_wnid:
            source.skip(path, "val", f"{labels.name} names {wnid!r}, not in {mapping_name}")
        else:
            items.append(Item(sanitize_key(path.stem), by_wnid[wnid], relative(path, source.root)))
    for image_id in sorted((set(labels.labels) | set(labels.conflicts)) - set(chosen)):
        source.skip(path_of(image_id), "val", f"listed in {labels.name} but the file is missing")
    return items


def read_kaggle_imagenet(src: Path) -> Source:
    # ILSVRC-2012's table, or a dataset of its own (e.g. `alexnet-prep synth`) never
    # reported beside the paper's ImageNet figures (prep/imagenet_classes.py)
    classes, task = checked_imagenet_table(read_kaggle_mapping(src / KAGGLE_MAPPING), str(src / KAGGLE_MAPPING),
                                           "kaggle")
    by_wnid = {c.wnid: c.index for c in classes}
    source = Source(task, "kaggle-imagenet", src, classes, {})
    base = src / KAGGLE_CLS_LOC
    train_dir = base / "train"
    if not train_dir.is_dir():
        raise FileNotFoundError(f"{train_dir}: missing; the Kaggle layout needs ILSVRC/Data/CLS-LOC/train/<wnid>/")
    source.items["train"] = read_class_folders(source, train_dir, by_wnid, KAGGLE_MAPPING)
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


def read_tiny_imagenet(src: Path) -> Source:
    wnids_path = src / "wnids.txt"
    wnids = sorted({w.strip() for w in read_text_file(wnids_path).split() if w.strip()})
    bad = [w for w in wnids if not WNID.fullmatch(w)]
    if bad or not wnids:
        raise ValueError(f"{wnids_path}: expected one WordNet id per line, got {bad[:3] or 'nothing'}")
    names = {}
    words = src / "words.txt"
    if words.is_file():
        for line in read_text_file(words).splitlines():
            wnid, _, name = line.partition("\t")
            names[wnid] = name.strip()
    # Class index = position in sorted wnids.txt (wnids.txt's own order is arbitrary).
    classes = [ClassInfo(i, w, names.get(w, w)) for i, w in enumerate(wnids)]
    by_wnid = {c.wnid: c.index for c in classes}
    source = Source("tiny-imagenet", "tiny-imagenet", src, classes, {})
    source.items["train"] = read_class_folders(source, src / "train", by_wnid, "wnids.txt", images_subdir="images")
    val_images, annotations = src / "val" / "images", src / "val" / "val_annotations.txt"
    if not (val_images.is_dir() and annotations.is_file()):  # the form's val split never goes missing quietly
        raise FileNotFoundError(f"{val_images if not val_images.is_dir() else annotations}: missing; tiny-imagenet's "
                                f"val split is val/images/ labelled by val/val_annotations.txt")
    labels = LabelFile("val/val_annotations.txt")
    for line in read_text_file(annotations).splitlines():
        fields = line.split("\t")
        if len(fields) >= 2:
            labels.add(fields[0], fields[1])
    source.items["val"] = read_labelled_folder(source, val_images, labels, by_wnid, "wnids.txt",
                                               lambda p: p.name, lambda image_id: val_images / image_id)
    ignore_rest(source, src / "val", {"images", "val_annotations.txt"}, "not part of the val data")
    if (src / "test").is_dir():
        source.ignore(src / "test", "tiny-imagenet test set has no labels")
    ignore_rest(source, src, {"wnids.txt", "words.txt", "train", "val", "test"}, "not part of tiny-imagenet's data")
    return source
