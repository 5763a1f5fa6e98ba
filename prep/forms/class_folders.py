"""Your own data: `<class>/<image>` (recursively, as torchvision's ImageFolder), or train/ + val/
of those; classes sorted by name."""
from __future__ import annotations

from pathlib import Path

from shared.manifest import ClassInfo
from shared.patch import IMAGE_SUFFIXES
from shared.shards import sanitize_key

from ..sources import Item, Source, Tree, account_tree, ignore_rest, is_hidden, list_folder, relative, walk

def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not is_hidden(p.name))


def dataset_top(src: Path) -> Path:
    """`src`, or the one folder in it when that folder holds folders and everything else at
    the top is a file (a zip of `data/<class>/...` beside a README): stray files at the top
    are ignored entries, not a reason to read `data/` as one class holding everything."""
    dirs = _class_dirs(src)
    if len(dirs) == 1 and dirs[0].name not in ("train", "val") and _class_dirs(dirs[0]):
        return dirs[0]
    return src


def _class_root(src: Path) -> Path | None:
    """`top/train` if it holds class folders, else `top` if it does, else None."""
    top = dataset_top(src)
    for root in (top / "train", top):
        if root.is_dir() and _class_dirs(root):
            return root
    return None


def read_class_folders(src: Path) -> Source:
    """<class>/<image> (recursively, as torchvision's ImageFolder), or train/ + val/ of those."""
    train_root = _class_root(src)
    if train_root is None:
        raise ValueError(f"--src {src}: expected class folders <class>/<image> or train/<class>/<image>")
    names = [d.name for d in list_folder(train_root, src).dirs]  # sorted, as torchvision's ImageFolder
    if len(names) < 2:
        raise ValueError(f"--src {src}: {len(names)} class folder{'s' if len(names) != 1 else ''} in "
                         f"{relative(train_root, src) or '.'}/ ({', '.join(names) or 'none'}): a classifier needs two "
                         f"or more, one per class")
    name = sanitize_key(src.name) or "folder"
    source = Source(name, LAYOUT, src, [ClassInfo(i, None, n) for i, n in enumerate(names)], {})
    by_name = {n: i for i, n in enumerate(names)}
    top = dataset_top(src)
    if top != src:
        ignore_rest(source, src, {top.name}, f"beside the dataset's folder {top.name}/")
    splits = [("train", train_root)]
    if train_root != top:
        splits += [("val", top / "val")] if (top / "val").is_dir() else []
        ignore_rest(source, top, {"train", "val"}, "not a split folder (train/, val/)")
    for split, root in splits:
        listing = list_folder(root, src)
        account_tree(source, Tree(hidden=listing.hidden, problems=listing.problems), split)
        for stray in listing.files:
            source.ignore(stray, "not inside a class folder")
        source.items[split] = [item for class_dir in listing.dirs
                               for item in _class_items(source, class_dir, root, by_name.get(class_dir.name), split)]
    return source


def _class_items(source: Source, class_dir: Path, root: Path, label: int | None, split: str) -> list[Item]:
    tree = walk(class_dir, source.root)
    account_tree(source, tree, split)
    items = []
    for path in tree.files:
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            source.ignore(path, f"suffix {path.suffix!r} is not an image type")
        elif label is None:
            source.skip(path, split, f"class {class_dir.name!r} has no folder in train/")
        else:
            key = sanitize_key(Path(relative(path, root)).with_suffix("").as_posix())
            items.append(Item(key, label, relative(path, source.root)))
    return items


# ---- the form (prep/forms/__init__.py) --------------------------------------------------------
LAYOUT = "class-folders"
HOLDS = "your own data, two classes or more: `<class>/<image>`, or `train/<class>/<image>` with optional `val/<class>/<image>` (classes sorted by name, as torchvision's ImageFolder)"
OWN_IDS = False


def detect(src) -> str | None:
    """Class folders; those named by numbers that text order would shuffle ("10" before "2":
    folder 10 would be label 2) only when --form folder says so."""
    root = _class_root(src)
    if root is None:
        return None
    names = sorted(d.name for d in _class_dirs(root))
    shuffled = [(a, b) for a, b in zip(names, names[1:]) if a.isdigit() and b.isdigit() and int(a) > int(b)]
    if shuffled and all(n.isdigit() for n in names):
        a, b = shuffled[0]
        raise ValueError(f"--src {src}: class folders named by numbers sort as text, as torchvision's ImageFolder "
                         f"sorts them ('{a}' before '{b}'): pass --form folder to read them so, --form imagenetv2 if "
                         f"they are ImageNet class indices, or name them with leading zeros")
    return "folder"


def fits(src) -> bool:
    """--form folder: class folders, at least two of them -- one class is no classification
    task, and what another layout looks like when read as class folders (Kaggle's top folder
    `ILSVRC/` holding `Data/`)."""
    root = _class_root(src)
    return root is not None and len(_class_dirs(root)) >= 2


def read(src, task: str) -> Source:
    return read_class_folders(src)
