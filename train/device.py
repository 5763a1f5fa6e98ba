"""Where and in what precision the network runs: the device, bf16 autocast where the hardware
has it, and the CPU settings that let the 2-core machine run the paper's net at its own
ceiling (docs/performance.md, "Training at this CPU's limit")."""
from __future__ import annotations

import ctypes
import os
import sys
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch

# glibc mallopt(3) parameters
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


@dataclass(frozen=True)
class Compute:
    """Where and how the network runs, what travels with every training and evaluation call: the
    device, its autocast context (train/device.py's precision), the ranks, and the on-device
    input step (§2's mean subtraction; §4.1's flips and lighting while training)."""
    device: torch.device
    amp: object
    d: object  # train/distributed.py's Dist
    augment: object  # train/augment.py's DeviceAugment


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available here; use --device cpu")
    return torch.device(name)


def default_workers(device: torch.device) -> int:
    """Loader processes per rank when --workers is not given. On the 2-core CPU one worker
    beside torch's two threads trains as fast as the model alone (bench/train_throughput.py (f):
    docs/performance.md); CUDA keeps 4."""
    return 1 if device.type == "cpu" else 4


# Cores at or below which a CPU evaluation decodes in the main process (see eval_workers)
SMALL_CPU = 4


def eval_workers(workers: int, device: torch.device) -> int:
    """Loader processes of a CPU evaluation. On a small CPU, none: a worker forked from the
    training process shares its heap (GBs, kept by the allocator setting) copy-on-write, so
    the first batches of every evaluation paid ~420,000 page faults, 4-6 s (holdout or
    10-view, measured on the 2-core machine with 256-image batches: 16.9-18.7 s against 12.4
    s), while decoding in line costs 1 JPEG per forward crop (0.3 ms against ~5 ms)."""
    return 0 if device.type == "cpu" and (os.cpu_count() or 1) <= SMALL_CPU else workers


def cpu_bf16_units() -> list[str]:
    """The CPU's bf16 matrix units as torch sees them (oneDNN runs bf16 convolutions and
    matmuls on these; without them bf16 is emulated and slower than fp32)."""
    probes = (("AMX", "_is_amx_tile_supported"), ("AVX512-BF16", "_is_avx512_bf16_supported"))
    return [name for name, probe in probes if getattr(torch.cpu, probe, lambda: False)()]


@dataclass(frozen=True)
class Precision:
    used: str  # "bf16" (autocast) or "fp32"
    requested: str  # --precision
    why: str

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_precision(device: torch.device, requested: str) -> Precision:
    """--precision auto: bf16 autocast on CUDA and on a CPU with bf16 units, fp32 elsewhere.
    Under autocast the weights, their gradients and the optimizer's state stay fp32, and so
    do the loss (autocast's fp32 list), the LRN's sum and power (train/lrn.py) and the
    softmax of the evaluation (train/evaluation.py)."""
    if requested != "auto":
        return Precision(requested, requested, "--precision " + requested)
    if device.type == "cuda":
        return Precision("bf16", requested, "CUDA")
    units = cpu_bf16_units() if device.type == "cpu" else []
    if units:
        return Precision("bf16", requested, f"the CPU has {' and '.join(units)}")
    return Precision("fp32", requested, f"{device.type} without bf16 units (AMX or AVX512-BF16)")


def autocast_for(device: torch.device, precision: Precision):
    return torch.autocast(device.type, dtype=torch.bfloat16) if precision.used == "bf16" else nullcontext()


def keep_freed_memory() -> bool:
    """glibc serves every allocation over 32 MB (its mmap threshold's ceiling) with a fresh
    mmap and unmaps it on free, so each of conv1's 37 MB activations at batch 32 (150 MB at
    128) is page-faulted in again at every step. Keeping freed memory in the heap instead
    (mmap off, no trim: what jemalloc and tcmalloc do, and what PyTorch's CPU tuning guide
    recommends them for) measured 1.5-2x the training rate on the 2-core machine, for 8% more
    peak memory. Returns whether the setting took (glibc only)."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def prepare_device(device: torch.device) -> dict:
    """Process-wide settings for `device`, as recorded in config.json."""
    if device.type != "cpu":
        return {}
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_bf16_units": cpu_bf16_units(),
            "threads": torch.get_num_threads(), "malloc_keeps_freed_memory": keep_freed_memory()}


def describe(device: torch.device, precision: Precision, settings: dict) -> str:
    text = f"{device}, {precision.used} ({precision.why})"
    if settings:
        text += f", {settings['threads']} threads"
    return text


def warn_slow_bf16(device: torch.device, precision: Precision) -> None:
    if device.type == "cpu" and precision.used == "bf16" and not cpu_bf16_units():
        print("WARNING: --precision bf16 on a CPU without bf16 units (AMX or AVX512-BF16): emulated, slower "
              "than fp32", file=sys.stderr)
