"""Figure 1 of the paper (§3.1): "A four-layer convolutional neural network with ReLUs
(solid line) reaches a 25% training error rate on CIFAR-10 six times faster than an
equivalent network with tanh neurons (dashed line). The learning rates for each network
were chosen independently to make training as fast as possible. No regularization of any
kind was employed."

The network is the one Krizhevsky shipped with the 2011 cuda-convnet for "26% error on
CIFAR-10 in 80 seconds" (example-layers/layers-80sec.cfg): conv 32 5x5 -> max-pool 3/2 ->
conv 32 5x5 -> avg-pool 3/2 -> conv 64 5x5 -> avg-pool 3/2 -> fc 10, pools sized with a
ceiling (layer.py: outputsX = ceil((imgSize - sizeX) / stride) + 1, so 32 -> 16 -> 8 -> 4)
and averages over the window's in-bounds pixels (conv_util.cuh: regionSize). That file also
has a 64-unit fully-connected layer before fc10; Figure 1's network has four layers, so it
goes. The nonlinearity is the only difference between the two networks; no dropout, no
weight decay, no augmentation. SGD with momentum 0.9 and biases at twice the weights' rate
(layer-params-80sec.cfg: momW 0.9, epsB = 2 epsW), batch 128, per-channel mean subtracted.

Training error is measured in eval mode on a fixed 10,000-image subset of the training set
every half epoch; "epochs to 25%" interpolates linearly between those points.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from shared.json_files import write_json_atomic
from shared.manifest import read_manifest
from shared.output_paths import check_output_folder
from shared.stats import read_stats

from .loader import SampleRules
from .figures import load_images
from .optim import build_optimizer

TARGET = 0.25  # Figure 1: "reaches a 25% training error rate"
PAPER_RATIO = 6.0  # "six times faster"
BATCH = 128
EVAL_IMAGES = 10_000
EVALS_PER_EPOCH = 2
NONLINEARITIES = {"relu": torch.relu, "tanh": torch.tanh}
# mean-loss SGD rates; the sweep extends the grid (halving or doubling) while its best is at an edge
SWEEP_RATES = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05)
# Chosen by the sweep (docs/figure1.md; docs/figure1.json): lowest training error after 2 epochs.
QUICK_RATES = {"relu": 0.001, "tanh": 0.01}
# epoch budgets of the final runs: the paper's curves reach 25% near 6 (ReLU) and 35 (tanh) epochs
MAX_EPOCHS = {"relu": 20.0, "tanh": 60.0}


class FourLayerNet(nn.Module):
    def __init__(self, nonlinearity: str):
        super().__init__()
        self.act = NONLINEARITIES[nonlinearity]
        self.conv1 = nn.Conv2d(3, 32, 5, padding=2)  # 32x32x32
        self.conv2 = nn.Conv2d(32, 32, 5, padding=2)  # 32x16x16 (after pool1)
        self.conv3 = nn.Conv2d(32, 64, 5, padding=2)  # 64x8x8 (after pool2)
        self.fc = nn.Linear(64 * 4 * 4, 10)  # after pool3: 64x4x4
        self.max_pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.avg_pool = nn.AvgPool2d(3, 2, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.max_pool(self.conv1(x)))  # 80sec: the nonlinearity on pool1's output
        x = self.avg_pool(self.act(self.conv2(x)))
        x = self.avg_pool(self.act(self.conv3(x)))
        return self.fc(x.flatten(1))


def init_like_80sec(model: FourLayerNet) -> None:
    """layers-80sec.cfg's initW: conv1 1e-4, conv2 and conv3 0.01, the fc layer 0.1; biases 0."""
    for layer, std in ((model.conv1, 1e-4), (model.conv2, 0.01), (model.conv3, 0.01), (model.fc, 0.1)):
        nn.init.normal_(layer.weight, 0.0, std)
        nn.init.zeros_(layer.bias)


