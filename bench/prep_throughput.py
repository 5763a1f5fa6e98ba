"""Prep throughput per core: naive pipeline vs ours, side by side in one run.

    python bench/prep_throughput.py --src ../shared/data/imagenet-kaggle-mini

Each pipeline runs in a fresh single-process subprocess over the same JPEG bytes (read
into memory first, so disk speed is out of it) and reports images/s and peak RSS:
  naive-stock  PIL open -> convert RGB -> resize shorter side to 256 -> centre crop -> JPEG,
               on stock Pillow (installed with `pip --target` into .bench/stock-pillow)
  naive        the same on the active Pillow (pillow-simd after `make`)
  ours         shared.patch: strict JPEG decode at the draft scale + crop-box resample, active Pillow
Also prints the JPEG quality trade-off (bytes and PSNR against the unencoded patch).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STOCK_DIR = ROOT / ".bench" / "stock-pillow"
SUFFIXES = {".jpeg", ".jpg", ".png"}


def list_images(src: Path, limit: int) -> list[Path]:
    files = sorted(p for p in src.rglob("*") if p.suffix.lower() in SUFFIXES)
    return files[:limit] if limit else files


def naive(data: bytes, size: int, quality: int) -> bytes:
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB")
    scale = size / min(img.size)
    w, h = round(img.width * scale), round(img.height * scale)
    img = img.resize((w, h), Image.Resampling.BILINEAR)
    left, top = (w - size) // 2, (h - size) // 2
    out = io.BytesIO()
    img.crop((left, top, left + size, top + size)).save(out, "JPEG", quality=quality)
    return out.getvalue()


def ours(data: bytes, size: int, quality: int) -> bytes:
    sys.path.insert(0, str(ROOT))
    from shared.patch import encode_jpeg, open_image, resize_centre_crop

    img, _ = open_image(data, size)
    return encode_jpeg(resize_centre_crop(img, size), quality)


def worker(mode: str, files: list[str], repeats: int) -> dict:
    import PIL

    blobs = [Path(f).read_bytes() for f in files]
    fn = ours if mode == "ours" else naive
    fn(blobs[0], 256, 90)  # warm-up: imports, plugin registration
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for b in blobs:
            fn(b, 256, 90)
        best = min(best, time.perf_counter() - start)
    return {"images_per_s": len(blobs) / best, "pillow": PIL.__version__,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_worker(mode: str, files: list[Path], repeats: int, extra_path: Path | None = None) -> dict:
    env = dict(os.environ)
    if extra_path:
        env["PYTHONPATH"] = f"{extra_path}{os.pathsep}{env.get('PYTHONPATH', '')}"
    listing = ROOT / ".bench" / "files.txt"
    listing.parent.mkdir(exist_ok=True)
    listing.write_text("\n".join(map(str, files)))
    out = subprocess.run([sys.executable, __file__, "--worker", mode, "--files", str(listing),
                          "--repeats", str(repeats)], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def ensure_stock_pillow() -> Path | None:
    if (STOCK_DIR / "PIL").is_dir():
        return STOCK_DIR
    result = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(STOCK_DIR),
                             "--only-binary", ":all:", "pillow"], capture_output=True, text=True)
    return STOCK_DIR if result.returncode == 0 else None


def quality_table(files: list[Path]) -> list[tuple[int, float, float]]:
    import numpy as np
    from PIL import Image

    sys.path.insert(0, str(ROOT))
    from shared.patch import open_image, resize_centre_crop

    patches = []
    for f in files:
        img, _ = open_image(Path(f).read_bytes(), 256)
        patches.append(resize_centre_crop(img, 256))
    rows = []
    for q in (75, 85, 90, 95):
        sizes, psnrs = [], []
        for p in patches:
            buf = io.BytesIO()
            p.save(buf, "JPEG", quality=q)
            sizes.append(buf.tell())
            err = np.asarray(Image.open(buf), np.float64) - np.asarray(p, np.float64)
            psnrs.append(10 * np.log10(255 ** 2 / max(np.mean(err ** 2), 1e-12)))
        rows.append((q, float(np.mean(sizes)) / 1024, float(np.mean(psnrs))))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", type=Path, help="folder of images (searched recursively)")
    ap.add_argument("--limit", type=int, default=0, help="use at most this many images (0 = all)")
    ap.add_argument("--repeats", type=int, default=2, help="timed passes; the best is kept")
    ap.add_argument("--no-stock", action="store_true", help="skip the stock-Pillow baseline")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--files", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.files.read_text().splitlines(), args.repeats)))
        return
    if args.src is None or not args.src.is_dir():
        ap.error(f"--src {args.src}: expected a folder of JPEG/PNG images")
    files = list_images(args.src, args.limit)
    if not files:
        ap.error(f"--src {args.src}: no .jpeg/.jpg/.png files found")
    print(f"{len(files)} images from {args.src}; one process each (per-core figures); best of {args.repeats}")
    results = {}
    stock = None if args.no_stock else ensure_stock_pillow()
    if stock:
        results["naive, stock Pillow"] = run_worker("naive", files, args.repeats, stock)
    else:
        print("(stock Pillow baseline unavailable: pip could not install it into .bench/)")
    results["naive, active Pillow"] = run_worker("naive", files, args.repeats)
    results["ours (draft + crop-box), active Pillow"] = run_worker("ours", files, args.repeats)
    base = next(iter(results.values()))["images_per_s"]
    print("\n| pipeline | Pillow | images/s/core | vs first row | peak RSS MB |\n|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['pillow']} | {r['images_per_s']:.0f} | {r['images_per_s'] / base:.2f}x "
              f"| {r['peak_rss_mb']:.0f} |")
    print("\n| JPEG quality | mean KiB/patch | mean PSNR dB |\n|---|---|---|")
    for q, kib, psnr in quality_table(files[:200]):
        print(f"| {q} | {kib:.1f} | {psnr:.2f} |")


if __name__ == "__main__":
    main()
