"""Recognise what `--src` holds and read it into a `Source`; class-per-folder data too."""
from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

from shared.manifest import ClassInfo, Skip
from shared.patch import IMAGE_SUFFIXES
from shared.shards import sanitize_key

from .archives import ARCHIVE_SUFFIXES, archive_root, archives_under, is_archive
from .cifar_layout import CIFAR_TASKS, find_cifar_dir, read_cifar_dataset
from .config import TASKS
from .idx_layout import IDX_TASKS, find_idx_dir, read_idx_dataset
from .ilsvrc import (is_huggingface, is_ilsvrc_archives, is_imagenet_folders, is_imagenetv2, keep_split_keys,
                     read_huggingface, read_ilsvrc_archives, read_imagenet_folders, read_imagenetv2)
from .imagenet_layouts import (is_kaggle_imagenet, is_tiny_imagenet, read_kaggle_imagenet,
                               read_tiny_imagenet)
from .sources import (Item, Source, Tree, account_tree, drop_ambiguous_keys, ensure_unique_keys, ignore_rest,
                      is_hidden, list_folder, relative, walk)

LOOKED_FOR = (
    "  imagenet       Kaggle ILSVRC archive: LOC_synset_mapping.txt + ILSVRC/Data/CLS-LOC/train/<wnid>/\n"
    "                 image-net.org's ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar + ILSVRC2012_devkit_t12.tar.gz\n"
    "                 train/<wnid>/*.JPEG (+ val/<wnid>/) as the torchvision references use\n"
    "                 Hugging Face imagenet-1k: train_images_N.tar.gz, val_images.tar.gz\n"
    "  imagenetv2     imagenetv2-<variant>-format-val/<class index>/<sha1>.jpeg (or its .tar.gz)\n"
    "  tiny-imagenet  wnids.txt + train/<wnid>/images/\n"
    "  mnist          MNIST/raw/ (or raw/ or the folder itself) with train-images-idx3-ubyte[.gz]\n"
    "                 (or train-images.idx3-ubyte[.gz]; any case)\n"
    "  fashion-mnist  FashionMNIST/raw/ likewise\n"
    "  cifar10        cifar-10-batches-py/ (batches.meta, data_batch_1..5, test_batch)\n"
    "  cifar100       cifar-100-python/ (meta, train, test)\n"
    "  folder         <class>/<image>, or train/<class>/<image> with optional val/<class>/<image>")


# Forms whose file stems are the dataset's own image ids: a repeated id is ambiguous
OWN_IDS = {"kaggle-imagenet", "ilsvrc-archives", "huggingface", "imagenet-folders", "imagenetv2", "tiny-imagenet"}

# ILSVRC-2012's forms, in the order they are recognised: (layout, test, reader)
IMAGENET_FORMS = [("kaggle-imagenet", is_kaggle_imagenet, read_kaggle_imagenet),
                  ("ilsvrc-archives", is_ilsvrc_archives, read_ilsvrc_archives),
                  ("huggingface", is_huggingface, read_huggingface),
                  ("imagenet-folders", is_imagenet_folders, read_imagenet_folders)]


def detect_task(src: Path) -> str:
    if not src.is_dir():
        raise FileNotFoundError(f"--src {src}: no such folder. Give --form to download "
                                f"mnist, fashion-mnist, cifar10 or cifar100 there.")
    if is_tiny_imagenet(src):  # before the folder form: its train/ holds wnid folders too
        return "tiny-imagenet"
    if any(test(src) for _, test, _ in IMAGENET_FORMS):
        return "imagenet"
    if is_imagenetv2(src):
        return "imagenetv2"
    for task in CIFAR_TASKS:
        if find_cifar_dir(src, task):
            return task
    found = [t for t in IDX_TASKS if find_idx_dir(src, t)]
    named = [t for t in IDX_TASKS if (src / IDX_TASKS[t][0]).is_dir()] or idx_task_from_name(src.name)
    if found and len(named) == 1:
        return named[0]
    if found:
        raise ValueError(f"--src {src}: idx files found, but MNIST and Fashion-MNIST share file names; "
                         f"pass --form mnist or --form fashion-mnist")
    if _class_root(src) is not None:
        return "folder"
    raise ValueError(f"--src {src}: no known layout found. Looked for:\n{LOOKED_FOR}\n"
                     f"Pass --form ({'|'.join(TASKS)}) to force one.")


def read_imagenet(src) -> Source:
    for _, test, reader in IMAGENET_FORMS:
        if test(src):
            return reader(src)
    raise ValueError(f"--src {src}: none of ILSVRC-2012's forms. Expected:\n{LOOKED_FOR}")


def idx_task_from_name(name: str) -> list[str]:
    """The two share file names: a flat folder says which it is by its own name, if at all."""
    name = name.lower().replace("_", "-")
    return ["fashion-mnist"] if "fashion" in name else ["mnist"] if "mnist" in name else []


def open_src(src: Path):
    """--src as the layouts read it: the folder (resolved: listing never leaves it), or the
    archive's top -- its single top folder if it has one (prep/archives.py)."""
    if src.is_file() and is_archive(src):
        try:
            return archive_root(src)
        except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
            raise ValueError(f"--src {src}: not a readable archive ({exc})") from None
    if src.is_file():
        raise ValueError(f"--src {src}: a file, but not an archive this tool reads ({', '.join(ARCHIVE_SUFFIXES)})")
    return src.resolve()


def read_source(src: Path, task: str | None) -> Source:
    if task is not None and task not in TASKS:
        raise ValueError(f"--form {task!r}: expected one of {', '.join(TASKS)}")
    src = open_src(Path(src))
    task = task or detect_task(src)
    if task in ("mnist", "fashion-mnist"):
        source = read_idx_dataset(src, task)
    elif task in CIFAR_TASKS:
        source = read_cifar_dataset(src, task)
    elif not src.is_dir():
        raise FileNotFoundError(f"--src {src}: no such folder")
    elif task == "imagenet":
        source = read_imagenet(src)
    elif task == "imagenetv2":
        source = read_imagenetv2(src)
    elif task == "tiny-imagenet":
        if not is_tiny_imagenet(src):
            raise ValueError(f"--src {src}: not the tiny-imagenet-200 layout. Expected:\n{LOOKED_FOR}")
        source = read_tiny_imagenet(src)
    else:
        source = read_class_folders(src)
    needed = "val" if source.layout == "imagenetv2" else "train"  # ImageNetV2 is a test set only
    if not source.items.get(needed):
        raise ValueError(f"--src {src}: no labelled {'training' if needed == 'train' else 'test'} images found for "
                         f"layout {source.layout} ({len(source.skipped)} inputs skipped)")
    if source.task == "imagenet":
        keep_split_keys(source)
    if source.layout in OWN_IDS:
        drop_ambiguous_keys(source)
    source.items = ensure_unique_keys(source.items)  # unique across the whole dataset
    for prefix, archive in archives_under(src):  # members never read: unsafe names, duplicates, links, bombs
        source.skipped += [Skip(prefix + name, "archive", why) for name, why in archive.problems]
    return source


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
    name = sanitize_key(src.name) or "folder"
    source = Source(name, "class-folders", src, [ClassInfo(i, None, n) for i, n in enumerate(names)], {})
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
