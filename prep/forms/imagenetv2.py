"""ImageNetV2 (Recht et al. 2019): `imagenetv2-<variant>-format-val/<k>/<sha1>.jpeg`, folder k
= class k of ILSVRC-2012's sorted-wnid table; an evaluation-only dataset (a val split).
Recognised by its content (1,000 folders named 0..999), renamed or passed by its parent too."""
from __future__ import annotations

import re

from shared.patch import IMAGE_SUFFIXES
from shared.shards import sanitize_key

from ..sources import Item, Source, Tree, account_tree, ignore_rest, list_folder, relative, walk
from .devkit import shipped_classes

V2_FOLDER = re.compile(r"(imagenetv2-[a-z0-9.-]+)-format-val")


V2_CLASS_FOLDERS = {str(k) for k in range(1000)}  # ImageNetV2's folders: class indices, no leading zeros


SHA1_IMAGE = re.compile(r"[0-9a-f]{40}\.jpe?g", re.IGNORECASE)  # ImageNetV2's file names


def _numeric_folders(folder) -> set[str]:
    """Its class folders when every one is named as a class index 0..999, else none."""
    names = {d.name for d in list_folder(folder, folder).dirs}
    return names if names and names <= V2_CLASS_FOLDERS else set()


def _sha1_named(folder, names: set[str]) -> bool:
    first = folder / min(names, key=int)
    return any(SHA1_IMAGE.fullmatch(p.name) for p in list_folder(first, folder).files)


def _v2_by_content(folder, named: bool = False) -> bool:
    """ImageNetV2 is 1,000 folders named 0..999 (whatever the top folder is called). Some of
    them alone, holding its <sha1>.jpeg files, or most of them with others beside, is a part
    or a damaged copy: refused, never read as class folders (string-sorted "0", "1", "10", ...:
    every label permuted), unless --form imagenetv2 (`named`) says to read what is there."""
    names = {d.name for d in list_folder(folder, folder).dirs}
    if names == V2_CLASS_FOLDERS:
        return True
    numeric = _numeric_folders(folder)
    if numeric and (named or _sha1_named(folder, numeric)):
        if named:
            return True
        missing = sorted(V2_CLASS_FOLDERS - numeric, key=int)
        raise ValueError(f"--src {folder}: {len(numeric)} of ImageNetV2's 1,000 class folders (0..999 holding "
                         f"<sha1>.jpeg; missing e.g. {', '.join(missing[:3])}): pass --form imagenetv2 to read them "
                         f"as ImageNetV2 (folder k = class k), or --form folder to read them as class folders of a "
                         f"dataset of their own (sorted as text, as torchvision's ImageFolder)")
    indices = names & V2_CLASS_FOLDERS
    if len(indices) > len(V2_CLASS_FOLDERS) // 2:
        missing = sorted(V2_CLASS_FOLDERS - names, key=int)
        others = sorted(names - V2_CLASS_FOLDERS)
        raise ValueError(f"--src {folder}: {len(indices)} class folders named 0..999 as ImageNetV2's, but "
                         f"{len(missing)} of them missing (e.g. {', '.join(missing[:3]) or '-'}) and {len(others)} "
                         f"other folders (e.g. {', '.join(others[:3]) or '-'}): not read (as ImageNetV2 its classes "
                         f"would be incomplete; as class folders every label would be permuted)")
    return False


def find_imagenetv2(src, named: bool = False):
    """The ImageNetV2 folder of --src: --src itself (by its name `imagenetv2-*-format-val`
    or by its content), or the one folder inside it (--src given as its parent, or a
    tar.gz holding it); None if neither. `named`: --form imagenetv2 accepts some of its
    class folders."""
    if not src.is_dir():
        return None
    if V2_FOLDER.fullmatch(src.name) or _v2_by_content(src, named):
        return src
    dirs = list_folder(src, src).dirs
    if len(dirs) == 1 and (V2_FOLDER.fullmatch(dirs[0].name) or _v2_by_content(dirs[0], named)):
        return dirs[0]
    return None


def is_imagenetv2(src) -> bool:
    return find_imagenetv2(src) is not None


def read_imagenetv2(src) -> Source:
    """An evaluation-only dataset (a `val` split) over ImageNet's 1,000 classes: folder k is
    class k of the sorted-wnid table (as integers: folder "10" is class 10, not the third)."""
    classes = shipped_classes()
    folder = find_imagenetv2(src, named=True)
    if folder is None:
        raise ValueError(f"--src {src}: not ImageNetV2 (1,000 folders named 0..999 of images, in "
                         f"imagenetv2-<variant>-format-val/)")
    name = V2_FOLDER.fullmatch(folder.name)
    source = Source(name.group(1) if name else "imagenetv2", LAYOUT, src, classes, {})
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
    held = len(_numeric_folders(folder))
    if held < len(V2_CLASS_FOLDERS):
        source.reading = (f"read as ImageNetV2 (--form imagenetv2): {held:,} of its 1,000 class folders, folder k "
                          f"= class k")
    return source


# ---- the form (prep/forms/__init__.py) --------------------------------------------------------
LAYOUT = "imagenetv2"
HOLDS = "ImageNetV2: `imagenetv2-<variant>-format-val/<class index>/<sha1>.jpeg` or its `.tar.gz` (1,000 folders `0`..`999`; a val split only)"
OWN_IDS = True


def detect(src) -> str | None:
    return "imagenetv2" if is_imagenetv2(src) else None


def fits(src) -> bool:
    """--form imagenetv2: its folder, or class folders all named as class indices 0..999."""
    return find_imagenetv2(src, named=True) is not None


def read(src, task: str) -> Source:
    return read_imagenetv2(src)
