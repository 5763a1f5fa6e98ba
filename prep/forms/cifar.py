"""CIFAR-10 and CIFAR-100: torchvision's `cifar-10-batches-py/` and `cifar-100-python/`.

The pickles are untrusted input. `SafeCifarUnpickler` builds only what the real files hold
(dicts, lists, bytes, str, ints, uint8 numpy arrays): plain `pickle.load` runs whatever code
a file names. What it builds is then walked once per object (never once per path: a 759-byte
pickle whose lists each appear twice in the next has 2^60 paths), iteratively, within a
depth and a node budget far above the real files'."""
from __future__ import annotations

import functools
import io
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from shared.manifest import ClassInfo, Skip

from ..download import download_if_missing
from ..sources import Item, Source, array_items, ignore_all_but, relative

# task -> (folder, meta file, names key, train files, test files, label key)
CIFAR_TASKS = {
    "cifar10": ("cifar-10-batches-py", "batches.meta", b"label_names",
                [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels"),
    "cifar100": ("cifar-100-python", "meta", b"fine_label_names", ["train"], ["test"], b"fine_labels"),
}
# The globals a CIFAR pickle needs to rebuild a numpy array (Python 2 cPickle files as
# distributed, and Python 3 re-pickles at protocols 2-5); nothing that can run code.
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}
# The real files: CIFAR-100's train pickle holds 4 lists of 50,000 and depth 2 (dict -> list -> int).
MAX_DEPTH = 8
MAX_NODES = 2_000_000


def cifar_files(task: str) -> list[str]:
    _, meta, _, train_files, test_files, _ = CIFAR_TASKS[task]
    return [meta] + train_files + test_files


def find_cifar_dir(src, task: str):
    """The folder holding the task's complete set of files (a stray `meta` is not CIFAR-100)."""
    folder = CIFAR_TASKS[task][0]
    for candidate in (src, src / folder):
        if all((candidate / name).is_file() for name in cifar_files(task)):
            return candidate
    return None


def looked_for(task: str) -> str:
    return f"{CIFAR_TASKS[task][0]}/ holding {', '.join(cifar_files(task))}"


class SafeCifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refused global {module}.{name}: a CIFAR pickle holds only dicts, "
                                         f"lists, bytes, str, ints and uint8 arrays")
        return super().find_class(module, name)


def check_cifar_value(value, path) -> None:
    """Only what the real files hold, down to the leaves: each object visited once, depth
    and node count bounded (no recursion: a 5,000-deep list is one more refusal)."""
    seen: set[int] = set()
    stack = [(value, "top level", 0)]
    nodes = 0
    while stack:
        item, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"{path}: nested deeper than {MAX_DEPTH} levels at {where}; a CIFAR pickle is a "
                             f"dict of lists")
        nodes += 1
        if nodes > MAX_NODES:
            raise ValueError(f"{path}: more than {MAX_NODES:,} objects; not a CIFAR pickle")
        if isinstance(item, (dict, list)):
            if id(item) in seen:
                continue
            seen.add(id(item))
            if isinstance(item, dict):
                for k, v in item.items():
                    stack.append((k, f"key of {where}", depth + 1))
                    stack.append((v, f"{where}[{k!r}]"[:200], depth + 1))
            else:
                stack.extend((v, where, depth + 1) for v in item)
        elif isinstance(item, np.ndarray):
            if item.dtype != np.uint8:
                raise ValueError(f"{path}: {where} is an array of {item.dtype}, expected uint8 pixels")
        elif not isinstance(item, (bytes, str, int)) or isinstance(item, bool):
            raise ValueError(f"{path}: {where} holds a {type(item).__name__}, not what a CIFAR pickle holds")


@functools.lru_cache(maxsize=8)
def read_cifar_pickle(path) -> dict:
    with io.BytesIO(path.read_bytes()) as f:
        try:
            value = SafeCifarUnpickler(f, encoding="bytes").load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
                MemoryError, RecursionError, OverflowError, UnicodeDecodeError, struct.error) as exc:
            raise ValueError(f"{path}: not a CIFAR python pickle ({type(exc).__name__}: {exc})"[:400]) from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: a CIFAR pickle holds a dict, this one a {type(value).__name__}")
    check_cifar_value(value, path)
    return value


def read_cifar_batch(path, label_key: bytes) -> dict:
    batch = read_cifar_pickle(path)
    data, labels = batch.get(b"data"), batch.get(label_key)
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{path}: expected b'data', a uint8 array of N rows of 3072 (32x32 RGB planes)")
    if not isinstance(labels, list) or not all(isinstance(x, int) for x in labels):
        raise ValueError(f"{path}: expected {label_key!r}, a list of class indices")
    if len(labels) != len(data):
        raise ValueError(f"{path}: {len(data)} images but {len(labels)} labels")
    return batch


def read_cifar_names(path, names_key: bytes) -> list[str]:
    names = read_cifar_pickle(path).get(names_key)
    if not isinstance(names, list) or not names or not all(isinstance(n, (bytes, str)) for n in names):
        raise ValueError(f"{path}: expected {names_key!r}, a list of class names")
    try:
        return [n.decode() if isinstance(n, bytes) else n for n in names]
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: a class name is not UTF-8 text ({exc})") from None


def read_cifar_image(src, item: Item) -> Image.Image:
    data = read_cifar_pickle(src / item.source.rsplit("#", 1)[0])[b"data"]  # checked when listed
    return Image.fromarray(data[item.member].reshape(3, 32, 32).transpose(1, 2, 0), "RGB")  # R, G, B planes


def read_cifar_dataset(src: Path, task: str) -> Source:
    folder = download_if_missing(src, task, lambda: find_cifar_dir(src, task), looked_for(task))
    _, meta_name, names_key, train_files, test_files, label_key = CIFAR_TASKS[task]
    names = read_cifar_names(folder / meta_name, names_key)
    classes = [ClassInfo(i, None, n) for i, n in enumerate(names)]
    items: dict[str, list[Item]] = {}
    skipped: list[Skip] = []
    for split, files in (("train", train_files), ("val", test_files)):
        split_items = []
        for name in files:
            batch = read_cifar_batch(folder / name, label_key)
            split_items += array_items(batch[label_key], len(classes), split,
                                          relative(folder / name, src), name, skipped)
        items[split] = split_items
    source = Source(task, LAYOUT, src, classes, items, skipped)
    ignore_all_but(source, {folder / name for name in cifar_files(task)}, f"not one of {task}'s files")
    return source


# ---- the form (prep/forms/__init__.py) --------------------------------------------------------
LAYOUT = "cifar-pickle"
HOLDS = "CIFAR-10 / CIFAR-100 as torchvision keeps them: `cifar-10-batches-py/`, `cifar-100-python/` (or the tar.gz); downloaded when missing"
OWN_IDS = False
DOWNLOADS = True  # --form cifar10 on a folder without it fetches it (prep/download.py)
read_record = read_cifar_image


def detect(src) -> str | None:
    return next((task for task in CIFAR_TASKS if find_cifar_dir(src, task)), None)


def read(src, task: str) -> Source:
    return read_cifar_dataset(src, task)
