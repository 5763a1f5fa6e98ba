"""What a source folder holds: classes, labelled items per split, and what was left out.

Each layout module turns a `--src` folder into a `Source`; nothing here decodes images.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from shared.manifest import ClassInfo, Skip

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


@dataclass(frozen=True, slots=True)
class Item:
    key: str  # webdataset-safe sample key, unique within the dataset
    label: int
    source: str  # path relative to --src ("file#n" for the n-th record of an array file)
    member: int = -1  # record index inside an array file (MNIST idx, CIFAR pickle); -1 = image file


@dataclass
class Source:
    task: str
    layout: str
    root: Path
    classes: list[ClassInfo]
    items: dict[str, list[Item]]  # "train" and optionally "val"
    skipped: list[Skip] = field(default_factory=list)  # inputs that cannot be labelled
    ignored: list[dict] = field(default_factory=list)  # folders/files deliberately left out


def list_files(folder: Path) -> list[Path]:
    """Regular files below `folder` (recursively), sorted for a stable order."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def ensure_unique_keys(items: list[Item]) -> list[Item]:
    """Appends `-dupN` to keys seen before, in list order (deterministic)."""
    seen: dict[str, int] = {}
    out = []
    for item in items:
        n = seen.get(item.key, 0)
        seen[item.key] = n + 1
        out.append(item if n == 0 else Item(f"{item.key}-dup{n}", item.label, item.source, item.member))
    return out
