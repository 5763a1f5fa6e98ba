"""Folders named by WordNet ids, and image ids labelled by a file: the pieces ImageNet's forms
and tiny-imagenet share (prep/forms/kaggle.py, tiny_imagenet.py, ilsvrc_archives.py,
imagenet_folders.py)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from shared.shards import sanitize_key

from ..sources import Item, Source, Tree, account_tree, ignore_rest, list_folder, relative, walk

WNID = re.compile(r"n[0-9]{8}")  # use fullmatch


def read_wnid_folders(source: Source, train_dir: Path, by_wnid: dict[str, int], mapping_name: str,
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
