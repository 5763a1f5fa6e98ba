"""Which item goes to which shard, in which order: a pure function of the source listing
and the config, so the bytes of every shard never depend on --workers or scheduling."""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from shared.shards import shard_name

from .config import DEFAULT_HOLDOUT, HOLDOUT_MAX_FRACTION, PrepConfig
from .sources import Item, Source


def items_sha256(rows) -> str:
    """The provenance of one shard: its samples' (key, label, source) rows in order. Kept in
    the shard's record and the manifest; `alexnet-prep verify` recomputes it from the shard."""
    digest = hashlib.sha256()
    for key, label, source in rows:
        digest.update(f"{key}\t{label}\t{source}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class ShardTask:
    split: str
    index: int
    items: list[Item]

    @property
    def name(self) -> str:
        return shard_name(self.split, self.index)



def holdout_size(task: str, n_train: int, requested: int | None) -> int:
    """The holdout `alexnet-train` needs (§5's schedule divides ε by 10 when its error stops
    improving, and best.pt is the epoch with the lowest): at least one image (--holdout >= 1:
    prep/config.py), at most 10% of train or one image, whichever is more. A dataset too small
    for one is refused here, at shard time, not by train later."""
    if n_train < 2:
        raise ValueError(f"{n_train} training image: too few (alexnet-train needs at least one to train on and one "
                         f"in the holdout)")
    cap = max(1, int(n_train * HOLDOUT_MAX_FRACTION))
    wanted = requested if requested is not None else DEFAULT_HOLDOUT.get(task, cap)
    if requested is not None and requested > cap:
        raise ValueError(f"--holdout {requested}: at most 10% of the {n_train} training images ({cap})")
    return min(wanted, cap)


def holdout_quotas(class_sizes: dict[int, int], count: int, rng: random.Random) -> dict[int, int]:
    """Holdout images per class in proportion to class size (scikit-learn's
    StratifiedShuffleSplit allocation): each class gets floor(count * n_c / N), and the
    images left over go one each to the classes with the largest remainders, ties broken by
    the seeded rng. Exact integer arithmetic, so the split never depends on float rounding."""
    total = sum(class_sizes.values())
    if count == 0 or total == 0:
        return {label: 0 for label in class_sizes}
    quotas = {label: count * n // total for label, n in class_sizes.items()}
    labels = sorted(class_sizes)
    rng.shuffle(labels)  # the tie-break among equal remainders
    by_remainder = sorted(labels, key=lambda label: -(count * class_sizes[label] % total))
    for label in by_remainder[:count - sum(quotas.values())]:
        quotas[label] += 1
    return quotas


def split_holdout(items: list[Item], count: int, seed: int) -> tuple[list[Item], list[Item]]:
    """Class-stratified holdout in proportion to class sizes (MNIST's classes hold 5,421 to
    6,742 images, ImageNet's 732 to 1,300): a seeded draw within each class."""
    rng = random.Random(seed)
    by_class: dict[int, list[Item]] = {}
    for item in items:
        by_class.setdefault(item.label, []).append(item)
    quotas = holdout_quotas({label: len(group) for label, group in by_class.items()}, count, rng)
    chosen: set[str] = set()
    for label in sorted(by_class):
        chosen.update(item.key for item in rng.sample(by_class[label], quotas[label]))
    holdout = [it for it in items if it.key in chosen]
    train = [it for it in items if it.key not in chosen]
    return train, holdout


def plan_shards(source: Source, cfg: PrepConfig) -> list[ShardTask]:
    """Items in key order first, so that every form of a dataset (ImageNet's Kaggle folders,
    its official tars, Hugging Face's archives) gives the same holdout and the same shards,
    whatever order its listing came in."""
    items = {split: sorted(listed, key=lambda it: it.key) for split, listed in source.items.items()}
    splits: dict[str, list[Item]] = {}
    if "train" in items:  # an evaluation-only set (ImageNetV2) has none
        n_holdout = holdout_size(source.task, len(items["train"]), cfg.holdout)
        train, holdout = split_holdout(items["train"], n_holdout, cfg.seed)
        random.Random(cfg.seed + 1).shuffle(train)  # every train shard mixes classes
        splits = {"train": train, "holdout": holdout}
    if "val" in items:
        splits["val"] = items["val"]
    tasks = []
    for split, items in splits.items():
        for index, start in enumerate(range(0, len(items), cfg.shard_size)):
            tasks.append(ShardTask(split, index, items[start:start + cfg.shard_size]))
    return tasks


# What a plan's fingerprint holds, as a user would name it: every input and option that
# changes a shard's bytes (a --part made with another differs in one of these).
FINGERPRINT_NAMES = {"task": "the dataset (--form)", "layout": "the source's layout",
                     "classes_sha256": "the class table", "items_sha256": "the source's files", "size": "--size",
                     "quality": "--quality",
                     "resample": "--resample", "shard_size": "--shard-size", "seed": "--seed", "holdout": "--holdout",
                     "max_pixels": "--max-pixels"}


def plan_fingerprint(source: Source, tasks: list[ShardTask], cfg: PrepConfig) -> dict:
    """The identity of a run's output: written beside the shards (.shard-info/plan.json) and
    into every shard's record, so that a resume or a --part merge never takes a shard made
    from another source or with other options."""
    digest = hashlib.sha256()
    for task in tasks:
        for item in task.items:
            digest.update(f"{task.name}\t{item.key}\t{item.label}\t{item.source}\n".encode())
    classes = hashlib.sha256("".join(f"{c.index}\t{c.wnid}\t{c.name}\n" for c in source.classes).encode())
    return {"task": source.task, "layout": source.layout, "classes_sha256": classes.hexdigest(),
            "size": cfg.size, "quality": cfg.quality, "resample": cfg.resample,
            "shard_size": cfg.shard_size, "seed": cfg.seed, "holdout": cfg.holdout, "max_pixels": cfg.max_pixels,
            "items_sha256": digest.hexdigest()}


def fingerprint_differences(made: dict, wanted: dict) -> str:
    """What differs between two fingerprints, in the names a user knows."""
    return ", ".join(f"{FINGERPRINT_NAMES.get(k, k)} ({made.get(k)!r} there, {wanted[k]!r} here)"
                     if not k.endswith("sha256") else FINGERPRINT_NAMES.get(k, k)
                     for k in wanted if made.get(k) != wanted[k])
