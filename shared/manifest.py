"""`manifest.json`: what a dataset folder holds. Written last by `alexnet-prep shard`,
so its presence means every shard is complete."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .json_files import read_json, write_json_atomic

MANIFEST_NAME = "manifest.json"
FORMAT = "alexnet-shards/1"


@dataclass(frozen=True)
class ClassInfo:
    index: int
    wnid: str | None  # WordNet id where the dataset has one (ImageNet, tiny-imagenet)
    name: str  # not unique: n02012849 and n03126707 are both "crane"

    @property
    def label(self) -> str:
        return self.wnid or self.name


@dataclass(frozen=True)
class SplitInfo:
    shards: list[str]
    shard_samples: list[int]

    @property
    def samples(self) -> int:
        return sum(self.shard_samples)


@dataclass(frozen=True)
class Skip:
    path: str  # relative to --src
    split: str
    reason: str


@dataclass
class Manifest:
    task: str
    layout: str
    classes: list[ClassInfo]
    splits: dict[str, SplitInfo]
    prep: dict
    versions: dict
    skipped: list[Skip] = field(default_factory=list)
    ignored: list[dict] = field(default_factory=list)  # whole folders left out, e.g. unlabelled test/
    format: str = FORMAT

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def shard_paths(self, root: str | os.PathLike, split: str, url_template: str | None = None) -> list[str]:
        """Local paths under `root`, or `url_template.format(name=...)` per shard, e.g.
        "pipe:aws s3 cp s3://bucket/imagenet/{name} -" (webdataset reads pipe: and http URLs)."""
        if split not in self.splits:
            raise KeyError(f"{Path(root) / MANIFEST_NAME}: no split {split!r}; it has {sorted(self.splits)}")
        if url_template is not None:
            if "{name}" not in url_template:
                raise ValueError(f"shard URL template {url_template!r} lacks '{{name}}'")
            return [url_template.format(name=name) for name in self.splits[split].shards]
        return [str(Path(root) / name) for name in self.splits[split].shards]

    def to_dict(self) -> dict:
        d = asdict(self)
        for name, split in self.splits.items():
            d["splits"][name]["samples"] = split.samples
        return d


def write_manifest(manifest: Manifest, root: str | os.PathLike) -> Path:
    return write_json_atomic(Path(root) / MANIFEST_NAME, manifest.to_dict())


def read_manifest(root: str | os.PathLike) -> Manifest:
    path = Path(root) / MANIFEST_NAME
    d = read_json(path, f"{root} is not a complete dataset folder (run `alexnet-prep shard` first; "
                        f"the manifest is written last)")
    if d.get("format") != FORMAT:
        raise ValueError(f"{path}: format {d.get('format')!r}, expected {FORMAT!r}")
    try:
        return Manifest(
            task=d["task"], layout=d["layout"],
            classes=[ClassInfo(c["index"], c["wnid"], c["name"]) for c in d["classes"]],
            splits={k: SplitInfo(v["shards"], v["shard_samples"]) for k, v in d["splits"].items()},
            prep=d["prep"], versions=d["versions"],
            skipped=[Skip(**s) for s in d["skipped"]], ignored=d["ignored"], format=d["format"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: malformed manifest ({exc!r})") from exc
