"""The prep stage's one config. Defaults are the paper's values where it has one; each
field's help (shown by `alexnet-prep shard --help`) names its source and unit."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from shared.datasets import KNOWN
from shared.limits import DEFAULT_MAX_PIXELS, MAX_PATCH_SIZE, RESAMPLERS
from .forms import TASKS as FORM_TASKS

TASKS = FORM_TASKS  # what --form (alias --task) accepts: the forms registry's (prep/forms/__init__.py)

# Holdout sizes of the PyTorch replication (shared/datasets.py), capped at 10% of train.
DEFAULT_HOLDOUT = {name: d.holdout for name, d in KNOWN.items() if d.holdout is not None}
HOLDOUT_MAX_FRACTION = 0.10


# What each option may be, as `shard --help` shows it and as PrepConfig enforces it
RANGES = {"task": f"one of {', '.join(TASKS)}", "size": f"8..{MAX_PATCH_SIZE}", "quality": "1..100",
          "resample": f"one of {', '.join(RESAMPLERS)}", "shard_size": "1..1,000,000",
          "holdout": ">= 1 (alexnet-train needs a holdout)", "seed": ">= 0", "max_pixels": "1..10^10",
          "workers": "1..1024"}


def option(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class PrepConfig:
    src: Path = option(Path("."), "The raw dataset: a folder or the archive as downloaded (its form is detected).")
    task: str | None = option(None, "The input form, where detection should not decide (and mnist, fashion-mnist, "
                                    "cifar10, cifar100: downloaded into --src when missing).")
    out: Path | None = option(None, "Output folder; default shards/<task>.")
    size: int = option(256, "§2: shorter side rescaled to this many px, central square patch kept.")
    quality: int = option(90, "JPEG quality of the stored patches (docs/performance.md: size vs PSNR).")
    resample: str = option("bilinear", f"Resampling filter, antialiased like torchvision's: {', '.join(RESAMPLERS)}.")
    shard_size: int = option(1000, "Samples per shard; ImageNet gives ~1,281 train shards.")
    holdout: int | None = option(None, "Holdout images taken from train; default per task, at most 10%.")
    seed: int = option(0, "Seed of the holdout draw and the train shuffle across shards.")
    max_pixels: int = option(DEFAULT_MAX_PIXELS, "Images with more pixels (read from the header) are skipped, never "
                                          "decoded; ImageNet's largest has ~30 million.")
    workers: int = option(os.cpu_count() or 1, "Worker processes; default all cores.")
    part: str | None = option(None, "k/N: write every N-th shard (k = 1..N) on this machine.")
    allow_skips: bool = option(False, "Exit 0 even if some inputs were skipped.")
    overwrite: bool = option(False, "Rebuild an existing complete dataset.")

    def __post_init__(self):
        self.src = Path(self.src)
        self.out = Path(self.out) if self.out is not None else None
        rules = [("task", self.task is None or self.task in TASKS),
                 ("size", 8 <= self.size <= MAX_PATCH_SIZE),
                 ("quality", 1 <= self.quality <= 100),
                 ("resample", self.resample in RESAMPLERS),
                 ("shard_size", 1 <= self.shard_size <= 1_000_000),
                 ("holdout", self.holdout is None or self.holdout >= 1),
                 ("seed", self.seed >= 0),
                 ("max_pixels", 1 <= self.max_pixels <= 10**10),
                 ("workers", 1 <= self.workers <= 1024)]
        for name, ok in rules:
            if not ok:
                flag = {"task": "--form"}.get(name, f"--{name.replace('_', '-')}")
                raise ValueError(f"{flag} {getattr(self, name)!r}: expected {RANGES[name]}")
        self.parse_part()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["src"], d["out"] = str(self.src), str(self.out) if self.out else None
        return d

    def parse_part(self) -> tuple[int, int] | None:
        if self.part is None:
            return None
        try:
            k, n = (int(x) for x in self.part.split("/"))
        except ValueError:
            raise ValueError(f"--part {self.part!r}: expected k/N with integers, e.g. 1/4") from None
        if not (n >= 1 and 1 <= k <= n):
            raise ValueError(f"--part {self.part!r}: need 1 <= k <= N")
        return k, n
