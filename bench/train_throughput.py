"""Training throughput on one device, three figures side by side in one run:

  (a) model-only   production model + step (train_one_epoch) on one synthetic uint8 batch
                   already on the device: the ceiling
  (b) end-to-end   shards on disk -> loader workers (decode, crop, flip) -> device
                   augmentation -> step; the same function as (a)
  (c) 10-view eval crops/s of `evaluate(views=10)` over the holdout split (samples x 10 / s)

    python bench/train_throughput.py --shards shards/imagenet             # CUDA defaults
    python bench/train_throughput.py --shards demo/shards --device cpu    # small CPU defaults
"""
from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import torch

from train.augment import DeviceAugment, input_stats
from train.data import EvalShards, SampleRules, TrainStream, iterate_train_batches, make_loader
from train.dataset import load_dataset
from train.distributed import Dist
from train.device import autocast_for, resolve_precision
from train.loop import evaluate, train_one_epoch
from train.model import build_model
from train.optim import build_optimizer


def timed_steps(model, opt, batches, steps, warmup, norm, device, amp) -> float:
    gen = torch.Generator().manual_seed(0)
    train_one_epoch(model, opt, batches, steps=warmup, augment=norm, generator=gen, device=device, amp=amp, d=Dist(),
                    epoch=0)  # compile, caches
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    m = train_one_epoch(model, opt, batches, steps=steps, augment=norm, generator=gen, device=device, amp=amp, d=Dist(),
                        epoch=1)
    if device.type == "cuda":
        torch.cuda.synchronize()
    assert m["loss"] == m["loss"], "loss is NaN"
    return steps / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", type=Path, required=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=None, help="[128 on cuda, 16 on cpu]")
    ap.add_argument("--steps", type=int, default=None, help="timed steps [200 on cuda, 4 on cpu]")
    ap.add_argument("--warmup", type=int, default=None, help="[30 on cuda, 1 on cpu]")
    ap.add_argument("--workers", type=int, default=None, help="loader workers [cores - 1]")
    ap.add_argument("--decode", choices=["worker", "device", "both"], default=None,
                    help="where (b) decodes JPEGs [both on cuda, worker on cpu]")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--eval-batches", type=int, default=None, help="[20 on cuda, 2 on cpu]")
    args = ap.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    batch = args.batch_size or (128 if cuda else 16)
    steps, warmup = args.steps or (200 if cuda else 4), args.warmup or (30 if cuda else 1)
    workers = args.workers if args.workers is not None else max(1, (torch.multiprocessing.cpu_count() or 2) - 1)
    use_compile = args.compile if args.compile is not None else cuda
    args.decode = args.decode or ("both" if cuda else "worker")
    manifest, stats = load_dataset(args.shards)
    rules = SampleRules(manifest.patch_size, manifest.num_classes)
    amp = autocast_for(device, resolve_precision(device, args.precision))
    norm = DeviceAugment(input_stats(stats, "mean", 224), 0.1, device)
    torch.manual_seed(0)
    model = build_model(manifest.num_classes).to(device, memory_format=torch.channels_last)
    opt = build_optimizer(model, "sgd", 0.01, 0.9, 0.0005)
    net = torch.compile(model) if use_compile else model
    if cuda:
        torch.backends.cudnn.benchmark = True

    synthetic = (torch.randint(0, 256, (batch, 3, 224, 224), dtype=torch.uint8, device=device),
                 torch.randint(0, manifest.num_classes, (batch,), device=device),
                 torch.rand(batch, device=device) < 0.5)
    a = timed_steps(net, opt, itertools.repeat(synthetic), steps, warmup, norm, device, amp) * batch

    b = {}
    for decode in (["worker", "device"] if args.decode == "both" else [args.decode]):
        stream = TrainStream(manifest.shard_paths(args.shards, "train"), rules=rules, crop=224, buffer=2000,
                             seed=0, batch_size=batch, decode=decode)
        batches = iterate_train_batches(stream, workers, cuda, device)
        b[decode] = timed_steps(net, opt, batches, steps, warmup, norm, device, amp) * batch
        batches.close()

    eval_batch = 4 * batch
    n_eval = eval_batch * (args.eval_batches or (20 if cuda else 2))
    holdout = make_loader(EvalShards(manifest.shard_paths(args.shards, "holdout") * 50, rules, limit=n_eval),
                          eval_batch, 1, cuda)
    evaluate(model, itertools.islice(holdout, 1), norm, device=device, crop=224, views=10, amp=amp, d=Dist())  # warm-up
    start = time.perf_counter()
    m = evaluate(model, holdout, norm, device=device, crop=224, views=10, amp=amp, d=Dist())
    if cuda:
        torch.cuda.synchronize()
    c = m["samples"] * 10 / (time.perf_counter() - start)

    name = torch.cuda.get_device_name(device) if cuda else "cpu"
    print(f"device {name}, torch {torch.__version__}, batch {batch}, precision {args.precision}, "
          f"compile {use_compile}, channels_last, loader workers {workers}, {steps} timed steps")
    print("| measurement | rate |\n|---|---|")
    print(f"| (a) model-only training | {a:,.0f} images/s |")
    for decode, rate in b.items():
        print(f"| (b) end-to-end training from shards, --decode {decode} | {rate:,.0f} images/s |")
        print(f"| (b)/(a), --decode {decode} | {rate / a:.2f} |")
    print(f"| (c) 10-view evaluation (eager model) | {c:,.0f} crops/s |")


if __name__ == "__main__":
    main()
