"""What the network is, without torch: the paper's layer sizes and every choice that changes
the network's function (train/model.py builds it; the config and checkpoints carry it)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from shared.limits import MAX_PATCH_SIZE

ARCH = "alexnet-krizhevsky-2012"
# §3.3 hyper-parameters; LRN_SCALE is the paper's alpha = cuda-convnet's `scale` = Caffe's alpha.
LRN_K, LRN_SIZE, LRN_SCALE, LRN_BETA = 2.0, 5, 1e-4, 0.75
LRN_MODES = ("as-run", "text", "none")
CONV1_PADDINGS = ("as-run", "symmetric")
DROPOUT_MODES = ("paper", "inverted")
TOWERS = ("two", "one")
POOL_SIZES = (3, 2)  # §3.4's overlapping z=3, s=2; 2 is its non-overlapping ablation
MIN_CROP = 64  # the smallest input whose maps survive the five convolutions and three pools


def dropout_in_range(p) -> bool:
    """A probability of zeroing that leaves something: 0 <= p < 1."""
    return math.isfinite(p) and 0 <= p < 1
# kernels per layer: Figure 2 (two GPUs), and §3.2's one-GPU net with "half as many kernels
# in each convolutional layer" except the last (footnote 2: conv5 and the fc layers keep
# their size so that both nets have about as many parameters)
KERNELS = {"two": (96, 256, 384, 384, 256), "one": (48, 128, 192, 192, 256)}
FC_WIDTH = 4096  # §3.5


@dataclass(frozen=True)
class Architecture:
    """Everything that changes the network's function; stored in checkpoints."""
    lrn: str = "as-run"
    conv1_padding: str = "as-run"
    dropout_mode: str = "paper"
    dropout: float = 0.5  # §4.2: probability of zeroing
    pool_size: int = 3  # §3.4: z=3, s=2 (overlapping); 2 = the non-overlapping ablation
    towers: str = "two"  # §3.2: "two" GPUs (groups=2), or the one-GPU net with half the kernels
    crop: int = 224  # §4.1 input side

    def __post_init__(self):
        for name, kind in (("lrn", str), ("conv1_padding", str), ("dropout_mode", str), ("towers", str),
                           ("pool_size", int), ("crop", int), ("dropout", (int, float))):
            value = getattr(self, name)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ValueError(f"{name} {value!r}: expected a {getattr(kind, '__name__', 'number')}")
        for name, allowed in (("lrn", LRN_MODES), ("conv1_padding", CONV1_PADDINGS),
                              ("dropout_mode", DROPOUT_MODES), ("towers", TOWERS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} {getattr(self, name)!r}: expected one of {', '.join(allowed)}")
        if self.pool_size not in POOL_SIZES:
            raise ValueError(f"pool_size {self.pool_size}: expected 3 (§3.4) or 2 (non-overlapping)")
        if not dropout_in_range(self.dropout):
            raise ValueError(f"dropout {self.dropout}: expected 0 <= p < 1")
        if not MIN_CROP <= self.crop <= MAX_PATCH_SIZE:
            raise ValueError(f"crop {self.crop}: AlexNet needs inputs of {MIN_CROP} to {MAX_PATCH_SIZE} px")

    def to_dict(self) -> dict:
        return asdict(self)


def conv1_pads(side: int, mode: str) -> tuple[int, int]:
    """(before, after) zero padding of conv1 for an input of `side` pixels."""
    if mode == "symmetric":
        return 2, 2
    modules = 1 + math.ceil((side - 11) / 4)  # cuda-convnet layer.py: modulesX, padding=0
    return 0, (modules - 1) * 4 + 11 - side


def feature_side(arch: Architecture) -> int:
    """Side of pool5's maps (6 for 224 crops). Pools use the floor, so z=2 gives the same
    sizes as z=3: "the non-overlapping scheme s = 2, z = 2, which produces output of
    equivalent dimensions" (§3.4)."""
    before, after = conv1_pads(arch.crop, arch.conv1_padding)
    side = (arch.crop + before + after - 11) // 4 + 1  # conv1
    for _ in range(3):  # pool1, pool2 (conv2..conv5 keep the size), pool5
        side = (side - arch.pool_size) // 2 + 1
    return side
