"""MNIST, Fashion-MNIST (idx files) and CIFAR-10/100 (python pickles), in torchvision's
on-disk layout. If the files are absent they are downloaded through torchvision.

CIFAR pickles are read with `SafeCifarUnpickler`, which builds only what the real files
hold (dicts, lists, bytes, str, ints, uint8 numpy arrays): plain `pickle.load` on a file
from a stranger runs whatever code the file names."""
from __future__ import annotations

import functools
import gzip
import io
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from shared.manifest import ClassInfo, Skip

from .sources import Item, Source, ignore_all_but, relative

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


def cifar_files(task: str) -> list[str]:
    _, meta, _, train_files, test_files, _ = CIFAR_TASKS[task]
    return [meta] + train_files + test_files


def find_cifar_dir(src: Path, task: str) -> Path | None:
    """The folder holding the task's complete set of files (a stray `meta` is not CIFAR-100)."""
    folder = CIFAR_TASKS[task][0]
    for candidate in (src, src / folder):
        if all((candidate / name).is_file() for name in cifar_files(task)):
            return candidate
    return None


def download_with_torchvision(src: Path, task: str) -> None:
    if not isinstance(src, Path):
        raise ValueError(f"--src {src}: the archive holds no {task} files; expected those torchvision writes")
    import torchvision.datasets as tvd  # imported here: only this path needs torchvision

    cls = getattr(tvd, TORCHVISION_DATASETS[task])
    print(f"{src}: no {task} files found; downloading through torchvision into {src.resolve()}")
    src.mkdir(parents=True, exist_ok=True)
    for train in (True, False):
        cls(root=str(src), train=train, download=True)


@functools.lru_cache(maxsize=8)
def read_idx(path: Path) -> np.ndarray:
    """An idx file (LeCun's MNIST format): big-endian magic, dims, then uint8 data."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{path}: not a gzip file ({exc})") from exc
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte idx file (magic {data[:4].hex()})")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    expected = 4 + 4 * ndim + int(np.prod(dims))
    if len(data) != expected:
        raise ValueError(f"{path}: {len(data)} bytes, expected {expected} for shape {dims}")
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


# The globals a CIFAR pickle needs to rebuild a numpy array (Python 2 cPickle files as
# distributed, and Python 3 re-pickles at protocols 2-5); nothing that can run code.
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class SafeCifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refused global {module}.{name}: a CIFAR pickle holds only dicts, "
                                         f"lists, bytes, str, ints and uint8 arrays")
        return super().find_class(module, name)


def check_cifar_value(value, path: str, where: str = "top level") -> None:
    """Only what the real files hold, down to the leaves."""
    if isinstance(value, dict):
        for k, v in value.items():
            check_cifar_value(k, path, f"key of {where}")
            check_cifar_value(v, path, f"{where}[{k!r}]")
    elif isinstance(value, list):
        for v in value:
            check_cifar_value(v, path, where)
    elif isinstance(value, np.ndarray):
        if value.dtype != np.uint8:
            raise ValueError(f"{path}: {where} is an array of {value.dtype}, expected uint8 pixels")
    elif not isinstance(value, (bytes, str, int)) or isinstance(value, bool):
        raise ValueError(f"{path}: {where} holds a {type(value).__name__}, not what a CIFAR pickle holds")


@functools.lru_cache(maxsize=8)
def read_cifar_pickle(path: Path) -> dict:
    with io.BytesIO(path.read_bytes()) as f:
        try:
            value = SafeCifarUnpickler(f, encoding="bytes").load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
            raise ValueError(f"{path}: not a CIFAR python pickle ({exc})") from exc
    if not isinstance(value, dict):
        raise ValueError(f"{path}: a CIFAR pickle holds a dict, this one a {type(value).__name__}")
    check_cifar_value(value, path)
    return value


def read_cifar_batch(path: Path, label_key: bytes) -> dict:
    batch = read_cifar_pickle(path)
    data, labels = batch.get(b"data"), batch.get(label_key)
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{path}: expected b'data', a uint8 array of N rows of 3072 (32x32 RGB planes)")
    if not isinstance(labels, list) or not all(isinstance(x, int) for x in labels):
        raise ValueError(f"{path}: expected {label_key!r}, a list of class indices")
    if len(labels) != len(data):
        raise ValueError(f"{path}: {len(data)} images but {len(labels)} labels")
    return batch


def read_cifar_names(path: Path, names_key: bytes) -> list[str]:
    names = read_cifar_pickle(path).get(names_key)
    if not isinstance(names, list) or not names or not all(isinstance(n, (bytes, str)) for n in names):
        raise ValueError(f"{path}: expected {names_key!r}, a list of class names")
    return [n.decode() if isinstance(n, bytes) else n for n in names]


def read_array_image(src: Path, item: Item, layout: str) -> Image.Image:
    """The `member`-th image of the array file named in `item.source`."""
    path = src / item.source.rsplit("#", 1)[0]
    if layout == "cifar-pickle":
        data = read_cifar_pickle(path)[b"data"]  # rows of 3072 = R, G, B planes of 32x32 (checked when listed)
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


def find_or_download(src: Path, task: str, find) -> Path:
    folder = find(src, task)
    if folder is None:
        download_with_torchvision(src, task)
        folder = find(src, task)
    return folder


def read_idx_dataset(src: Path, task: str) -> Source:
    folder = find_or_download(src, task, find_idx_dir)
    classes = [ClassInfo(i, None, n) for i, n in enumerate(IDX_TASKS[task][1])]
    items, skipped, used = {}, [], set()
    for split, (images_stem, labels_stem) in IDX_FILES.items():
        images, labels = _find_idx(folder, images_stem), _find_idx(folder, labels_stem)
        if images is None or labels is None:
            if split == "train":
                raise FileNotFoundError(f"{folder}: {images_stem}[.gz] and {labels_stem}[.gz] expected")
            continue
        n_images, n_labels = len(read_idx(images)), len(read_idx(labels))
        if n_images != n_labels:
            raise ValueError(f"{images} holds {n_images} images but {labels} {n_labels} labels")
        prefix = "train" if split == "train" else "test"
        items[split] = _labelled_items(read_idx(labels), len(classes), split,
                                       relative(images, src), prefix, skipped)
        used |= {images, labels}
    source = Source(task, "idx", src, classes, items, skipped)
    ignore_all_but(source, used, f"not one of {task}'s idx files")
    return source


def read_cifar_dataset(src: Path, task: str) -> Source:
    folder = find_or_download(src, task, find_cifar_dir)
    _, meta_name, names_key, train_files, test_files, label_key = CIFAR_TASKS[task]
    names = read_cifar_names(folder / meta_name, names_key)
    classes = [ClassInfo(i, None, n) for i, n in enumerate(names)]
    items: dict[str, list[Item]] = {}
    skipped: list[Skip] = []
    for split, files in (("train", train_files), ("val", test_files)):
        split_items = []
        for name in files:
            path = folder / name
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing; {task} needs {train_files + test_files}")
            batch = read_cifar_batch(path, label_key)
            split_items += _labelled_items(batch[label_key], len(classes), split,
                                           relative(path, src), name, skipped)
        items[split] = split_items
    source = Source(task, "cifar-pickle", src, classes, items, skipped)
    ignore_all_but(source, {folder / name for name in cifar_files(task)}, f"not one of {task}'s files")
    return source
