"""`alexnet-prep stats` against bare decoding of the same shards, same number of processes,
side by side in one run; and its peak memory as the dataset grows.

    python bench/stats_throughput.py --shards /work/data/mnist --workers 2

  bare decode (webdataset reader)  every train shard read by webdataset's tar reader, each
                                   patch decoded (simplejpeg, strict), in W processes
  bare decode (shard reader)       the same with shared.shards.iter_shard, the reader stats uses
  stats                            prep.compute_stats.compute_rgb_stats: decode + exact sums
                                   + mean image, W worker processes, into a scratch folder
  stats on 1/4, 1/2, all shards    peak RSS (main process and workers) as the dataset grows
Each row runs in a fresh subprocess. Goal: stats >= 0.7x bare decode; RSS flat.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _decode_shard(job) -> int:
    path, reader = job
    from shared.patch import decode_patch

    if reader == "webdataset":
        import webdataset as wds

        samples = (s["jpg"] for s in wds.DataPipeline(wds.SimpleShardList([path]), wds.tarfile_to_samples()))
    else:
        from shared.shards import iter_shard

        samples = (s.jpg for s in iter_shard(path, meta=False))
    n = 0
    for jpg in samples:
        decode_patch(jpg)
        n += 1
    return n


def scratch_dataset(shards: Path, fraction: float) -> Path:
    """A folder with the manifest (train split cut to `fraction` of its shards) and links to
    the shards, so stats writes its files there, not into the measured dataset."""
    from shared.manifest import SplitInfo, read_manifest, write_manifest

    manifest = read_manifest(shards)
    info = manifest.splits["train"]
    keep = max(1, round(len(info.shards) * fraction))
    manifest.splits = {"train": SplitInfo(info.shards[:keep], info.shard_samples[:keep], info.shard_bytes[:keep],
                                          info.shard_sha256[:keep])}
    scratch = Path(tempfile.mkdtemp(prefix="stats-bench-"))
    for name in manifest.splits["train"].shards:
        os.symlink((shards / name).resolve(), scratch / name)
    write_manifest(manifest, scratch)
    return scratch


def child(mode: str, shards: Path, workers: int, fraction: float) -> dict:
    sys.path.insert(0, str(ROOT))
    from shared.manifest import read_manifest

    if mode == "stats":
        from prep.compute_stats import compute_rgb_stats

        scratch = scratch_dataset(shards, fraction)
        start = time.perf_counter()
        stats = compute_rgb_stats(scratch, workers)
        seconds, images = time.perf_counter() - start, stats.image_count
        shutil.rmtree(scratch)
    else:
        paths = read_manifest(shards).shard_paths(shards, "train")
        start = time.perf_counter()
        with ProcessPoolExecutor(workers) as pool:
            images = sum(pool.map(_decode_shard, [(p, mode) for p in paths]))
        seconds = time.perf_counter() - start
    peak_kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return {"images": images, "seconds": seconds, "peak_rss_mb": peak_kb / 1024}


def run_child(mode: str, args, fraction: float = 1.0) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--shards", str(args.shards), "--workers",
                          str(args.workers), "--fraction", str(fraction)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", type=Path, required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2, help="best of this many runs per row")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--fraction", type=float, default=1.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.shards, args.workers, args.fraction)))
        return
    rows = {}
    for _ in range(args.repeats):  # interleaved, so a busy spell hits every row alike
        for mode in ("webdataset", "shard-reader", "stats"):
            r = run_child(mode, args)
            if mode not in rows or r["seconds"] < rows[mode]["seconds"]:
                rows[mode] = r
    names = {"webdataset": "bare decode (webdataset reader)", "shard-reader": "bare decode (shard reader)",
             "stats": "alexnet-prep stats"}
    best_bare = max(rows["webdataset"]["images"] / rows["webdataset"]["seconds"],
                    rows["shard-reader"]["images"] / rows["shard-reader"]["seconds"])
    print(f"{rows['stats']['images']:,} train patches of {args.shards}, {args.workers} processes, "
          f"best of {args.repeats}\n")
    print("| pipeline | seconds | images/s | vs the faster bare decode | peak RSS MB |")
    print("|---|---|---|---|---|")
    for mode, r in rows.items():
        rate = r["images"] / r["seconds"]
        print(f"| {names[mode]} | {r['seconds']:.1f} | {rate:.0f} | {rate / best_bare:.2f} | {r['peak_rss_mb']:.0f} |")
    print("\n| stats on | images | peak RSS MB |\n|---|---|---|")
    for fraction in (0.25, 0.5, 1.0):
        r = run_child("stats", args, fraction)
        print(f"| {fraction:g} of the train shards | {r['images']:,} | {r['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
