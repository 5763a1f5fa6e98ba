"""Prep straight from a zip vs from the extracted tree, and what unzipping costs, in one run.

    python bench/archive_throughput.py --src ../shared/data/imagenet-kaggle-mini

Zips the folder twice (stored, deflated), then times, alternating over --repeats rounds:
`alexnet-prep shard` from the tree, from each zip, and `unzip` of each zip. Goal: from-zip
>= 0.9x the tree's images/s, so that a user saves the whole unzip step.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_zip(folder: Path, dest: Path, compression: int) -> Path:
    with zipfile.ZipFile(dest, "w", compression) as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, path.relative_to(folder).as_posix() + ("/" if path.is_dir() else ""))
    return dest


def prep_seconds(src: Path, out: Path, workers: int) -> float:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "prep", "shard", "--src", str(src), "--out", str(out), "--workers",
                    str(workers), "--allow-skips"], check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - start


def unzip_seconds(archive: Path, dest: Path) -> float:
    shutil.rmtree(dest, ignore_errors=True)
    start = time.perf_counter()
    if shutil.which("unzip"):
        subprocess.run(["unzip", "-q", str(archive), "-d", str(dest)], check=True)
    else:  # the same work through Python's zipfile
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(dest)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", type=Path, required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    images = sum(1 for p in args.src.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        zips = {"zip, stored": make_zip(args.src, tmp / "stored.zip", zipfile.ZIP_STORED),
                "zip, deflated": make_zip(args.src, tmp / "deflated.zip", zipfile.ZIP_DEFLATED)}
        times: dict[str, list[float]] = {"extracted tree": [], **{k: [] for k in zips},
                                         **{f"unzip ({k})": [] for k in zips}}
        for _ in range(args.repeats):  # alternate, so that background load hits every row alike
            times["extracted tree"].append(prep_seconds(args.src, tmp / "out", args.workers))
            for name, archive in zips.items():
                times[name].append(prep_seconds(archive, tmp / "out", args.workers))
                times[f"unzip ({name})"].append(unzip_seconds(archive, tmp / "unzipped"))
        sizes = {k: v.stat().st_size / 2**20 for k, v in zips.items()}
    best = {k: min(v) for k, v in times.items()}
    tree = best["extracted tree"]
    print(f"{images} images from {args.src}, {args.workers} workers, best of {args.repeats}; "
          f"zips: " + ", ".join(f"{k} {v:.0f} MiB" for k, v in sizes.items()))
    print("\n| prep source | seconds | images/s | vs extracted tree | unzip first, seconds |")
    print("|---|---|---|---|---|")
    print(f"| extracted tree | {tree:.2f} | {images / tree:.0f} | 1.00x | – |")
    for name in zips:
        print(f"| {name} | {best[name]:.2f} | {images / best[name]:.0f} | {tree / best[name]:.2f}x | "
              f"{best[f'unzip ({name})']:.2f} |")


if __name__ == "__main__":
    main()
