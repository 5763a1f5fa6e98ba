"""Generators of tiny datasets in each exact on-disk format the prep stage reads,
including the bad inputs real ImageNet holds (CMYK, grayscale, PNG named .JPEG)
and broken files (truncated, not an image)."""
from __future__ import annotations

import gzip
import io
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

WNIDS = ["n01440764", "n01443537", "n01484850"]


def random_image(rng: np.random.Generator, width: int, height: int, mode: str = "RGB") -> Image.Image:
    """Smooth random colours (compress like photos, unlike white noise)."""
    small = rng.integers(0, 256, size=(max(2, height // 16), max(2, width // 16), 3), dtype=np.uint8)
    img = Image.fromarray(small, "RGB").resize((width, height), Image.Resampling.BILINEAR)
    return img if mode == "RGB" else img.convert(mode)


def jpeg_bytes(img: Image.Image, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def write_kaggle(root: Path, per_class: int = 4, val_per_class: int = 2, seed: int = 0) -> dict:
    """Kaggle ILSVRC layout with every kind of awkward input. Returns what was planted."""
    rng = np.random.default_rng(seed)
    mapping = [f"{w} name of {w}, synonym" for w in WNIDS] + ["n02012849 crane", "n03126707 crane"]
    (root).mkdir(parents=True, exist_ok=True)
    (root / "LOC_synset_mapping.txt").write_text("\n".join(mapping) + "\n")
    base = root / "ILSVRC" / "Data" / "CLS-LOC"
    labels: dict[str, int] = {}
    for label, wnid in enumerate(WNIDS):
        folder = base / "train" / wnid
        folder.mkdir(parents=True)
        for n in range(per_class):
            size = (600, 540) if n == 0 else (int(rng.integers(40, 160)), int(rng.integers(40, 160)))
            (folder / f"{wnid}_{n}.JPEG").write_bytes(jpeg_bytes(random_image(rng, *size)))
            labels[f"{wnid}_{n}"] = label
    odd = base / "train" / WNIDS[1]
    (odd / f"{WNIDS[1]}_cmyk.JPEG").write_bytes(jpeg_bytes(random_image(rng, 90, 70, "CMYK")))
    (odd / f"{WNIDS[1]}_grey.JPEG").write_bytes(jpeg_bytes(random_image(rng, 70, 90, "L")))
    png = io.BytesIO()
    random_image(rng, 80, 80).save(png, "PNG")  # like n02105855_2933.JPEG
    (odd / f"{WNIDS[1]}_png.JPEG").write_bytes(png.getvalue())
    labels.update({f"{WNIDS[1]}_cmyk": 1, f"{WNIDS[1]}_grey": 1, f"{WNIDS[1]}_png": 1})
    good = jpeg_bytes(random_image(rng, 120, 100))
    (odd / f"{WNIDS[1]}_truncated.JPEG").write_bytes(good[: len(good) // 2])
    (odd / f"{WNIDS[1]}_garbage.JPEG").write_bytes(b"this is not an image" * 10)
    unknown = base / "train" / "n99999999"
    unknown.mkdir()
    (unknown / "n99999999_0.JPEG").write_bytes(jpeg_bytes(random_image(rng, 64, 64)))
    (base / "val").mkdir()
    rows = ["ImageId,PredictionString"]
    n = 0
    for label, wnid in enumerate(WNIDS):
        for _ in range(val_per_class):
            n += 1
            image_id = f"ILSVRC2012_val_{n:08d}"
            (base / "val" / f"{image_id}.JPEG").write_bytes(jpeg_bytes(random_image(rng, 100, 80)))
            rows.append(f"{image_id},{wnid} 1 2 50 60 {wnid} 3 4 20 30")
            labels[image_id] = label
    (base / "val" / "ILSVRC2012_val_00000900.JPEG").write_bytes(jpeg_bytes(random_image(rng, 64, 64)))
    rows.append("ILSVRC2012_val_00000901,n01440764 0 0 10 10")  # listed, file missing
    (base / "val" / "ILSVRC2012_val_00000902.JPEG").write_bytes(jpeg_bytes(random_image(rng, 64, 64)))
    rows.append("ILSVRC2012_val_00000902,n77777777 0 0 10 10")  # unknown class
    (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    (base / "test").mkdir()
    (base / "test" / "ILSVRC2012_test_00000001.JPEG").write_bytes(jpeg_bytes(random_image(rng, 64, 64)))
    return {"labels": labels, "skips": 6,  # truncated, garbage, unknown class, 3 val problems
            "files": sum(1 for p in (base / "train").rglob("*") if p.is_file())
            + sum(1 for _ in (base / "val").iterdir())}


def write_tiny_imagenet(root: Path, per_class: int = 3, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    wnids = ["n02124075", "n01443537"]  # deliberately unsorted in wnids.txt
    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (root / "words.txt").write_text("n01443537\tgoldfish, Carassius auratus\nn02124075\tEgyptian cat\n")
    labels = {}
    for wnid in wnids:
        images = root / "train" / wnid / "images"
        images.mkdir(parents=True)
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for n in range(per_class):
            (images / f"{wnid}_{n}.JPEG").write_bytes(jpeg_bytes(random_image(rng, 64, 64)))
            labels[f"{wnid}_{n}"] = sorted(wnids).index(wnid)
    (root / "val" / "images").mkdir(parents=True)
    lines = []
    for n, wnid in enumerate(wnids * 2):
        (root / "val" / "images" / f"val_{n}.JPEG").write_bytes(jpeg_bytes(random_image(rng, 64, 64)))
        lines.append(f"val_{n}.JPEG\t{wnid}\t0\t0\t63\t63")
        labels[f"val_{n}"] = sorted(wnids).index(wnid)
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return {"labels": labels}


def idx_bytes(array: np.ndarray, dtype_code: int = 0x08) -> bytes:
    """An idx file as LeCun's page specifies it: 0, 0, the data type (0x08 = uint8), the number
    of dimensions, each size big-endian, then the data (written as uint8 whatever the code says,
    so that a test can claim another type)."""
    header = struct.pack(">BBBB", 0, 0, dtype_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


IDX_NAMING = {  # how copies of MNIST name their files: (images, labels) per split prefix
    "torchvision": lambda prefix, kind, dims: f"{prefix}-{kind}-idx{dims}-ubyte.gz",
    "dotted": lambda prefix, kind, dims: f"{prefix}-{kind}.idx{dims}-ubyte",  # PyPI's mnist packages
    "dotted-gz": lambda prefix, kind, dims: f"{prefix}-{kind}.idx{dims}-ubyte.gz",
    "upper": lambda prefix, kind, dims: f"{prefix}-{kind}-idx{dims}-ubyte".upper(),
}


def write_mnist(root: Path, folder: str = "MNIST", n_train: int = 30, n_test: int = 10, seed: int = 2,
                naming: str = "torchvision", flat: bool = False) -> dict:
    """torchvision's layout: <root>/MNIST/raw/*-idx?-ubyte.gz; or another copy's file names
    (IDX_NAMING), flat in <root> when `flat`."""
    rng = np.random.default_rng(seed)
    raw = root if flat else root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    data = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        for kind, dims, array in (("images", 3, images), ("labels", 1, labels)):
            name = IDX_NAMING[naming](prefix, kind, dims)
            raw_bytes = idx_bytes(array)
            (raw / name).write_bytes(gzip.compress(raw_bytes) if name.lower().endswith(".gz") else raw_bytes)
        data[prefix] = (images, labels)
    return data


def write_cifar10(root: Path, per_batch: int = 6, seed: int = 3) -> dict:
    """torchvision's layout: <root>/cifar-10-batches-py/{batches.meta,data_batch_1..5,test_batch}"""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [n.encode() for n in names], b"num_cases_per_batch": per_batch}, f)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8),
                 b"labels": [int(x) for x in rng.integers(0, 10, size=per_batch)],
                 b"batch_label": name.encode()}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
        batches[name] = batch
    return batches


def write_cifar100(root: Path, n: int = 20, seed: int = 4) -> dict:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    with open(folder / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [f"class{i}".encode() for i in range(100)],
                     b"coarse_label_names": [f"super{i}".encode() for i in range(20)]}, f)
    batches = {}
    for name in ("train", "test"):
        batch = {b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
                 b"fine_labels": [int(x) for x in rng.integers(0, 100, size=n)],
                 b"coarse_labels": [0] * n}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
        batches[name] = batch
    return batches


def write_class_folders(root: Path, classes=("cat", "dog"), per_class: int = 5, with_val: bool = False,
                        seed: int = 5) -> None:
    rng = np.random.default_rng(seed)
    for split in (["train", "val"] if with_val else [""]):
        for c in classes:
            folder = root / split / c if split else root / c
            folder.mkdir(parents=True)
            for n in range(per_class if split != "val" else 2):
                random_image(rng, 48, 40).save(folder / f"{n:04d}.jpg", quality=90)
    (root / (("train/" if with_val else "") + classes[0]) / "notes.txt").write_text("not an image")


def cut_mid_member(path: Path) -> None:
    """A file cut off halfway, as a full disk or a killed copy leaves it (a tar shard ends
    inside a member)."""
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2 + 100])
