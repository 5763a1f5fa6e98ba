"""`manifest.json`: what a dataset folder holds. Written last by `alexnet-prep shard`,
so its presence means every shard is complete; each shard's size, sample count and
sha256 let a reader check that the shards it finds are those (`alexnet-prep verify`).

A manifest is untrusted input: shard names must be exactly `{split}-NNNNNN.tar` of their
own split (names reach webdataset, which runs `pipe:` URLs, and become paths), and names
substituted into a `pipe:` template are shell-quoted."""
from __future__ import annotations

import hashlib
import json
import os
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .datasets import TRAINABLE
from .json_files import json_field, read_json, write_json_atomic
from .limits import MAX_PATCH_SIZE
from .shards import SHARD_PATTERN, SPLITS

MANIFEST_NAME = "manifest.json"
FORMAT = "alexnet-shards/2"
# The datasets prep knows by name (shared/datasets.py); a class-folder dataset is named after its folder.
TASKS = TRAINABLE


class ShardUrl(str):
    """A shard named through --shard-urls: webdataset opens it (file, `pipe:`, http). Every
    other shard is a local file and is opened as one (train/loader.py), so a dataset folder named
    `pipe:touch X; cat x` is only a folder."""

    __slots__ = ()


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
    shard_bytes: list[int]
    shard_sha256: list[str]
    # Each shard's provenance: sha256 of its samples' "key\tlabel\tsource\n" rows, which
    # `alexnet-prep verify` recomputes from the shard. None in manifests written before it.
    shard_items_sha256: list[str] | None = None

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
    patch_size: int  # §2: side of the stored square patches (256 unless --size)
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

    @property
    def reported_split(self) -> str:
        """The split results are reported on: the official val/test set, else the holdout."""
        return "val" if "val" in self.splits and self.splits["val"].samples else "holdout"

    def class_table(self) -> list[list]:
        """[[index, wnid, name], ...]: what a checkpoint must match."""
        return [[c.index, c.wnid, c.name] for c in self.classes]

    def shard_paths(self, root: str | os.PathLike, split: str, url_template: str | None = None) -> list[str]:
        """Local paths under `root` (plain str: opened as files), or `url_template` with each
        shard's name, e.g. "pipe:aws s3 cp s3://bucket/imagenet/{name} -" (ShardUrl: webdataset
        opens pipe: and http URLs)."""
        if split not in self.splits:
            raise KeyError(f"{Path(root) / MANIFEST_NAME}: no split {split!r}; it has {sorted(self.splits)}")
        names = self.splits[split].shards
        if url_template is not None:
            if "{name}" not in url_template:
                raise ValueError(f"shard URL template {url_template!r} lacks '{{name}}'")
            quote = shlex.quote if url_template.startswith("pipe:") else str
            return [ShardUrl(url_template.replace("{name}", quote(name))) for name in names]
        return [str(Path(root) / name) for name in names]

    def fingerprint(self) -> str:
        """sha256 of what makes the dataset this one: task, patch size, class table and every
        split's shards (names, sample counts, sha256). A checkpoint carries it, so a resume on
        another dataset with the same classes is refused (train/checkpoint.py)."""
        what = {"task": self.task, "patch_size": self.patch_size, "classes": self.class_table(),
                "splits": {name: [info.shards, info.shard_samples, info.shard_sha256]
                           for name, info in sorted(self.splits.items())}}
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()

    def to_dict(self) -> dict:
        d = asdict(self)
        for name, split in self.splits.items():
            d["splits"][name]["samples"] = split.samples
        return d


def write_manifest(manifest: Manifest, root: str | os.PathLike) -> Path:
    return write_json_atomic(Path(root) / MANIFEST_NAME, manifest.to_dict())


def _list_of(values: list, kind, path, where: str) -> list:
    for i, v in enumerate(values):
        if not isinstance(v, kind) or isinstance(v, bool):
            raise ValueError(f"{path}: {where}[{i}] is {type(v).__name__}, expected {kind.__name__}")
    return values


