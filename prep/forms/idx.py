"""MNIST and Fashion-MNIST: LeCun's idx files, under the names the copies people hold use.

torchvision writes `MNIST/raw/train-images-idx3-ubyte[.gz]`; PyPI's MNIST packages and many
zips ship `train-images.idx3-ubyte`; some copies are upper-case. All of them are accepted
(names compared case-insensitively); when several copies of one file sit side by side
(torchvision keeps the .gz beside the extracted file) the uncompressed one is read and the
others are ignored entries naming it.

An idx file is untrusted input: its header is checked against what the layout needs (images
3-D, labels 1-D, unsigned bytes, equal counts, a plausible size) before any record is read,
and a gzip member may not inflate past MAX_IDX_BYTES (a bomb)."""
from __future__ import annotations

import functools
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from shared.manifest import ClassInfo

from ..download import download_if_missing
from ..sources import Item, Source, array_items, ignore_all_but, relative

MNIST_CLASSES = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four",
                 "5 - five", "6 - six", "7 - seven", "8 - eight", "9 - nine"]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
# task -> (torchvision's folder, class names)
IDX_TASKS = {"mnist": ("MNIST", MNIST_CLASSES), "fashion-mnist": ("FashionMNIST", FASHION_CLASSES)}
# split -> (images, labels), torchvision's names; `idx_names` adds the other spellings
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
MAX_IDX_BYTES = 1 << 30  # MNIST's largest file is 47 MB; refuse to inflate more than 1 GiB
MAX_SIDE = 4096  # rows and columns of one idx image (MNIST: 28)
UBYTE = 0x08


def idx_names(stem: str) -> list[str]:
    """Accepted names for one file, in order of preference (lower case): torchvision's
    `train-images-idx3-ubyte`, the dotted `train-images.idx3-ubyte`, then their .gz."""
    dotted = stem.replace("-idx", ".idx")
    return [stem, dotted, stem + ".gz", dotted + ".gz"]


def looked_for(task: str) -> str:
    stems = [s for pair in IDX_FILES.values() for s in pair]
    return (f"{IDX_TASKS[task][0]}/raw/, raw/ or the folder itself holding "
            + ", ".join(f"{s}[.gz]" for s in stems[:2])
            + " (or dotted: train-images.idx3-ubyte; any case)")


def _files_by_lower_name(folder) -> dict[str, list]:
    if not folder.is_dir():
        return {}
    by_name: dict[str, list] = {}
    for path in folder.iterdir():
        if path.is_file():
            by_name.setdefault(path.name.lower(), []).append(path)
    return by_name


def find_idx_file(folder, stem: str) -> tuple[object | None, list]:
    """The copy of `stem` to read, and the other copies beside it."""
    by_name = _files_by_lower_name(folder)
    copies = [p for name in idx_names(stem) for p in sorted(by_name.get(name, []))]
    return (copies[0], copies[1:]) if copies else (None, [])


def other_idx_copies(src, chosen, *stems: str) -> list:
    """Files named as one of `stems` in the folders idx files are looked for, but `chosen`."""
    found = []
    for folder in (src, src / "raw", *(src / name / "raw" for name, _ in IDX_TASKS.values())):
        if folder != chosen:
            found += [p for stem in stems for p in find_idx_file(folder, stem)[0:1] if p is not None]
    return found


def find_idx_dir(src, task: str):
    for folder in (src, src / "raw", src / IDX_TASKS[task][0] / "raw"):
        if find_idx_file(folder, IDX_FILES["train"][0])[0] is not None:
            return folder
    return None


def _inflate(path, data: bytes) -> bytes:
    """gunzip with a ceiling: a few KB of gzip can claim gigabytes. Every member, as gzip
    reads them: a file of several gzip members (`cat a.gz b.gz`, pigz, some re-packers) is
    their contents one after the other."""
    parts, total = [], 0
    while data:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out = inflater.decompress(data, MAX_IDX_BYTES + 1 - total)
        except zlib.error as exc:
            raise ValueError(f"{path}: damaged gzip data ({exc})") from None
        total += len(out)
        if total > MAX_IDX_BYTES:
            raise ValueError(f"{path}: inflates to more than {MAX_IDX_BYTES:,} bytes: not an idx file")
        if not inflater.eof:
            raise ValueError(f"{path}: gzip data cut short")
        parts.append(out)
        data = inflater.unused_data.lstrip(b"\0")  # gzip skips zero padding between members, as here
    return b"".join(parts)


def _idx_bytes(path) -> bytes:
    data = path.read_bytes()
    if path.name.lower().endswith(".gz"):
        if not data.startswith(b"\x1f\x8b"):
            raise ValueError(f"{path}: named .gz but not gzip data")
        data = _inflate(path, data)
    return data


