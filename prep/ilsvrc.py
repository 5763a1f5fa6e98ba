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

from shared.ilsvrc import VAL_IMAGES, VAL_KEY, VAL_KEY_PATTERN, ilsvrc_table
from shared.manifest import ClassInfo, Skip
from shared.patch import IMAGE_SUFFIXES
from shared.shards import sanitize_key

from .archives import ArchivePath, archive_root
from .imagenet_classes import checked_imagenet_table
from .imagenet_layouts import (KAGGLE_MAPPING, WNID, LabelFile, read_class_folders, read_kaggle_mapping,
                               read_labelled_folder)
from .sources import Item, Source, Tree, account_tree, ignore_rest, list_folder, read_text_file, relative, walk

DEVKIT = "ILSVRC2012_devkit_t12.tar.gz"
TRAIN_TAR, VAL_TAR = "ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"
HF_TRAIN = re.compile(r"train_images_[0-9]+\.tar\.gz")
HF_VAL, HF_TEST = "val_images.tar.gz", "test_images.tar.gz"
V2_FOLDER = re.compile(r"(imagenetv2-[a-z0-9.-]+)-format-val")


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
    (prep/imagenet_classes.py). Returns (classes, task)."""
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


# ---- detection ------------------------------------------------------------------------------
def is_ilsvrc_archives(src) -> bool:
    return isinstance(src, Path) and (src / DEVKIT).is_file() and ((src / TRAIN_TAR).is_file()
                                                                   or (src / VAL_TAR).is_file())


def is_huggingface(src) -> bool:
    return isinstance(src, Path) and src.is_dir() and any(
        HF_TRAIN.fullmatch(p.name) or p.name == HF_VAL for p in src.iterdir() if p.is_file())


V2_CLASS_FOLDERS = {str(k) for k in range(1000)}  # ImageNetV2's folders: class indices, no leading zeros


def _v2_by_content(folder) -> bool:
    """ImageNetV2 is 1,000 folders named 0..999 (whatever the top folder is called). Most
    of them, with a few missing or others beside them, is a damaged copy: refused, never
    read as class folders (string-sorted "0", "1", "10", ...: every label permuted)."""
    names = {d.name for d in list_folder(folder, folder).dirs}
    if names == V2_CLASS_FOLDERS:
        return True
    indices = names & V2_CLASS_FOLDERS
    if len(indices) > len(V2_CLASS_FOLDERS) // 2:
        missing = sorted(V2_CLASS_FOLDERS - names, key=int)
        others = sorted(names - V2_CLASS_FOLDERS)
        raise ValueError(f"--src {folder}: {len(indices)} class folders named 0..999 as ImageNetV2's, but "
                         f"{len(missing)} of them missing (e.g. {', '.join(missing[:3]) or '-'}) and {len(others)} "
                         f"other folders (e.g. {', '.join(others[:3]) or '-'}): not read (as ImageNetV2 its classes "
                         f"would be incomplete; as class folders every label would be permuted)")
    return False


def find_imagenetv2(src):
    """The ImageNetV2 folder of --src: --src itself (by its name `imagenetv2-*-format-val`
    or by its content), or the one folder inside it (--src given as its parent, or a
    tar.gz holding it); None if neither."""
    if not src.is_dir():
        return None
    if V2_FOLDER.fullmatch(src.name) or _v2_by_content(src):
        return src
    dirs = list_folder(src, src).dirs
    if len(dirs) == 1 and (V2_FOLDER.fullmatch(dirs[0].name) or _v2_by_content(dirs[0])):
        return dirs[0]
    return None


def is_imagenetv2(src) -> bool:
    return find_imagenetv2(src) is not None


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


# ---- readers ----------------------------------------------------------------------------------
def read_ilsvrc_archives(src: Path) -> Source:
    devkit = read_devkit(src / DEVKIT)
    classes, task = checked_imagenet_table(devkit.classes, str(src / DEVKIT), "ilsvrc-archives")
    source = Source(task, "ilsvrc-archives", src, classes, {})
    by_wnid = {c.wnid: c.index for c in classes}
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
    classes, task = class_table(src, "imagenet-folders")
    source = Source(task, "imagenet-folders", src, classes, {})
    by_wnid = {c.wnid: c.index for c in classes}
    source.items["train"] = read_class_folders(source, src / "train", by_wnid, "the ILSVRC-2012 classes")
    if (src / "val").is_dir():
        source.items["val"] = read_class_folders(source, src / "val", by_wnid, "the ILSVRC-2012 classes",
                                                 split="val")
    ignore_rest(source, src, {"train", "val", DEVKIT, KAGGLE_MAPPING}, "not part of the train/ and val/ folders")
    return source


def read_huggingface(src: Path) -> Source:
    classes, task = class_table(src, "huggingface")
    source = Source(task, "huggingface", src, classes, {})
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
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            source.ignore(path, f"suffix {path.suffix!r} is not an image type")
        elif path.suffix.lower() not in (".jpeg", ".jpg") or not stem:  # an image all the same: never dropped quietly
            source.skip(path, split, "an image not named <stem>_<wnid>.JPEG as imagenet-1k's are: no label")
        elif wnid not in by_wnid:
            source.skip(path, split, f"its name ends in {wnid!r}, not an ILSVRC-2012 wnid")
        else:
            items.append(Item(sanitize_key(stem), by_wnid[wnid], relative(path, source.root)))
    return items


def read_imagenetv2(src) -> Source:
    """An evaluation-only dataset (a `val` split) over ImageNet's 1,000 classes: folder k is
    class k of the sorted-wnid table (as integers: folder "10" is class 10, not the third)."""
    classes = shipped_classes()
    folder = find_imagenetv2(src)
    if folder is None:
        raise ValueError(f"--src {src}: not ImageNetV2 (1,000 folders named 0..999 of images, in "
                         f"imagenetv2-<variant>-format-val/)")
    name = V2_FOLDER.fullmatch(folder.name)
    source = Source(name.group(1) if name else "imagenetv2", "imagenetv2", src, classes, {})
    if folder != src:
        ignore_rest(source, src, {folder.name}, f"beside the ImageNetV2 folder {folder.name}/")
    items = []
    listing = list_folder(folder, source.root)
    for stray in listing.files:
        source.ignore(stray, "not inside a class folder")
    account_tree(source, Tree(hidden=listing.hidden, problems=listing.problems), "val")
    for class_dir in listing.dirs:
        label = int(class_dir.name) if class_dir.name in V2_CLASS_FOLDERS else None
        tree = walk(class_dir, source.root)
        account_tree(source, tree, "val")
        for path in tree.files:
            if label is None:
                source.skip(path, "val", f"folder {class_dir.name!r} is not a class index 0..{len(classes) - 1}")
            elif path.suffix.lower() not in IMAGE_SUFFIXES:
                source.ignore(path, f"suffix {path.suffix!r} is not an image type")
            else:
                items.append(Item(sanitize_key(f"{label}_{path.stem}"), label, relative(path, source.root)))
    source.items["val"] = items
    return source
