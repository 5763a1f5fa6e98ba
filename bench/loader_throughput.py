"""Loader throughput per core vs bare JPEG decoding of the same shards, in one run.

    python bench/loader_throughput.py --shards demo/shards

  bare decode (simplejpeg)   read tar samples + simplejpeg strict decode (the loader's decoder), one process
  bare decode (torchvision)  the same with torchvision.io.decode_jpeg (not strict), one process
  bare decode (PIL)          the same with PIL (what stock pipelines use), one process
  loader, W workers          the production TrainStream (shuffle buffer, decode, random crop,
                             flip) through a DataLoader into batches, per worker process
The ratio loader/bare simplejpeg is the loader's overhead; the goal is >= 0.8.
"""
from __future__ import annotations

import argparse
import io
import itertools
import time
from pathlib import Path

import numpy as np
import simplejpeg
import torch
from PIL import Image
from torchvision.io import decode_jpeg

from shared.manifest import read_manifest
from train.loader import SampleRules, TrainStream, iterate_train_batches, read_tar_samples


BARE_DECODERS = ("simplejpeg", "torchvision", "pil")


def cycle_samples(urls: list[str]):
    while True:
        yield from read_tar_samples(urls)


def bare_decode(urls: list[str], n: int, decoder: str) -> float:
    samples = cycle_samples(urls)
    start = time.perf_counter()
    for sample in itertools.islice(samples, n):
        if decoder == "simplejpeg":
            simplejpeg.decode_jpeg(sample["jpg"], colorspace="RGB", strict=True)
        elif decoder == "torchvision":
            decode_jpeg(torch.frombuffer(bytearray(sample["jpg"]), dtype=torch.uint8))
        else:
            np.asarray(Image.open(io.BytesIO(sample["jpg"])).convert("RGB"))
    return n / (time.perf_counter() - start)


def loader_rate(urls: list[str], counts: list[int], rules: SampleRules, n: int, batch: int, workers: int,
                buffer: int) -> float:
    # warm-up: every worker started and its shuffle buffer filled (a one-off per epoch)
    warm, steps = max(1, workers) * (-(-buffer // batch) + 1), max(1, n // batch)
    stream = TrainStream(urls, counts, rules=rules, crop=224, buffer=buffer, seed=0, steps=warm + steps,
                         batch_size=batch)
    batches = iterate_train_batches(stream, workers, pin=False)
    for _ in range(warm):
        next(batches)
    start = time.perf_counter()
    for _ in itertools.islice(batches, steps):
        pass
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", type=Path, required=True)
    ap.add_argument("--images", type=int, default=6000, help="images per measurement")
    ap.add_argument("--buffer", type=int, default=1000, help="shuffle buffer per worker")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--decoders", nargs="+", choices=BARE_DECODERS, default=list(BARE_DECODERS),
                    help="bare decoders to time (the first is the ratio's base)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    manifest = read_manifest(args.shards)
    urls = manifest.shard_paths(args.shards, "train")
    rules = SampleRules(manifest.patch_size, manifest.num_classes)
    counts = manifest.splits["train"].shard_samples
    rows = [(f"bare decode ({d}), 1 process", bare_decode(urls, args.images, d), 1) for d in args.decoders]
    for w in args.workers:
        rows.append((f"loader, {w} worker(s)", loader_rate(urls, counts, rules, args.images, args.batch_size, w,
                                                          args.buffer), w))
    base = rows[0][1]
    print(f"{len(urls)} train shards from {args.shards}; {args.images} images per row; "
          f"batch {args.batch_size}, shuffle buffer {args.buffer}\n")
    print("| pipeline | images/s | images/s per worker core | vs bare simplejpeg decode (per core) |")
    print("|---|---|---|---|")
    for name, rate, cores in rows:
        print(f"| {name} | {rate:.0f} | {rate / cores:.0f} | {rate / cores / base:.2f} |")


if __name__ == "__main__":
    main()
