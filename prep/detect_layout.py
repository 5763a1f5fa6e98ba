"""Recognise what `--src` holds and read it into a `Source`; class-per-folder data too."""
from __future__ import annotations

from pathlib import Path

from shared.manifest import ClassInfo, Skip
from shared.shards import sanitize_key

from .array_layouts import (CIFAR_TASKS, IDX_TASKS, find_cifar_dir, find_idx_dir,
                            read_cifar_dataset, read_idx_dataset)
from .config import TASKS
from .imagenet_layouts import (is_kaggle_imagenet, is_tiny_imagenet, read_kaggle_imagenet,
                               read_tiny_imagenet)
from .sources import IMAGE_SUFFIXES, Item, Source, ensure_unique_keys, list_files, relative

LOOKED_FOR = (
    "  imagenet       Kaggle ILSVRC archive: LOC_synset_mapping.txt + ILSVRC/Data/CLS-LOC/train/<wnid>/\n"
    "  tiny-imagenet  wnids.txt + train/<wnid>/images/\n"
    "  mnist          MNIST/raw/ (or raw/ or the folder itself) with train-images-idx3-ubyte[.gz]\n"
    "  fashion-mnist  FashionMNIST/raw/ likewise\n"
    "  cifar10        cifar-10-batches-py/ (batches.meta, data_batch_1..5, test_batch)\n"
    "  cifar100       cifar-100-python/ (meta, train, test)\n"
    "  folder         <class>/<image>, or train/<class>/<image> with optional val/<class>/<image>")


def detect_task(src: Path) -> str:
    if not src.is_dir():
        raise FileNotFoundError(f"--src {src}: no such folder. Give --task to download "
                                f"mnist, fashion-mnist, cifar10 or cifar100 there.")
    if is_kaggle_imagenet(src):
        return "imagenet"
    if is_tiny_imagenet(src):
        return "tiny-imagenet"
    for task in CIFAR_TASKS:
        if find_cifar_dir(src, task):
            return task
    found = [t for t in IDX_TASKS if find_idx_dir(src, t)]
    named = [t for t in IDX_TASKS if (src / IDX_TASKS[t][0]).is_dir()]
    if found and len(named) == 1:
        return named[0]
    if found:
        raise ValueError(f"--src {src}: idx files found, but MNIST and Fashion-MNIST share file names; "
                         f"pass --task mnist or --task fashion-mnist")
    if _class_root(src) is not None:
        return "folder"
    raise ValueError(f"--src {src}: no known layout found. Looked for:\n{LOOKED_FOR}\n"
                     f"Pass --task ({'|'.join(TASKS)}) to force one.")


def read_source(src: Path, task: str | None) -> Source:
    if task is not None and task not in TASKS:
        raise ValueError(f"--task {task!r}: expected one of {', '.join(TASKS)}")
    task = task or detect_task(src)
    if task in ("mnist", "fashion-mnist"):
        source = read_idx_dataset(src, task)
    elif task in CIFAR_TASKS:
        source = read_cifar_dataset(src, task)
    elif not src.is_dir():
        raise FileNotFoundError(f"--src {src}: no such folder")
    elif task == "imagenet":
        if not is_kaggle_imagenet(src):
            raise ValueError(f"--src {src}: not the Kaggle ImageNet layout. Expected:\n{LOOKED_FOR}")
        source = read_kaggle_imagenet(src)
    elif task == "tiny-imagenet":
        if not is_tiny_imagenet(src):
            raise ValueError(f"--src {src}: not the tiny-imagenet-200 layout. Expected:\n{LOOKED_FOR}")
        source = read_tiny_imagenet(src)
    else:
        source = read_class_folders(src)
    if not source.items.get("train"):
        raise ValueError(f"--src {src}: no labelled training images found for layout {source.layout} "
                         f"({len(source.skipped)} inputs skipped)")
    for split in source.items:
        source.items[split] = ensure_unique_keys(source.items[split])
    return source


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _class_root(src: Path) -> Path | None:
    """`src/train` if it holds class folders, else `src` if it does, else None."""
    for root in (src / "train", src):
        if root.is_dir() and _class_dirs(root):
            return root
    return None


def read_class_folders(src: Path) -> Source:
    train_root = _class_root(src)
    if train_root is None:
        raise ValueError(f"--src {src}: expected class folders <class>/<image> or train/<class>/<image>")
    names = [d.name for d in _class_dirs(train_root)]  # sorted, as torchvision's ImageFolder
    classes = [ClassInfo(i, None, n) for i, n in enumerate(names)]
    by_name = {n: i for i, n in enumerate(names)}
    items: dict[str, list[Item]] = {}
    skipped: list[Skip] = []
    ignored: list[dict] = []
    splits = [("train", train_root)]
    if train_root != src and (src / "val").is_dir():
        splits.append(("val", src / "val"))
    for split, root in splits:
        split_items = []
        for stray in sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")):
            ignored.append({"path": relative(stray, src), "reason": "not inside a class folder"})
        for class_dir in _class_dirs(root):
            label = by_name.get(class_dir.name)
            for path in list_files(class_dir):
                rel = relative(path, src)
                if path.suffix.lower() not in IMAGE_SUFFIXES:
                    ignored.append({"path": rel, "reason": f"suffix {path.suffix!r} is not an image type"})
                elif label is None:
                    skipped.append(Skip(rel, split, f"class {class_dir.name!r} has no folder in {train_root}"))
                else:
                    key = sanitize_key(path.relative_to(root).with_suffix("").as_posix())
                    split_items.append(Item(key, label, rel))
        items[split] = split_items
    name = sanitize_key(src.resolve().name) or "folder"
    return Source(name, "class-folders", src, classes, items, skipped, ignored)
