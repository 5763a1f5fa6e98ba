"""One training epoch over ranks, counted: run under torchrun (gloo on the CPU)

    torchrun --nproc_per_node 2 bench/epoch_keys.py --shards /work/scale/scale-0.2/shards --workers 1

Each rank builds the train stream as alexnet-train does (global batch 128, steps = train samples
÷ 128, its own rank and loader workers) and
  1. lists the key of every sample each of its workers turns into batches (the same reads and
     shuffle buffer, without decoding), gathered on rank 0: keys seen twice, keys never seen,
     the total against steps × batch;
  2. runs the real loader (decoding, crops) through the whole epoch: batches per rank, the
     wall time, images/s per rank, and a barrier after the last batch with a deadline (a rank
     short of batches would leave the other waiting: a hang is reported, not waited out);
  3. counts holdout and val samples through the evaluation split over ranks and workers,
     against the manifest.
Rank 0 prints one JSON line.
"""
from __future__ import annotations

import argparse
import datetime
import json
import random
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from shared.manifest import read_manifest  # noqa: E402
from train.loader import (EvalShards, SampleRules, TrainStream, iterate_train_batches, make_loader,  # noqa: E402
                          read_tar_samples)


def train_stream(shards: Path, manifest, rank: int, world: int, batch: int) -> TrainStream:
    return TrainStream.of_train_split(manifest, shards, crop=224, buffer=1000, seed=0,
                                      steps=manifest.splits["train"].samples // batch, rank=rank, world=world,
                                      batch_size=batch // world)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", type=Path, required=True)
    ap.add_argument("--workers", type=int, default=1, help="loader workers per rank")
    ap.add_argument("--batch-size", type=int, default=128, help="global batch")
    ap.add_argument("--barrier-s", type=float, default=120, help="deadline of the end-of-epoch barrier")
    args = ap.parse_args()
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=args.barrier_s))
    rank, world = dist.get_rank(), dist.get_world_size()
    manifest = read_manifest(args.shards)
    stream = train_stream(args.shards, manifest, rank, world, args.batch_size)
    w = max(1, args.workers)

    keys = [s["__key__"] for role in range(w) for s in stream.slot_samples(role, w, random.Random(role))]
    gathered: list = [None] * world
    dist.all_gather_object(gathered, keys)

    start = time.perf_counter()
    batches = sum(1 for _ in iterate_train_batches(stream, args.workers, False))
    seconds = time.perf_counter() - start
    try:
        dist.barrier()
        hang = False
    except RuntimeError:
        hang = True
    per_rank: list = [None] * world
    dist.all_gather_object(per_rank, {"batches": batches, "seconds": seconds})

    rules = SampleRules(manifest.patch_size, manifest.num_classes)
    counted = {}
    for split in ("holdout", "val"):
        if split not in manifest.splits:
            continue
        n = sum(len(y) for _, y in make_loader(EvalShards(manifest.shard_paths(args.shards, split), rules, rank, world),
                                                 256, args.workers, False))
        total = torch.tensor([n])
        dist.all_reduce(total)
        counted[split] = {"counted": int(total), "manifest": manifest.splits[split].samples}
    if rank == 0:
        seen = [k for ks in gathered for k in ks]
        every = {s["__key__"] for s in read_tar_samples(manifest.shard_paths(args.shards, "train"))}
        steps = stream.steps
        print(json.dumps({
            "ranks": world, "workers": args.workers, "steps": steps, "per_rank_batch": stream.batch_size,
            "train_samples": len(every), "keys_seen": len(seen), "expected": steps * args.batch_size,
            "keys_twice": len(seen) - len(set(seen)), "keys_not_seen": len(every - set(seen)),
            "foreign_keys": len(set(seen) - every), "batches_per_rank": [r["batches"] for r in per_rank],
            "epoch_s": max(r["seconds"] for r in per_rank),
            "images_per_s_per_rank": [r["batches"] * stream.batch_size / r["seconds"] for r in per_rank],
            "hang_at_end": hang, "eval": counted}), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
