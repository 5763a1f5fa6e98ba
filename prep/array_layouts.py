"""MNIST, Fashion-MNIST (idx files) and CIFAR-10/100 (python pickles), in torchvision's
on-disk layout. If the files are absent they are downloaded through torchvision."""
from __future__ import annotations

import functools
import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from shared.manifest import ClassInfo, Skip

from .sources import Item, Source, relative

MNIST_CLASSES = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four",
                 "5 - five", "6 - six", "7 - seven", "8 - eight", "9 - nine"]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
# task -> (torchvision folder, class names or meta file, train files, test files, label key)
IDX_TASKS = {"mnist": ("MNIST", MNIST_CLASSES), "fashion-mnist": ("FashionMNIST", FASHION_CLASSES)}
CIFAR_TASKS = {
    "cifar10": ("cifar-10-batches-py", "batches.meta", b"label_names",
                [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels"),
    "cifar100": ("cifar-100-python", "meta", b"fine_label_names", ["train"], ["test"], b"fine_labels"),
}
TORCHVISION_DATASETS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST",
                        "cifar10": "CIFAR10", "cifar100": "CIFAR100"}


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def find_idx_dir(src: Path, task: str) -> Path | None:
    tv_folder = IDX_TASKS[task][0]
    for folder in (src, src / "raw", src / tv_folder / "raw"):
        if _find_idx(folder, IDX_FILES["train"][0]):
            return folder
    return None


def find_cifar_dir(src: Path, task: str) -> Path | None:
    folder, meta = CIFAR_TASKS[task][:2]
    for candidate in (src, src / folder):
        if (candidate / meta).is_file():
            return candidate
    return None


def download_with_torchvision(src: Path, task: str) -> None:
    import torchvision.datasets as tvd  # imported here: only this path needs torchvision

    cls = getattr(tvd, TORCHVISION_DATASETS[task])
    print(f"{src}: no {task} files found; downloading through torchvision into {src.resolve()}")
    src.mkdir(parents=True, exist_ok=True)
    for train in (True, False):
        cls(root=str(src), train=train, download=True)


def _open_maybe_gz(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


@functools.lru_cache(maxsize=8)
def read_idx(path: str) -> np.ndarray:
    """An idx file (LeCun's MNIST format): big-endian magic, dims, then uint8 data."""
    with _open_maybe_gz(Path(path)) as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte idx file (magic {data[:4].hex()})")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    expected = 4 + 4 * ndim + int(np.prod(dims))
    if len(data) != expected:
        raise ValueError(f"{path}: {len(data)} bytes, expected {expected} for shape {dims}")
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


@functools.lru_cache(maxsize=8)
def read_cifar_pickle(path: str) -> dict:
    with open(path, "rb") as f:
        try:
            return pickle.load(f, encoding="bytes")
        except (pickle.UnpicklingError, EOFError) as exc:
            raise ValueError(f"{path}: not a CIFAR python pickle ({exc})") from exc


def read_cifar_batch(path: str) -> dict:
    batch = read_cifar_pickle(path)
    if b"data" not in batch:
        raise ValueError(f"{path}: CIFAR batch without b'data'; keys {list(batch)[:5]}")
    return batch


def read_array_image(src: Path, item: Item, layout: str) -> Image.Image:
    """The `member`-th image of the array file named in `item.source`."""
    path = str(src / item.source.rsplit("#", 1)[0])
    if layout == "cifar-pickle":
        data = read_cifar_batch(path)[b"data"]  # rows of 3072 = R, G, B planes of 32x32
        return Image.fromarray(data[item.member].reshape(3, 32, 32).transpose(1, 2, 0), "RGB")
    return Image.fromarray(read_idx(path)[item.member], "L")


def _labelled_items(labels, num_classes: int, split: str, file_rel: str, key_prefix: str,
                    skipped: list[Skip]) -> list[Item]:
    items = []
    for i, label in enumerate(int(x) for x in labels):
        source = f"{file_rel}#{i}"
        if 0 <= label < num_classes:
            items.append(Item(f"{key_prefix}_{i:05d}", label, source, i))
        else:
            skipped.append(Skip(source, split, f"label {label} outside 0..{num_classes - 1}"))
    return items


def read_idx_dataset(src: Path, task: str) -> Source:
    folder = find_idx_dir(src, task)
    if folder is None:
        download_with_torchvision(src, task)
        folder = find_idx_dir(src, task)
    names = IDX_TASKS[task][1]
    classes = [ClassInfo(i, None, n) for i, n in enumerate(names)]
    items, skipped = {}, []
    for split, (images_stem, labels_stem) in IDX_FILES.items():
        images, labels = _find_idx(folder, images_stem), _find_idx(folder, labels_stem)
        if images is None or labels is None:
            if split == "train":
                raise FileNotFoundError(f"{folder}: {images_stem}[.gz] and {labels_stem}[.gz] expected")
            continue
        n_images, n_labels = len(read_idx(str(images))), len(read_idx(str(labels)))
        if n_images != n_labels:
            raise ValueError(f"{images} holds {n_images} images but {labels} {n_labels} labels")
        prefix = "train" if split == "train" else "test"
        items[split] = _labelled_items(read_idx(str(labels)), len(classes), split,
                                       relative(images, src), prefix, skipped)
    return Source(task, "idx", src, classes, items, skipped)


def read_cifar_dataset(src: Path, task: str) -> Source:
    folder = find_cifar_dir(src, task)
    if folder is None:
        download_with_torchvision(src, task)
        folder = find_cifar_dir(src, task)
    _, meta_name, names_key, train_files, test_files, label_key = CIFAR_TASKS[task]
    names = [n.decode() for n in read_cifar_pickle(str(folder / meta_name))[names_key]]
    classes = [ClassInfo(i, None, n) for i, n in enumerate(names)]
    items: dict[str, list[Item]] = {}
    skipped: list[Skip] = []
    for split, files in (("train", train_files), ("val", test_files)):
        split_items = []
        for name in files:
            path = folder / name
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing; {task} needs {train_files + test_files}")
            batch = read_cifar_batch(str(path))
            if len(batch[label_key]) != len(batch[b"data"]):
                raise ValueError(f"{path}: {len(batch[b'data'])} images but {len(batch[label_key])} labels")
            split_items += _labelled_items(batch[label_key], len(classes), split,
                                           relative(path, src), name, skipped)
        items[split] = split_items
    return Source(task, "cifar-pickle", src, classes, items, skipped)
