"""bf16 autocast against fp32 on real data: the same short training runs with each precision and
several seeds; bf16 changes nothing in effect if its holdout error lies within the seeds' spread.

    alexnet-prep shard --src <train/ + val/ of CIFAR-10> --out /work/data/cifar10-96 --size 96
    alexnet-prep stats --shards /work/data/cifar10-96
    python bench/precision_numerics.py --shards /work/data/cifar10-96 --epochs 2

Each run is `alexnet-train` with the paper's defaults and only --precision, --seed, --epochs
(and --workers) set, in its own process; the table gives holdout error@1 per epoch and the final
centre and 10-view val error of each run, then the mean and spread per precision.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(shards: Path, logdir: Path, precision: str, seed: int, args) -> dict:
    name = f"{precision}-seed{seed}"
    cmd = [sys.executable, "-m", "train.cli", "--shards", str(shards), "--precision", precision, "--seed", str(seed),
           "--epochs", str(args.epochs), "--no-figures", "--logdir", str(logdir), "--run-name", name]
    if args.workers is not None:
        cmd += ["--workers", str(args.workers)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
    rows = [json.loads(line) for line in (logdir / name / "metrics.jsonl").read_text().splitlines()]
    results = json.loads((logdir / name / "results.json").read_text())
    return {"name": name, "holdout": [r["holdout"]["error@1"] for r in rows],
            "img_s": [r["train"]["images_per_s"] for r in rows], "val": results["error@1"],
            "val_centre": results["centre_error@1"], "wall_s": results["train_wall_s"]}


def spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} (range {min(values):.4f}-{max(values):.4f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--logdir", type=Path, default=None, help="keep the runs here [a temporary folder]")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        logdir = args.logdir or Path(tmp)
        runs = {p: [] for p in ("fp32", "bf16")}
        for seed in args.seeds:  # interleaved: both precisions see the same machine load
            for precision in runs:
                runs[precision].append(run(args.shards, logdir, precision, seed, args))
                print(f"  {runs[precision][-1]}", file=sys.stderr, flush=True)
    print(f"{args.shards}, {args.epochs} epochs per run, seeds {args.seeds}, the paper's defaults otherwise\n")
    epochs = " | ".join(f"holdout err@1 epoch {e}" for e in range(args.epochs))
    print(f"| run | {epochs} | val centre err@1 | val 10-view err@1 | img/s |")
    print("|---|" + "---|" * (args.epochs + 3))
    for precision, rs in runs.items():
        for r in rs:
            cells = " | ".join(f"{e:.4f}" for e in r["holdout"])
            print(f"| {r['name']} | {cells} | {r['val_centre']:.4f} | {r['val']:.4f} | "
                  f"{statistics.mean(r['img_s']):.0f} |")
    print("\n| precision | final holdout err@1 | val 10-view err@1 |\n|---|---|---|")
    for precision, rs in runs.items():
        print(f"| {precision} | {spread([r['holdout'][-1] for r in rs])} | {spread([r['val'] for r in rs])} |")


if __name__ == "__main__":
    main()
