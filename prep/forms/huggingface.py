"""Hugging Face's imagenet-1k: train_images_{0..4}.tar.gz and val_images.tar.gz of
`<stem>_<wnid>.JPEG` members, streamed (prep/streamed_patches.py); test_images.tar.gz has no labels."""
from __future__ import annotations

import re
from pathlib import Path

from shared.patch import IMAGE_SUFFIXES
from shared.shards import sanitize_key

from ..archives import ArchivePath, archive_root
from ..sources import Item, Source, account_tree, ignore_rest, relative, walk
from .devkit import DEVKIT, class_table
from .kaggle import KAGGLE_MAPPING

HF_TRAIN = re.compile(r"train_images_[0-9]+\.tar\.gz")


HF_VAL, HF_TEST = "val_images.tar.gz", "test_images.tar.gz"


def is_huggingface(src) -> bool:
    return isinstance(src, Path) and src.is_dir() and any(
        HF_TRAIN.fullmatch(p.name) or p.name == HF_VAL for p in src.iterdir() if p.is_file())


def read_huggingface(src: Path) -> Source:
    classes, task = class_table(src, LAYOUT)
    source = Source(task, LAYOUT, src, classes, {})
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


# ---- the form (prep/forms/__init__.py) --------------------------------------------------------
LAYOUT = "huggingface"
HOLDS = "Hugging Face `imagenet-1k`: `train_images_{0..4}.tar.gz`, `val_images.tar.gz` in one folder (streamed)"
OWN_IDS = True


def detect(src) -> str | None:
    return "imagenet" if is_huggingface(src) else None


def read(src, task: str) -> Source:
    return read_huggingface(src)
