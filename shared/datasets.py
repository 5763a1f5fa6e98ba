"""The datasets this toolkit knows by name, one row each: adding one touches this table (and, for
a new input form, prep/forms/). prep takes its default holdout from it, training its `--task`
shortcut, evaluation the size of its official test set, the results table the PyTorch
replication's figure beside ours."""
from __future__ import annotations

from dataclasses import dataclass

from .ilsvrc import VAL_IMAGES


@dataclass(frozen=True)
class KnownDataset:
    holdout: int | None  # training images prep holds out by default (the replication's), None: a test set only
    official_eval: int  # images of the official evaluation set; fewer are reported loudly
    seed_figure: tuple[float, float] | None  # the PyTorch replication's error@1, error@5 (README, "Sources")


KNOWN = {
    "imagenet": KnownDataset(50_000, VAL_IMAGES, (0.48, 0.25)),
    "tiny-imagenet": KnownDataset(5_000, 10_000, (0.57, 0.32)),
    "mnist": KnownDataset(3_000, 10_000, (0.01, 0.00)),
    "fashion-mnist": KnownDataset(3_000, 10_000, (0.09, 0.00)),
    "cifar10": KnownDataset(2_000, 10_000, (0.13, 0.01)),
    "cifar100": KnownDataset(2_000, 10_000, (0.41, 0.16)),
    # ImageNetV2's three variants (Recht et al. 2019): 10,000 test images each
    "imagenetv2-matched-frequency": KnownDataset(None, 10_000, None),
    "imagenetv2-threshold0.7": KnownDataset(None, 10_000, None),
    "imagenetv2-top-images": KnownDataset(None, 10_000, None),
}
TRAINABLE = tuple(name for name, d in KNOWN.items() if d.holdout is not None)  # `alexnet-train --task`
