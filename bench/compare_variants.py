"""Does each variant start learning real images? The defaults, then one change at a time,
several seeds each, all with §5's SGD -- the production model, stream, augmentation and
optimizer, on CPU-sized budgets.

    python bench/compare_variants.py --shards /work/data/cifar10-256 --steps 200 --batch-size 32 \\
        --seeds 1 2 3 --variants defaults init=paper lrn=text dropout_mode=inverted

A variant is `defaults` or comma-separated TrainConfig overrides (`lrn=text,init=paper`).
Prints, per variant and seed, the mean training loss of each `--every` steps and the holdout
error@1 (centre crop, the first `--holdout` holdout images) at each `--eval-every` steps,
then a Markdown table. The question is narrow: does a variant learn for every seed within
the budget, not which is best after 90 epochs.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import torch

from train.augment import DeviceAugment
from train.device import Compute
from train.config import TrainConfig
from train.loader import EvalShards, SampleRules, TrainStream, iterate_train_batches
from train.dataset_folder import dataset_input_stats, load_dataset
from train.distributed import Dist
from train.evaluation import evaluate
from train.loop import seed_epoch, train_one_epoch
from train.model import build_model
from train.optim import build_optimizer

CPU = torch.device("cpu")


def parse_variant(text: str) -> dict:
    if text == "defaults":
        return {}
    types = {f.name: f.type for f in fields(TrainConfig)}
    out = {}
    for pair in text.split(","):
        key, _, value = pair.partition("=")
        if key not in types:
            raise SystemExit(f"variant {text!r}: unknown field {key!r}")
        out[key] = float(value) if "float" in str(types[key]) else int(value) if "int" in str(types[key]) else value
    return out


def holdout_batches(shards: Path, manifest, n: int, batch: int = 100) -> list:
    """Every k-th holdout image, n in all (holdout shards are stored in class order)."""
    data = EvalShards(manifest.shard_paths(shards, "holdout"), SampleRules(manifest.patch_size, manifest.num_classes))
    stride = max(1, manifest.splits["holdout"].samples // n)
    images, labels = zip(*(s for i, s in enumerate(data) if i % stride == 0 and i // stride < n))
    images, labels = torch.stack(images), torch.tensor(labels)
    return [(images[i:i + batch], labels[i:i + batch]) for i in range(0, len(labels), batch)]


def run_one(cfg: TrainConfig, manifest, stats, holdout: list, args) -> dict:
    torch.manual_seed(cfg.seed)
    model = build_model(manifest.num_classes, cfg.architecture(), cfg.init).to(memory_format=torch.channels_last)
    opt = build_optimizer(model, "sgd", cfg.learn_rate, cfg.momentum, cfg.weight_decay, cfg.bias_lr_mult)
    augment = DeviceAugment(dataset_input_stats(cfg.shards, manifest, stats, cfg.normalize, cfg.crop), cfg.pca_std, CPU)
    stream = TrainStream.of_train_split(manifest, cfg.shards, crop=cfg.crop, buffer=cfg.shuffle_buffer, seed=cfg.seed,
                                        steps=args.steps, batch_size=cfg.batch_size)
    batches = iterate_train_batches(stream, args.workers, False)
    generator = seed_epoch(cfg.seed, 0, 0)
    compute = Compute(CPU, torch.autocast("cpu", enabled=False), Dist(), augment)
    losses, errors, start = {}, {}, time.perf_counter()
    for chunk in range(args.steps // args.every):
        step = (chunk + 1) * args.every
        try:
            losses[step] = train_one_epoch(model, opt, batches, compute, steps=args.every, generator=generator,
                                           epoch=chunk)["loss"]
        except FloatingPointError:  # diverged: the loop refuses non-finite losses
            losses[step] = math.nan
            break
        if step % args.eval_every == 0:
            errors[step] = evaluate(model, holdout, compute, crop=cfg.crop, views=1)["error@1"]
    batches.close()
    return {"losses": losses, "errors": errors, "seconds": time.perf_counter() - start}


def table(results: list[dict], args, classes: int) -> str:
    loss_steps = [s for s in range(args.every, args.steps + 1, args.every) if s % args.eval_every == 0]
    head = (["variant", "seed"] + [f"loss @{s}" for s in loss_steps]
            + [f"holdout err@1 @{s}" for s in loss_steps])
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [r["variant"], str(r["seed"])]
        cells += [f"{r['losses'].get(s, math.nan):.3f}" for s in loss_steps]
        cells += [f"{r['errors'][s]:.3f}" if s in r["errors"] else "diverged" for s in loss_steps]
        rows.append("| " + " | ".join(cells) + " |")
    chance = 1 - 1 / classes
    rows.append(f"\nchance: loss {math.log(classes):.3f}, error@1 {chance:.3f}")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", type=Path, required=True)
    ap.add_argument("--variants", nargs="+", default=["defaults", "init=paper", "lrn=text", "dropout_mode=inverted"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--every", type=int, default=25, help="steps per reported loss")
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--holdout", type=int, default=1000, help="holdout images evaluated")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="also write every result as JSON lines here")
    args = ap.parse_args()
    manifest, stats = load_dataset(args.shards)
    holdout = holdout_batches(args.shards, manifest, args.holdout)
    results = []
    for variant in args.variants:
        for seed in args.seeds:
            cfg = replace(TrainConfig(shards=args.shards, batch_size=args.batch_size, seed=seed, shuffle_buffer=500),
                          **parse_variant(variant)).resolved(manifest.patch_size)
            r = {"variant": variant, "seed": seed, **run_one(cfg, manifest, stats, holdout, args)}
            results.append(r)
            print(json.dumps(r), flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(r) + "\n")
    print(f"{args.shards}: {manifest.num_classes} classes, §5 SGD, batch "
          f"{args.batch_size}, {args.steps} steps, torch {torch.__version__}, {torch.get_num_threads()} threads",
          file=sys.stderr)
    print(table(results, args, manifest.num_classes))


if __name__ == "__main__":
    main()
