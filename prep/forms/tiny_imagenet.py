"""tiny-imagenet-200: wnids.txt (class = position in sorted wnids), words.txt, train/<wnid>/images/,
val/images/ labelled by val/val_annotations.txt; test/ has no labels."""
from __future__ import annotations

from pathlib import Path

from shared.manifest import ClassInfo

from ..sources import Source, ignore_rest, read_text_file
from .wnid_folders import WNID, LabelFile, read_labelled_folder, read_wnid_folders

def is_tiny_imagenet(src: Path) -> bool:
    return (src / "wnids.txt").is_file() and (src / "train").is_dir()


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
    source = Source("tiny-imagenet", LAYOUT, src, classes, {})
    source.items["train"] = read_wnid_folders(source, src / "train", by_wnid, "wnids.txt", images_subdir="images")
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


# ---- the form (prep/forms/__init__.py) --------------------------------------------------------
LAYOUT = "tiny-imagenet"
HOLDS = "tiny-imagenet-200 (the zip or its folder): `wnids.txt`, `words.txt`, `train/<wnid>/images/`, `val/images/` + `val/val_annotations.txt`"
OWN_IDS = True


def detect(src) -> str | None:
    return "tiny-imagenet" if is_tiny_imagenet(src) else None


def read(src, task: str) -> Source:
    return read_tiny_imagenet(src)