def parse_idx_header(path, data: bytes, role: str) -> tuple[int, ...]:
    """The dims of an idx file, checked for `role` ("images": N x rows x cols, "labels": N)."""
    if len(data) < 4 or data[:2] != b"\x00\x00":
        raise ValueError(f"{path}: not an idx file (starts with {data[:4].hex() or 'nothing'})")
    if data[2] != UBYTE:
        raise ValueError(f"{path}: idx data type 0x{data[2]:02x}, expected 0x08 (unsigned bytes)")
    ndim, wanted = data[3], 3 if role == "images" else 1
    if ndim != wanted:
        what = {1: "labels", 3: "images"}.get(ndim, f"a {ndim}-D array")
        raise ValueError(f"{path}: holds a {ndim}-D array ({what}), expected {role}: "
                         + ("N x rows x cols" if role == "images" else "N class indices"))
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"{path}: header cut short ({len(data)} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    if role == "images" and not all(1 <= d <= MAX_SIDE for d in dims[1:]):
        raise ValueError(f"{path}: images of {dims[1]}x{dims[2]} px, expected sides 1..{MAX_SIDE}")
    expected = 4 + 4 * ndim + int(np.prod(dims, dtype=np.int64))
    if dims[0] == 0 or len(data) != expected:
        raise ValueError(f"{path}: {len(data):,} bytes, expected {expected:,} for {'x'.join(map(str, dims))}")
    return dims


@functools.lru_cache(maxsize=8)
def read_idx(path, role: str) -> np.ndarray:
    """An idx file's records (uint8), checked for `role`; cached per process (a worker reads
    its file once for all its records)."""
    data = _idx_bytes(path)
    dims = parse_idx_header(path, data, role)
    return np.frombuffer(data, np.uint8, offset=4 + 4 * len(dims)).reshape(dims)


def read_idx_image(src, item: Item) -> Image.Image:
    return Image.fromarray(read_idx(src / item.source.rsplit("#", 1)[0], "images")[item.member], "L")


def read_idx_dataset(src: Path, task: str) -> Source:
    folder = download_if_missing(src, task, lambda: find_idx_dir(src, task), looked_for(task))
    classes = [ClassInfo(i, None, n) for i, n in enumerate(IDX_TASKS[task][1])]
    items, skipped, used, copies = {}, [], set(), []
    for split, (images_stem, labels_stem) in IDX_FILES.items():
        (images, image_copies), (labels, label_copies) = find_idx_file(folder, images_stem), \
            find_idx_file(folder, labels_stem)
        if images is None or labels is None:  # both splits or none: a test split never goes missing quietly
            elsewhere = sorted(relative(p, src) for p in other_idx_copies(src, folder, images_stem, labels_stem))
            raise FileNotFoundError(f"{folder}: {labels_stem if images else images_stem}[.gz] missing ({task}'s "
                                    f"{'training' if split == 'train' else 'test'} split); looked for "
                                    f"{looked_for(task)}" + (f"; found {', '.join(elsewhere)} in another folder: "
                                                             f"put the four files in one" if elsewhere else ""))
        n_images, n_labels = len(read_idx(images, "images")), len(read_idx(labels, "labels"))
        if n_images != n_labels:
            raise ValueError(f"{images} holds {n_images} images but {labels} {n_labels} labels")
        prefix = "train" if split == "train" else "test"
        items[split] = array_items(read_idx(labels, "labels"), len(classes), split,
                                      relative(images, src), prefix, skipped)
        used |= {images, labels}
        copies += [(c, images) for c in image_copies] + [(c, labels) for c in label_copies]
    source = Source(task, LAYOUT, src, classes, items, skipped)
    for copy, read in copies:
        source.ignore(copy, f"another copy of {read.name}, which is read")
    ignore_all_but(source, used | {c for c, _ in copies}, f"not one of {task}'s idx files")
    return source


# ---- the form (prep/forms/__init__.py) --------------------------------------------------------
LAYOUT = "idx"
HOLDS = ("MNIST / Fashion-MNIST idx files: torchvision's `MNIST/raw/`, `FashionMNIST/raw/` (or `raw/`, or the "
         "folder itself) with `train-images-idx3-ubyte[.gz]`, `t10k-...`, or other copies' names "
         "(`train-images.idx3-ubyte`, any case); downloaded when missing")
OWN_IDS = False
DOWNLOADS = True
read_record = read_idx_image


def detect(src) -> str | None:
    """The two share file names: the folder torchvision names, or a flat folder's own name, says
    which it is; idx files that say neither are refused."""
    found = [t for t in IDX_TASKS if find_idx_dir(src, t)]
    named = [t for t in IDX_TASKS if (src / IDX_TASKS[t][0]).is_dir()] or idx_task_from_name(src.name)
    if found and len(named) == 1:
        return named[0]
    if found:
        raise ValueError(f"--src {src}: idx files found, but MNIST and Fashion-MNIST share file names; "
                         f"pass --form mnist or --form fashion-mnist")
    return None


def idx_task_from_name(name: str) -> list[str]:
    name = name.lower().replace("_", "-")
    return ["fashion-mnist"] if "fashion" in name else ["mnist"] if "mnist" in name else []


def read(src, task: str) -> Source:
    return read_idx_dataset(src, task)
