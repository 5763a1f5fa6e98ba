"""The dataset a run reads, checked before the first step: manifest, statistics and the
shards on disk against the manifest. A wrong count or a cut shard is an error naming the
file here, not a quietly shorter epoch later."""
from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from shared.datasets import KNOWN
from shared.manifest import MANIFEST_NAME, Manifest, read_manifest
from shared.shards import shard_problem
from shared.stats import STATS_NAME, RgbStats, read_mean_image, read_stats

from .augment import InputStats, input_stats

# The official evaluation set of each named dataset (what the paper's and the replication's
# numbers are measured on); fewer samples are reported loudly and recorded in results.json.
OFFICIAL_EVAL_SIZE = {name: d.official_eval for name, d in KNOWN.items()}


def load_dataset(shards: Path, shard_urls: str | None = None, verify_checksums: bool = False,
                 for_training: bool = True) -> tuple[Manifest, RgbStats | None]:
    """Manifest and statistics of a dataset folder whose shards were checked against them.
    An evaluation needs neither train split nor statistics (the checkpoint carries its
    normalisation): ImageNetV2 has only a test set."""
    manifest = read_manifest(shards)
    needed = ("train", "holdout") if for_training else (manifest.reported_split,)
    for split in needed:
        if split not in manifest.splits or manifest.splits[split].samples == 0:
            hint = ("an evaluation-only dataset (ImageNetV2): use alexnet-train evaluate"
                    if for_training and "train" not in manifest.splits else "re-run alexnet-prep shard")
            raise ValueError(f"{shards}: no {split!r} split; {hint}")
    check_shards(manifest, Path(shards), shard_urls, verify_checksums)
    if not for_training:  # the checkpoint carries its normalisation, but a stats.json present is still validated
        return manifest, (read_stats(shards) if (Path(shards) / STATS_NAME).is_file() else None)
    stats = read_stats(shards)
    if stats.image_count != manifest.splits["train"].samples:
        raise ValueError(f"{shards}/stats.json covers {stats.image_count} images but the manifest's train split "
                         f"has {manifest.splits['train'].samples}: it belongs to another dataset or an older "
                         f"prep; re-run alexnet-prep stats --shards {shards}")
    return manifest, stats


def check_shards(manifest: Manifest, root: Path, shard_urls: str | None, verify_checksums: bool,
                 splits: list[str] | None = None) -> None:
    """Every local shard of every split (or of `splits`): size, member names and count (tar
    headers), and sha256 with --verify-checksums. Shards read through --shard-urls cannot be
    checked here: run `alexnet-prep verify` where they live."""
    if shard_urls is not None:
        if splits is None:
            print(f"note: shards come from {shard_urls!r}; their sizes and checksums are not checked here "
                  f"(run alexnet-prep verify where they are stored)", file=sys.stderr)
        return
    jobs = []
    for split, info in manifest.splits.items():
        if splits is not None and split not in splits:
            continue
        for name, samples, size, digest in zip(info.shards, info.shard_samples, info.shard_bytes,
                                               info.shard_sha256):
            jobs.append((root / name, samples, size, digest if verify_checksums else None))
    with ThreadPoolExecutor(max_workers=8) as pool:  # tar headers and hashing release the GIL while reading
        problems = [p for p in pool.map(lambda job: shard_problem(*job), jobs) if p]
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ValueError(f"{len(problems)} shards do not match {root}/manifest.json: " + "; ".join(problems[:5])
                         + more + ". Re-run alexnet-prep shard, or copy the dataset again (alexnet-prep verify).")


@dataclass
class DatasetFiles:
    """The dataset's files as a run found them: (size, mtime, inode) of the manifest, stats and
    every local shard. Checked again before each epoch and the final evaluation, so a dataset
    rewritten under a run (`alexnet-prep shard --overwrite` where the lock cannot reach: another
    machine on a shared disk, a copy) is named, never trained on in part: the run ended with exit 0."""
    root: Path
    found: dict[str, tuple[int, int, int]]

    @staticmethod
    def _stat(path: Path) -> tuple[int, int, int]:
        st = path.stat()
        return st.st_size, st.st_mtime_ns, st.st_ino

    @classmethod
    def as_found(cls, manifest: Manifest, root: Path, shard_urls: str | None) -> "DatasetFiles":
        names = [MANIFEST_NAME, STATS_NAME] if (Path(root) / STATS_NAME).is_file() else [MANIFEST_NAME]
        if shard_urls is None:
            names += [name for info in manifest.splits.values() for name in info.shards]
        return cls(Path(root), {name: cls._stat(Path(root) / name) for name in names})

    def check_unchanged(self) -> None:
        for name, was in self.found.items():
            try:
                now = self._stat(self.root / name)
            except FileNotFoundError:
                now = None
            if now != was:
                raise ValueError(f"{self.root / name} {'is gone' if now is None else 'changed'} while the run was going "
                                 f"(the dataset was rewritten under it); the run's checkpoints are kept: resume once "
                                 f"the dataset is what it trained on (`alexnet-prep verify --shards {self.root}`)")


def check_evaluated(split: str, seen: int, manifest: Manifest, root: Path) -> None:
    """An evaluation saw every sample the manifest lists, or a shard changed under the run."""
    expected = manifest.splits[split].samples
    if seen != expected:
        raise ValueError(f"{split}: evaluated {seen} samples, {root}/manifest.json lists {expected}: a shard changed "
                         f"while the run was going; `alexnet-prep verify --shards {root}` names it")


def eval_shortfall(task: str, split: str, samples: int) -> dict | None:
    """Whether the reported split holds fewer images than the official set it stands for."""
    expected = OFFICIAL_EVAL_SIZE.get(task)
    if split != "val" or expected is None or samples >= expected:
        return None
    return {"expected": expected, "evaluated": samples, "missing": expected - samples}


def dataset_input_stats(root: Path, manifest: Manifest, stats: RgbStats, normalize: str, crop: int) -> InputStats:
    mean_image = read_mean_image(root, manifest.patch_size) if normalize == "mean-image" else None
    return input_stats(stats, normalize, crop, mean_image)
