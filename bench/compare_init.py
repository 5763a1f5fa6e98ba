"""Which §5 initialisation trains: the paper's biases of 1 or Caffe's 0.1, same everything else.

    python bench/compare_init.py --shards demo/shards --steps 60

Trains each scheme from the same seed on the same batches (the production stream,
augmentation and optimizer) and prints the training loss every few steps and the
holdout error at the end, side by side.
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import torch

from train.augment import Normalizer
from train.config import TrainConfig
from train.data import EvalShards, TrainStream, iterate_train_batches, make_loader
from train.loop import evaluate, load_dataset, train_one_epoch
from train.distributed import Dist
from train.model import build_model
from train.optim import build_optimizer


def run(scheme: str, args, manifest, stats) -> tuple[list[float], dict]:
    torch.manual_seed(args.seed)
    cfg = TrainConfig(shards=args.shards, optimizer=args.optimizer).resolved()
    lr = args.learn_rate or cfg.learn_rate
    model = build_model(manifest.num_classes, cfg.dropout, scheme).to(memory_format=torch.channels_last)
    opt = build_optimizer(model, args.optimizer, lr, cfg.momentum, cfg.weight_decay)
    norm = Normalizer(stats, cfg.pca_std, False, torch.device("cpu"))
    stream = TrainStream(manifest.shard_paths(args.shards, "train"), 224, 200, args.seed, batch_size=args.batch_size)
    batches = iterate_train_batches(stream, args.workers, False)
    gen = torch.Generator().manual_seed(args.seed)
    losses = []
    for chunk in range(args.steps // args.every):
        try:
            m = train_one_epoch(model, opt, batches, args.every, norm, gen, torch.device("cpu"),
                                torch.autocast("cpu", enabled=False), Dist(), chunk)
        except FloatingPointError:  # diverged: the loop refuses NaN losses
            losses += [float("nan")] * (args.steps // args.every - chunk)
            return losses, {"error@1": float("nan")}
        losses.append(m["loss"])
    holdout = make_loader(EvalShards(manifest.shard_paths(args.shards, "holdout")), 64, 1, False)
    held = evaluate(model, holdout, norm, torch.device("cpu"), 224, 1,
                    torch.autocast("cpu", enabled=False), Dist())
    return losses, held


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--optimizer", default="sgd")
    ap.add_argument("--learn-rate", type=float, default=None)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=12331)
    args = ap.parse_args()
    manifest, stats = load_dataset(TrainConfig(shards=args.shards))
    results = {s: run(s, args, manifest, stats) for s in ("paper", "caffe")}
    steps = [args.every * (i + 1) for i in range(args.steps // args.every)]
    print(f"{args.optimizer}, batch {args.batch_size}, {manifest.num_classes} classes "
          f"(chance loss {torch.log(torch.tensor(float(manifest.num_classes))):.3f})")
    print("| step | " + " | ".join(f"loss, bias {'1 (paper)' if s == 'paper' else '0.1 (caffe)'}" for s in results) + " |")
    print("|---|---|---|")
    for i, step in enumerate(steps):
        print(f"| {step} | " + " | ".join(f"{results[s][0][i]:.3f}" for s in results) + " |")
    print("| holdout error@1 | " + " | ".join(f"{results[s][1]['error@1']:.3f}" for s in results) + " |")


if __name__ == "__main__":
    main()
