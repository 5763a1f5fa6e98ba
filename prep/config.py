"""The prep stage's one config. Defaults are the paper's values where it has one."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from shared.manifest import TASKS as NAMED_TASKS

TASKS = NAMED_TASKS + ("folder",)  # layouts --task accepts

# Holdout sizes of the reference implementation, capped at 10% of train (see plan_splits).
DEFAULT_HOLDOUT = {
    "imagenet": 50_000, "tiny-imagenet": 5_000, "mnist": 3_000, "fashion-mnist": 3_000,
    "cifar10": 2_000, "cifar100": 2_000,
}
HOLDOUT_MAX_FRACTION = 0.10


@dataclass
class PrepConfig:
    src: Path
    task: str | None = None  # layout; None = auto-detect from src
    out: Path | None = None  # None = shards/<task>
    size: int = 256  # §2: shorter side rescaled to 256 px, central 256x256 patch kept
    # JPEG quality of the stored patches: size/fidelity trade-off measured in the README.
    quality: int = 90
    resample: str = "bilinear"  # antialiased (support scales with the factor), like torchvision
    shard_size: int = 1000  # samples per shard; ImageNet -> ~1,281 train shards
    holdout: int | None = None  # None = DEFAULT_HOLDOUT[task], or 10% of train for folder data
    seed: int = 0  # fixes the holdout draw and the train shuffle across shards
    workers: int = os.cpu_count() or 1
    part: str | None = None  # "k/N": this machine writes every N-th shard, k in 1..N
    allow_skips: bool = False  # exit 0 even when some inputs were skipped
    overwrite: bool = False  # replace an existing complete dataset

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
