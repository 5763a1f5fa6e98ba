"""ILSVRC-2012 in every form people hold it, read into the same samples (issue 20):

  ilsvrc-archives   image-net.org's downloads in one folder: ILSVRC2012_img_train.tar (a tar of
                    1,000 per-class tars), ILSVRC2012_img_val.tar, ILSVRC2012_devkit_t12.tar.gz
  imagenet-folders  the torchvision references' train/<wnid>/, val/<wnid>/
  huggingface       imagenet-1k's train_images_{0..4}.tar.gz, val_images.tar.gz (`<stem>_<wnid>.JPEG`)
  imagenetv2        Recht et al.'s `imagenetv2-*-format-val/<k>/<sha1>.jpeg` (k = class index)
and Kaggle's layout (prep/imagenet_layouts.py). Every form gives the classes in sorted-wnid
order (Kaggle's LOC_synset_mapping.txt order), keys = file stems, the same labels.

The devkit's IDs are not class indices: ILSVRC2012_validation_ground_truth.txt line n is the
ILSVRC2012_ID of val image n, and meta.mat maps IDs to wnids (val_00000001's ID 490 is
n01751748, index 65). The table is read from meta.mat every time, never hard-coded.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

from shared.manifest import ClassInfo
from shared.shards import sanitize_key

from .archives import ArchivePath, archive_root
from .imagenet_layouts import (KAGGLE_MAPPING, WNID, LabelFile, read_class_folders, read_kaggle_mapping,
                               read_labelled_folder)
from .sources import Item, Source, Tree, account_tree, ignore_rest, list_folder, relative, walk

# From Kaggle's LOC_synset_mapping.txt (imagenet-object-localization-challenge), which lists
# the devkit meta.mat's 1,000 leaf synsets in sorted-wnid order with their `words`.
SHIPPED_TABLE = Path(__file__).with_name("ilsvrc2012_classes.txt")
DEVKIT = "ILSVRC2012_devkit_t12.tar.gz"
TRAIN_TAR, VAL_TAR = "ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"
HF_TRAIN = re.compile(r"train_images_[0-9]+\.tar\.gz")
HF_VAL, HF_TEST = "val_images.tar.gz", "test_images.tar.gz"
V2_FOLDER = re.compile(r"(imagenetv2-[a-z0-9.-]+)-format-val")
VAL_KEY = "ILSVRC2012_val_{:08d}"
VAL_IMAGES = 50_000


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
    try:
        synsets = scipy.io.loadmat(io.BytesIO(meta.read_bytes()), squeeze_me=True)["synsets"]
        rows = [(int(s["ILSVRC2012_ID"]), str(s["WNID"]), str(s["words"]), int(s["num_children"])) for s in synsets]
    except (ValueError, KeyError, TypeError, IndexError, NotImplementedError) as exc:
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
    lines = truth.read_text().split()
    if len(lines) != VAL_IMAGES or not all(x.isdigit() and int(x) in wnid_of for x in lines):
        raise ValueError(f"{truth}: expected {VAL_IMAGES:,} lines, each an ILSVRC2012_ID in 1..1000")
    for n, x in enumerate(lines, 1):
        labels.add(VAL_KEY.format(n), wnid_of[int(x)])
    return Devkit(classes, labels)


def class_table(src) -> tuple[list[ClassInfo], str]:
    """ILSVRC-2012's classes for a folder form: the devkit beside it, else Kaggle's mapping
    beside it, else the table shipped with this project. Returns (classes, where from)."""
    if (src / DEVKIT).is_file():
        return read_devkit(src / DEVKIT).classes, DEVKIT
    if (src / KAGGLE_MAPPING).is_file():
        return read_kaggle_mapping(src / KAGGLE_MAPPING), KAGGLE_MAPPING
    return read_kaggle_mapping(SHIPPED_TABLE), f"the shipped table ({SHIPPED_TABLE.name})"


def shipped_classes() -> list[ClassInfo]:
    return read_kaggle_mapping(SHIPPED_TABLE)


# ---- detection ------------------------------------------------------------------------------
def is_ilsvrc_archives(src) -> bool:
    return isinstance(src, Path) and (src / DEVKIT).is_file() and ((src / TRAIN_TAR).is_file()
                                                                   or (src / VAL_TAR).is_file())


def is_huggingface(src) -> bool:
    return isinstance(src, Path) and src.is_dir() and any(
        HF_TRAIN.fullmatch(p.name) or p.name == HF_VAL for p in src.iterdir() if p.is_file())


def is_imagenetv2(src) -> bool:
    return bool(V2_FOLDER.fullmatch(src.name)) and src.is_dir()


def is_imagenet_folders(src) -> bool:
    """train/ holding class folders named by ILSVRC-2012 wnids (the torchvision references)."""
    train = src / "train"
    if not train.is_dir():
        return False
    names = [d.name for d in list_folder(train, src).dirs]
    return bool(names) and all(WNID.fullmatch(n) for n in names)


# ---- readers ----------------------------------------------------------------------------------
def _source(src, layout: str, classes: list[ClassInfo]) -> Source:
    return Source("imagenet" if len(classes) == 1000 else f"{layout}-{len(classes)}-classes", layout, src, classes, {})


def read_ilsvrc_archives(src: Path) -> Source:
    devkit = read_devkit(src / DEVKIT)
    source = _source(src, "ilsvrc-archives", devkit.classes)
    by_wnid = {c.wnid: c.index for c in devkit.classes}
    if (src / TRAIN_TAR).is_file():
        train = archive_root(src / TRAIN_TAR)
        source.items["train"] = read_class_folders(source, train, by_wnid, DEVKIT, folder_wnid=_tar_stem)
    if (src / VAL_TAR).is_file():
        val = archive_root(src / VAL_TAR)
        source.items["val"] = read_labelled_folder(source, val, devkit.val_labels, by_wnid, DEVKIT,
                                                   lambda p: p.stem, lambda image_id: val / f"{image_id}.JPEG")
    ignore_rest(source, src, {TRAIN_TAR, VAL_TAR, DEVKIT}, "not one of the ILSVRC-2012 archives read here "
                                                            "(the test set has no labels)")
    return source


def _tar_stem(name: str) -> str:
    return name[:-4] if name.lower().endswith(".tar") else name


def read_imagenet_folders(src: Path) -> Source:
    classes, _ = class_table(src)
    source = _source(src, "imagenet-folders", classes)
    by_wnid = {c.wnid: c.index for c in classes}
    source.items["train"] = read_class_folders(source, src / "train", by_wnid, "the ILSVRC-2012 classes")
    if (src / "val").is_dir():
        source.items["val"] = read_class_folders(source, src / "val", by_wnid, "the ILSVRC-2012 classes",
                                                 split="val")
    ignore_rest(source, src, {"train", "val", DEVKIT, KAGGLE_MAPPING}, "not part of the train/ and val/ folders")
    return source


def read_huggingface(src: Path) -> Source:
    classes, _ = class_table(src)
    source = _source(src, "huggingface", classes)
    by_wnid = {c.wnid: c.index for c in classes}
    archives = sorted(p for p in src.iterdir() if p.is_file() and HF_TRAIN.fullmatch(p.name))
    source.items["train"] = [it for a in archives for it in _hf_items(source, archive_root(a), by_wnid, "train")]
    if (src / HF_VAL).is_file():
        source.items["val"] = _hf_items(source, archive_root(src / HF_VAL), by_wnid, "val")
    if (src / HF_TEST).is_file():
        source.ignore(src / HF_TEST, "the test set has no labels")
    ignore_rest(source, src, {a.name for a in archives} | {HF_VAL, HF_TEST, DEVKIT, KAGGLE_MAPPING},
                "not one of imagenet-1k's archives")
    return source


def _hf_items(source: Source, root: ArchivePath, by_wnid: dict[str, int], split: str) -> list[Item]:
    """`<stem>_<wnid>.JPEG`: the label is the wnid after the last '_', the key the stem before."""
    tree = walk(root, source.root)
    account_tree(source, tree, split)
    items = []
    for path in tree.files:
        stem, _, wnid = path.stem.rpartition("_")
        if path.suffix.lower() not in (".jpeg", ".jpg") or not stem:
            source.ignore(path, "not an image named <stem>_<wnid>.JPEG")
        elif wnid not in by_wnid:
            source.skip(path, split, f"its name ends in {wnid!r}, not an ILSVRC-2012 wnid")
        else:
            items.append(Item(sanitize_key(stem), by_wnid[wnid], relative(path, source.root)))
    return items


def read_imagenetv2(src) -> Source:
    """An evaluation-only dataset (a `val` split) over ImageNet's 1,000 classes: folder k is
    class k of the sorted-wnid table (as integers: folder "10" is class 10, not the third)."""
    classes = shipped_classes()
    name = V2_FOLDER.fullmatch(src.name)
    source = Source(name.group(1) if name else "imagenetv2", "imagenetv2", src, classes, {})
    items = []
    listing = list_folder(src, source.root)
    for stray in listing.files:
        source.ignore(stray, "not inside a class folder")
    account_tree(source, Tree(hidden=listing.hidden, problems=listing.problems), "val")
    for folder in listing.dirs:
        label = int(folder.name) if folder.name.isdigit() and int(folder.name) < len(classes) else None
        tree = walk(folder, source.root)
        account_tree(source, tree, "val")
        for path in tree.files:
            if label is None:
                source.skip(path, "val", f"folder {folder.name!r} is not a class index 0..{len(classes) - 1}")
            elif path.suffix.lower() not in (".jpeg", ".jpg", ".png"):
                source.ignore(path, f"suffix {path.suffix!r} is not an image type")
            else:
                items.append(Item(sanitize_key(f"{label}_{path.stem}"), label, relative(path, source.root)))
    source.items["val"] = items
    return source
