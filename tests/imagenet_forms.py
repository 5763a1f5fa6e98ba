"""The same generated ILSVRC-2012 images in every on-disk form people hold them (issue 20):
Kaggle's folders, image-net.org's archives (a tar of per-class tars, a val tar, the devkit's
meta.mat written with scipy.io.savemat, internal nodes included, IDs not in sorted order),
the torchvision references' folders, Hugging Face's tar.gz, and an ImageNetV2 set."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np

from make_fixtures import jpeg_bytes, random_image

SHIPPED = Path(__file__).resolve().parents[1] / "shared" / "ilsvrc2012_classes.txt"
# class indices used: 0, 1, 2, 10, 65 (val_00000001's class in the real devkit), ..., 999;
# two with no training images
USED = [0, 1, 2, 10, 65, 100, 300, 500, 700, 998, 999, 3]
EMPTY = {998, 3}
VAL_IMAGES = 50_000


def table() -> list[tuple[str, str]]:
    return [(line.split(" ", 1)[0], line.split(" ", 1)[1].strip()) for line in SHIPPED.read_text().splitlines()]


def make_images(seed: int = 0) -> dict:
    """{"train": [(wnid, stem, jpeg)], "val": [(n, wnid, jpeg)]}: 3 train images for each used
    class but the empty ones, 14 val images."""
    rng = np.random.default_rng(seed)
    wnids = [w for w, _ in table()]
    train = [(wnids[k], f"{wnids[k]}_{n}", jpeg_bytes(random_image(rng, 64 + n, 48)))
             for k in USED if k not in EMPTY for n in (7, 12, 100)]
    val = [(n, wnids[USED[(n * 5) % len(USED)]], jpeg_bytes(random_image(rng, 56, 60))) for n in range(1, 15)]
    return {"train": train, "val": val}


def val_name(n: int) -> str:
    return f"ILSVRC2012_val_{n:08d}"


def write_kaggle(root: Path, images: dict) -> Path:
    root.mkdir(parents=True)
    (root / "LOC_synset_mapping.txt").write_text(SHIPPED.read_text())
    base = root / "ILSVRC" / "Data" / "CLS-LOC"
    for wnid, stem, data in images["train"]:
        (base / "train" / wnid).mkdir(parents=True, exist_ok=True)
        (base / "train" / wnid / f"{stem}.JPEG").write_bytes(data)
    (base / "val").mkdir(parents=True)
    rows = ["ImageId,PredictionString"]
    for n, wnid, data in images["val"]:
        (base / "val" / f"{val_name(n)}.JPEG").write_bytes(data)
        rows.append(f"{val_name(n)},{wnid} 1 1 20 20")
    (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    return root


def _tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_tar(path: Path, members: list[tuple[str, bytes]], gz: bool = False) -> None:
    with tarfile.open(path, "w:gz" if gz else "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def devkit_ids(seed: int = 1) -> dict[str, int]:
    """wnid -> ILSVRC2012_ID: a permutation, so IDs are not sorted-wnid positions."""
    wnids = [w for w, _ in table()]
    order = np.random.default_rng(seed).permutation(1000)
    return {wnids[k]: int(i) + 1 for i, k in enumerate(order)}


def write_devkit(path: Path, images: dict) -> dict[str, int]:
    import scipy.io

    ids = devkit_ids()
    rows = [(ids[w], w, words, "", 0, np.zeros((0,), np.uint16), 0, 1300) for w, words in table()]
    rows += [(1000 + k, f"n9{k:07d}", f"internal node {k}", "", 3, np.array([1, 2, 3], np.uint16), 2, 0)
             for k in range(1, 8)]  # internal synsets: num_children > 0, not classes
    rows.sort(key=lambda r: r[0])
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
              "num_train_images"]
    synsets = np.zeros((len(rows),), dtype=[(f, "O") for f in fields])
    for i, row in enumerate(rows):
        synsets[i] = row
    meta = io.BytesIO()
    scipy.io.savemat(meta, {"synsets": synsets})
    by_n = {n: w for n, w, _ in images["val"]}
    rng = np.random.default_rng(2)
    truth = [ids[by_n[n]] if n in by_n else int(rng.integers(1, 1001)) for n in range(1, VAL_IMAGES + 1)]
    write_tar(path, [("ILSVRC2012_devkit_t12/data/meta.mat", meta.getvalue()),
                     ("ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt",
                      ("\n".join(map(str, truth)) + "\n").encode()),
                     ("ILSVRC2012_devkit_t12/readme.txt", b"devkit")], gz=True)
    return ids


def write_official(root: Path, images: dict) -> Path:
    root.mkdir(parents=True)
    wnids = [w for w, _ in table()]
    inner = []
    for k in USED:  # the empty classes' tars hold nothing
        members = [(f"{stem}.JPEG", data) for w, stem, data in images["train"] if w == wnids[k]]
        inner.append((f"{wnids[k]}.tar", _tar_bytes(members)))
    write_tar(root / "ILSVRC2012_img_train.tar", sorted(inner))
    write_tar(root / "ILSVRC2012_img_val.tar", [(f"{val_name(n)}.JPEG", d) for n, _, d in images["val"]])
    write_devkit(root / "ILSVRC2012_devkit_t12.tar.gz", images)
    return root


def write_reference_folders(root: Path, images: dict, devkit: bool) -> Path:
    """torchvision's ImageNet folders: train/<wnid>/, val/<wnid>/, the devkit kept beside, or else
    a folder for each of the 1,000 classes (the others empty): either says "ImageNet" (a few wnid
    folders alone are a subset: prep/forms/imagenet_subset.py)."""
    if not devkit:
        for wnid, _ in table():
            (root / "train" / wnid).mkdir(parents=True, exist_ok=True)
    for wnid, stem, data in images["train"]:
        (root / "train" / wnid).mkdir(parents=True, exist_ok=True)
        (root / "train" / wnid / f"{stem}.JPEG").write_bytes(data)
    for n, wnid, data in images["val"]:
        (root / "val" / wnid).mkdir(parents=True, exist_ok=True)
        (root / "val" / wnid / f"{val_name(n)}.JPEG").write_bytes(data)
    if devkit:
        write_devkit(root / "ILSVRC2012_devkit_t12.tar.gz", images)
    return root


def write_huggingface(root: Path, images: dict) -> Path:
    """imagenet-1k's archives: members `<stem>_<wnid>.JPEG`; the test set unlabelled."""
    root.mkdir(parents=True)
    train = [(f"{stem}_{w}.JPEG", data) for w, stem, data in images["train"]]
    write_tar(root / "train_images_0.tar.gz", train[::2], gz=True)
    write_tar(root / "train_images_1.tar.gz", train[1::2], gz=True)
    write_tar(root / "val_images.tar.gz", [(f"{val_name(n)}_{w}.JPEG", d) for n, w, d in images["val"]], gz=True)
    write_tar(root / "test_images.tar.gz", [("ILSVRC2012_test_00000001.JPEG", images["val"][0][2])], gz=True)
    return root


def write_imagenetv2(root: Path, classes: list[int], per_class: int = 2, seed: int = 3) -> dict[str, int]:
    """`imagenetv2-matched-frequency-format-val/<k>/<sha1>.jpeg`; returns key -> class index."""
    rng = np.random.default_rng(seed)
    folder = root / "imagenetv2-matched-frequency-format-val"
    labels = {}
    for k in classes:
        (folder / str(k)).mkdir(parents=True)
        for _ in range(per_class):
            data = jpeg_bytes(random_image(rng, 50, 50))
            sha = hashlib.sha1(data).hexdigest()
            (folder / str(k) / f"{sha}.jpeg").write_bytes(data)
            labels[f"{k}_{sha}"] = k
    return labels


def write_real_json(path: Path, lists: dict[int, list[int]]) -> None:
    """real.json: 50,000 lists in val-file order; those not given are [0] (and some empty)."""
    out = [lists.get(n, [] if n % 7 == 0 else [n % 1000]) for n in range(1, VAL_IMAGES + 1)]
    path.write_text(json.dumps(out))
