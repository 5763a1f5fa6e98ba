"""ILSVRC-2012's archive forms on real images, side by side in one run:

    python bench/imagenet_archives.py --src ../shared/data/imagenet-kaggle-mini --workers 2 --repeats 3

  speed   `alexnet-prep shard` from image-net.org's form (ILSVRC2012_img_train.tar, a tar of per-class
          tars, read in place + a devkit) against the same images extracted to train/<wnid>/
          folders (+ the same devkit). Goal: in place >= 0.9x extracted.
  memory  peak RSS of the whole process tree (main process and workers) of `alexnet-prep shard`
          from Hugging Face's form (train_images_N.tar.gz, streamed) holding 1x, 2x and 4x the
          images, 1x being --base-copies copies of them (enough that 2 x workers runs of RUN
          images are in flight even at 1x). Goal: flat (within 10%).
The devkit is written by tests/imagenet_forms.py from the shipped class table (meta.mat's
structure, IDs permuted), as the tests' is: the real one is not redistributable.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from imagenet_forms import _tar_bytes, write_devkit, write_tar  # noqa: E402  (the formats' one writer)


def train_images(src: Path) -> list[tuple[str, str, bytes]]:
    """(wnid, stem, JPEG bytes) of a Kaggle-layout folder's training images."""
    train = src / "ILSVRC" / "Data" / "CLS-LOC" / "train"
    return [(p.parent.name, p.stem, p.read_bytes()) for p in sorted(train.glob("*/*.JPEG"))]


def write_forms(images, tmp: Path) -> dict[str, Path]:
    official, folders = tmp / "official", tmp / "folders"
    official.mkdir()
    by_class: dict[str, list] = {}
    for wnid, stem, data in images:
        by_class.setdefault(wnid, []).append((f"{stem}.JPEG", data))
        (folders / "train" / wnid).mkdir(parents=True, exist_ok=True)
        (folders / "train" / wnid / f"{stem}.JPEG").write_bytes(data)
    write_tar(official / "ILSVRC2012_img_train.tar", [(f"{w}.tar", _tar_bytes(m)) for w, m in sorted(by_class.items())])
    write_devkit(official / "ILSVRC2012_devkit_t12.tar.gz", {"val": []})
    shutil.copy(official / "ILSVRC2012_devkit_t12.tar.gz", folders)
    return {"extracted train/<wnid>/ folders": folders, "ILSVRC2012_img_train.tar in place": official}


def write_hf(images, folder: Path, copies: int) -> Path:
    folder.mkdir()
    members = [(f"{stem}r{k}_{wnid}.JPEG", data) for k in range(copies) for wnid, stem, data in images]
    for part in range(2):
        write_tar(folder / f"train_images_{part}.tar.gz", members[part::2], gz=True)
    write_devkit(folder / "ILSVRC2012_devkit_t12.tar.gz", {"val": []})
    return folder


def prep_cmd(src: Path, out: Path, workers: int) -> list[str]:
    return [sys.executable, "-m", "prep", "shard", "--src", str(src), "--out", str(out), "--workers", str(workers),
            "--allow-skips", "--overwrite"]


def seconds(src: Path, out: Path, workers: int) -> float:
    start = time.perf_counter()
    subprocess.run(prep_cmd(src, out, workers), check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - start


def tree_rss_mb(pid: int) -> float:
    """VmRSS of `pid` and all its descendants, MB."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1024


def peak_rss(src: Path, out: Path, workers: int) -> float:
    proc = subprocess.Popen(prep_cmd(src, out, workers), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=ROOT)
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, tree_rss_mb(proc.pid))
        time.sleep(0.02)
    if proc.returncode:
        raise SystemExit(f"prep from {src} failed ({proc.returncode})")
    return peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", type=Path, required=True, help="a Kaggle-layout folder (imagenet-kaggle-mini)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--base-copies", type=int, default=4, help="copies of the images in the 1x archive")
    args = ap.parse_args()
    images = train_images(args.src)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        forms = write_forms(images, tmp)
        times = {name: [] for name in forms}
        for _ in range(args.repeats):  # alternate, so that background load hits both alike
            for name, src in forms.items():
                times[name].append(seconds(src, tmp / "out", args.workers))
        memory = {}
        for k in (1, 2, 4):
            memory[k] = peak_rss(write_hf(images, tmp / f"hf{k}", k * args.base_copies), tmp / "hf-out", args.workers)
            shutil.rmtree(tmp / f"hf{k}")
    best = {k: min(v) for k, v in times.items()}
    base = best["extracted train/<wnid>/ folders"]
    print(f"{len(images)} training images of {args.src}, {args.workers} workers, best of {args.repeats}\n")
    print("| prep source | seconds | images/s | vs extracted |\n|---|---|---|---|")
    for name, s in best.items():
        print(f"| {name} | {s:.2f} | {len(images) / s:.0f} | {base / s:.2f}x |")
    print("\n| Hugging Face form (streamed tar.gz) | images | peak RSS of the process tree, MB | vs 1x |")
    print("|---|---|---|---|")
    for k, mb in memory.items():
        print(f"| {k}x | {k * args.base_copies * len(images):,} | {mb:.0f} | {mb / memory[1]:.2f} |")


if __name__ == "__main__":
    main()