def parse_manifest(d, path) -> Manifest:
    """A manifest from its JSON, every field checked for type and range (one line naming the
    first that is wrong): a manifest is untrusted input."""
    if not isinstance(d, dict):
        raise ValueError(f"{path}: holds a {type(d).__name__}, expected an object")
    if d.get("format") != FORMAT:
        raise ValueError(f"{path}: format {d.get('format')!r}, expected {FORMAT!r}")
    patch = json_field(d, "patch_size", int, path)
    if not 8 <= patch <= MAX_PATCH_SIZE:
        raise ValueError(f"{path}: patch_size {patch}, expected 8..{MAX_PATCH_SIZE} px")
    classes = []
    for i, c in enumerate(json_field(d, "classes", list, path)):
        where = f"classes[{i}]."
        classes.append(ClassInfo(json_field(c, "index", int, path, where),
                                 json_field(c, "wnid", (str, type(None)), path, where),
                                 json_field(c, "name", str, path, where)))
    splits = {}
    for name, v in json_field(d, "splits", dict, path).items():
        if name not in SPLITS:
            raise ValueError(f"{path}: split {name!r}, expected one of {', '.join(SPLITS)}")
        lists = [_list_of(json_field(v, key, list, path, f"splits[{name!r}]."), kind, path, f"splits[{name!r}].{key}")
                 for key, kind in (("shards", str), ("shard_samples", int), ("shard_bytes", int),
                                   ("shard_sha256", str))]
        provenance = None
        if isinstance(v, dict) and v.get("shard_items_sha256") is not None:
            provenance = _list_of(json_field(v, "shard_items_sha256", list, path, f"splits[{name!r}]."), str, path,
                                  f"splits[{name!r}].shard_items_sha256")
        splits[name] = SplitInfo(*lists, provenance)
    skipped = []
    for i, x in enumerate(json_field(d, "skipped", list, path)):
        skipped.append(Skip(*(json_field(x, key, str, path, f"skipped[{i}].") for key in ("path", "split", "reason"))))
    ignored = json_field(d, "ignored", list, path)
    for i, x in enumerate(ignored):
        for key in ("path", "reason"):
            json_field(x, key, str, path, f"ignored[{i}].")
    manifest = Manifest(task=json_field(d, "task", str, path), layout=json_field(d, "layout", str, path),
                        patch_size=patch, classes=classes, splits=splits, prep=json_field(d, "prep", dict, path),
                        versions=json_field(d, "versions", dict, path), skipped=skipped, ignored=ignored,
                        format=d["format"])
    check_manifest(manifest, path)
    return manifest


RAW_HINTS = (".jpg", ".jpeg", ".png", ".zip", ".tar", ".gz", ".tgz", "-ubyte", "batches.meta", "wnids.txt",
             "loc_synset_mapping.txt")  # what a raw dataset (a prep source) holds; shards hold none of these
RAW_LOOK = 2000  # entries looked at before giving up (a raw ImageNet folder holds 1.3 million)


def missing_manifest_advice(root: Path) -> str:
    """Why a folder without manifest.json is not a dataset, and the command that makes one."""
    if not root.is_dir():
        return f"{root}: no such dataset folder (alexnet-prep shard --src RAW --out {root} makes one)"
    if (root / ".shard-info").is_dir():
        return (f"{root} holds an unfinished alexnet-prep shard run (no {MANIFEST_NAME}, written last): run the "
                f"same alexnet-prep shard command again to finish it")
    seen = 0
    for _, _, files in os.walk(root):
        if any(name.lower().endswith(RAW_HINTS) for name in files):
            return (f"{root} is a raw dataset, not shards (no {MANIFEST_NAME}; images or archives in it): make "
                    f"shards first with `alexnet-prep shard --src {root} --out shards/{root.resolve().name}`, "
                    f"then pass that folder")
        seen += len(files)
        if seen > RAW_LOOK:
            break
    return f"{root}: no {MANIFEST_NAME}: not a dataset folder (make one with alexnet-prep shard)"


def read_manifest(root: str | os.PathLike) -> Manifest:
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(missing_manifest_advice(Path(root)))
    return parse_manifest(read_json(path, ""), path)


def check_manifest(manifest: Manifest, path: Path) -> None:
    """Names, counts and classes a reader can rely on; an error naming the first offence."""
    if [c.index for c in manifest.classes] != list(range(len(manifest.classes))) or not manifest.classes:
        raise ValueError(f"{path}: class indices must be 0..N-1 in order")
    for split, info in manifest.splits.items():
        n = len(info.shards)
        if not (len(info.shard_samples) == len(info.shard_bytes) == len(info.shard_sha256) == n):
            raise ValueError(f"{path}: split {split!r} lists {n} shards but not as many counts, sizes and checksums")
        for index, name in enumerate(info.shards):
            match = SHARD_PATTERN.fullmatch(name) if isinstance(name, str) else None
            if not match or match.group(1) != split or int(match.group(2)) != index:
                raise ValueError(f"{path}: shard name {name!r} in split {split!r}: expected "
                                 f"'{split}-{index:06d}.tar' (names are file names inside the dataset folder, "
                                 f"nothing else)")
        bad = [c for c in info.shard_samples + info.shard_bytes if not isinstance(c, int) or c < 0]
        digests = info.shard_sha256 + (info.shard_items_sha256 or [])
        if bad or not all(isinstance(h, str) and len(h) == 64 for h in digests) or (
                info.shard_items_sha256 is not None and len(info.shard_items_sha256) != n):
            raise ValueError(f"{path}: split {split!r} has malformed counts, sizes or checksums")