def load_training_set(shards: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """All training images of the dataset (train and holdout splits: no model selection
    here), as normalised float32 (N, 3, H, W), and their labels."""
    manifest, stats = read_manifest(shards), read_stats(shards)
    rules = SampleRules(manifest.patch_size, manifest.num_classes)
    if manifest.num_classes != 10:
        raise ValueError(f"{shards}: Figure 1 is about CIFAR-10 (10 classes), this dataset has {manifest.num_classes}")
    urls = [u for split in ("train", "holdout") for u in manifest.shard_paths(shards, split)]
    total = manifest.splits["train"].samples + manifest.splits["holdout"].samples
    images, labels = load_images(urls, rules, limit=total)
    x = images.float()
    x -= torch.tensor(stats.mean_rgb).view(1, 3, 1, 1)
    # channels_last: 1,762 vs 1,311 training images/s for this net on the 2-core CPU machine
    return x.contiguous(memory_format=torch.channels_last), labels


@torch.no_grad()
def training_error(model, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    wrong = sum(int((model(x[i:i + 1000]).argmax(1) != y[i:i + 1000]).sum()) for i in range(0, len(y), 1000))
    model.train()
    return wrong / len(y)


@dataclass
class Curve:
    nonlinearity: str
    lr: float
    seed: int
    epochs: list[float]
    errors: list[float]
    seconds: float

    def epochs_to(self, target: float = TARGET) -> float:
        """First crossing of `target`, linearly interpolated; inf if never reached."""
        for (e0, r0), (e1, r1) in zip(zip(self.epochs, self.errors), zip(self.epochs[1:], self.errors[1:])):
            if r1 <= target < r0:
                return e0 + (r0 - target) / (r0 - r1) * (e1 - e0)
        return 0.0 if self.errors and self.errors[0] <= target else math.inf


def train_curve(x, y, nonlinearity: str, lr: float, seed: int, max_epochs: float, stop_below: float | None,
                desc: str) -> Curve:
    """SGD on (x, y) from the 80sec initialisation; training error every half epoch."""
    torch.manual_seed(seed)
    model = FourLayerNet(nonlinearity)
    init_like_80sec(model)
    model = model.to(x.device, memory_format=torch.channels_last)  # x lives on the GPU if there is one
    opt = build_optimizer(model, "sgd", lr, momentum=0.9, weight_decay=0.0, bias_lr_mult=2.0)
    g = torch.Generator().manual_seed(seed)
    probe = torch.randperm(len(y), generator=g)[:EVAL_IMAGES].to(x.device)
    steps_per_eval = max(1, len(y) // BATCH // EVALS_PER_EPOCH)
    curve = Curve(nonlinearity, lr, seed, [0.0], [training_error(model, x[probe], y[probe])], 0.0)
    start = time.perf_counter()
    bar = tqdm(total=int(max_epochs * EVALS_PER_EPOCH), desc=desc, unit="half-epoch", leave=False, file=sys.stderr)
    order = torch.randperm(len(y), generator=g)
    position = 0
    while curve.epochs[-1] < max_epochs:
        for _ in range(steps_per_eval):
            if position + BATCH > len(y):
                order, position = torch.randperm(len(y), generator=g), 0
            idx = order[position:position + BATCH].to(x.device)
            position += BATCH
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if not math.isfinite(loss.item()):
            break  # diverged: the rate is too high (the sweep reports it)
        curve.epochs.append(curve.epochs[-1] + 1 / EVALS_PER_EPOCH)
        curve.errors.append(training_error(model, x[probe], y[probe]))
        bar.update(1)
        bar.set_postfix(error=f"{curve.errors[-1]:.3f}")
        if stop_below is not None and curve.errors[-1] <= stop_below:
            break
    bar.close()
    curve.seconds = time.perf_counter() - start
    return curve


def sweep(x, y, rates: dict[str, list[float]], budget_epochs: float, extensions: int = 3) -> dict[str, list[Curve]]:
    """Short runs ranking each nonlinearity's rates by the training error they reach; while
    the best rate is the grid's smallest (largest), the grid grows by halving (doubling)."""
    out = {}
    for nl, lrs in rates.items():
        run = lambda lr: train_curve(x, y, nl, lr, 0, budget_epochs, None, f"sweep {nl} lr {lr:g}")  # noqa: E731
        curves = [run(lr) for lr in sorted(lrs)]
        for _ in range(extensions):
            best = best_rate(curves)
            if best == curves[0].lr:
                curves.insert(0, run(best / 2))
            elif best == curves[-1].lr:
                curves.append(run(best * 2))
            else:
                break
        out[nl] = curves
    return out


def best_rate(curves: list[Curve]) -> float:
    # errors are error rates, finite even for a diverged run (train_curve stops before a NaN model is measured)
    return min(curves, key=lambda c: (c.epochs_to(), c.errors[-1])).lr


def ratio_summary(curves: list[Curve]) -> dict:
    """tanh / ReLU epochs to 25%, paired by seed; a curve that never got there within its
    epoch budget is null in the JSON (strict JSON has no Infinity) and leaves its pair out."""
    relu = [c.epochs_to() for c in curves if c.nonlinearity == "relu"]
    tanh = [c.epochs_to() for c in curves if c.nonlinearity == "tanh"]
    ratios = [t / r for t, r in zip(tanh, relu) if math.isfinite(t) and 0 < r < math.inf]
    finite = lambda values: [v if math.isfinite(v) else None for v in values]  # noqa: E731
    return {"relu_epochs_to_25": finite(relu), "tanh_epochs_to_25": finite(tanh), "ratios": ratios,
            "ratio_mean": float(np.mean(ratios)) if ratios else None,
            "ratio_min": min(ratios, default=None), "ratio_max": max(ratios, default=None),
            "pairs_not_reached": len(relu) - len(ratios), "paper_ratio": PAPER_RATIO}


def describe_ratio(summary: dict) -> str:
    if summary["ratio_mean"] is None:
        return "tanh/ReLU: no seed reached 25% with both nonlinearities (paper: 6x)"
    left_out = f"; {summary['pairs_not_reached']} seed(s) never reached 25%" if summary["pairs_not_reached"] else ""
    return (f"tanh/ReLU epochs to 25%: {summary['ratio_mean']:.1f}x "
            f"(range {summary['ratio_min']:.1f}-{summary['ratio_max']:.1f}{left_out}; paper: 6x)")


def plot(curves: list[Curve], path: Path, summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for c in curves:
        ax.plot(c.epochs, c.errors, "-" if c.nonlinearity == "relu" else "--", color="black", linewidth=1,
                label=f"{c.nonlinearity} (lr {c.lr:g})" if c.seed == curves[0].seed else None)
    ax.axhline(TARGET, color="grey", linewidth=0.6)
    ax.set_xlabel("Epochs")
    ax.set_ylabel("Training error rate")
    ax.set_ylim(0, 0.75)
    ax.set_title(describe_ratio(summary), fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def figure1(shards: Path, out: Path, seeds: list[int], rates: dict[str, float] | None,
            sweep_rates: dict[str, list[float]], sweep_epochs: float, max_epochs: dict[str, float]) -> dict:
    """The whole experiment: optional sweep, then each seed for each nonlinearity; writes
    figure1.png and figure1.json into `out`."""
    check_output_folder(out, "--out", input_folders=[shards])
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # CPU by default, a GPU if present
    x, y = (t.to(device) for t in load_training_set(shards))
    start = time.perf_counter()
    result = {"shards": str(shards), "images": len(y), "seeds": seeds, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "device": str(device), "complete": False}
    if rates is None:
        swept = sweep(x, y, sweep_rates, sweep_epochs)
        rates = {nl: best_rate(curves) for nl, curves in swept.items()}
        result["sweep"] = {nl: [c.__dict__ for c in cs] for nl, cs in swept.items()}
    result["rates"], curves = rates, []
    for seed in seeds:
        for nl in ("relu", "tanh"):
            curves.append(train_curve(x, y, nl, rates[nl], seed, max_epochs[nl], TARGET - 0.02, f"{nl} seed {seed}"))
            # each finished curve is on disk at once: a killed 70-minute run keeps what it measured
            result.update(curves=[c.__dict__ for c in curves], wall_s=round(time.perf_counter() - start, 1))
            write_json_atomic(out / "figure1.json", result)
    result.update(summary=ratio_summary(curves), complete=True)
    write_json_atomic(out / "figure1.json", result)
    plot(curves, out / "figure1.png", result["summary"])
    return result
