"""The CPU LRN kernels (train/lrn.py) of this tree against another commit's, side by side in one
process: forward + backward of the paper's two LRN layers at batch 128, channels_last, round
robin, so that a shared machine's noise falls on both alike.

    python bench/lrn_kernels.py --against 2243889          # bf16 (the CPU default where supported)
    python bench/lrn_kernels.py --against HEAD~1 --dtype fp32

Why it exists: a rewrite of the kernels (flat arrays indexed at an offset instead of row-block
slices) went in untimed and cost them a third, ~7% of a training step, found only when an
epoch ran slower than an older one (docs/performance.md). Pause any training run first.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from train.architecture import LRN_BETA, LRN_K, LRN_SCALE, LRN_SIZE  # noqa: E402

# conv1's and conv2's outputs at the paper's 224 crops (Figure 2), both halves of the towers
SHAPES = {"conv1 LRN": (96, 55, 55), "conv2 LRN": (256, 27, 27)}


def load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def kernels_at(commit: str, folder: Path):
    """train/lrn.py as `commit` has it, imported under its own name (numba compiles it anew)."""
    source = subprocess.run(["git", "show", f"{commit}:train/lrn.py"], cwd=ROOT, capture_output=True, text=True)
    if source.returncode:
        raise SystemExit(f"git show {commit}:train/lrn.py: {source.stderr.strip()}")
    path = folder / "lrn_other.py"
    path.write_text(source.stdout)
    return load_module(path, "lrn_other")


def time_ms(module, x: torch.Tensor, grad: torch.Tensor, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        y = module.local_response_norm(x, LRN_SCALE / LRN_SIZE, 2, LRN_SIZE, LRN_K, LRN_BETA)
        y.backward(grad)
        x.grad = None
    return (time.perf_counter() - start) / repeats * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--against", required=True, help="a commit whose train/lrn.py to compare with")
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--batch-size", type=int, default=128, help="§5's 128")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5, help="forward + backward passes per timing")
    args = ap.parse_args()
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    with tempfile.TemporaryDirectory() as tmp:
        contenders = {args.against: kernels_at(args.against, Path(tmp)),
                      "this tree": load_module(ROOT / "train" / "lrn.py", "lrn_this")}
        print(f"| layer ({args.dtype}, batch {args.batch_size}) | " + " | ".join(f"{k} ms" for k in contenders)
              + f" | this tree / {args.against} |")
        print("|---|" + "---|" * (len(contenders) + 1))
        for layer, (c, h, w) in SHAPES.items():
            torch.manual_seed(0)
            x = torch.randn(args.batch_size, c, h, w).to(dtype).contiguous(memory_format=torch.channels_last)
            grad = torch.randn_like(x)
            x.requires_grad_()
            runs = {name: [] for name in contenders}
            for module in contenders.values():  # compile both before any timing
                time_ms(module, x, grad, 1)
            for _ in range(args.rounds):
                for name, module in contenders.items():
                    runs[name].append(time_ms(module, x, grad, args.repeats))
            medians = {name: statistics.median(times) for name, times in runs.items()}
            cells = " | ".join(f"{medians[n]:.1f} ({min(t):.1f}-{max(t):.1f})" for n, t in runs.items())
            print(f"| {layer} | {cells} | {medians['this tree'] / medians[args.against]:.2f} |")


if __name__ == "__main__":
    main()
