"""Shard naming, sample layout and a deterministic tar writer/reader.

A dataset folder holds, per split, tar shards named `{split}-{index:06d}.tar`.
Each sample is three consecutive tar members sharing a key (webdataset's
convention, so `webdataset.WebDataset(urls)` reads them unchanged):

    {key}.jpg   256x256 RGB JPEG (paper §2: shorter side to 256, central crop)
    {key}.cls   class index as ASCII digits
    {key}.json  {"class": wnid or class name, "source": path relative to --src,
                 "width": original width, "height": original height}

Keys never contain '.', because webdataset splits key from extension at the first
dot of the member name.
"""
from __future__ import annotations

import io
import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

SPLITS = ("train", "holdout", "val")
SHARD_PATTERN = re.compile(r"^(train|holdout|val)-(\d{6})\.tar$")
MEMBER_ORDER = ("jpg", "cls", "json")
# A fixed timestamp makes shards byte-identical across runs; webdataset's own
# TarWriter stamps time.time() on every member unless told otherwise.
FIXED_MTIME = 0
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def shard_name(split: str, index: int) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return f"{split}-{index:06d}.tar"


def sanitize_key(text: str) -> str:
    """Map a source id to a webdataset-safe key (letters, digits, '_' and '-')."""
    return _KEY_UNSAFE.sub("_", text)


@dataclass(frozen=True)
class Sample:
    key: str
    jpg: bytes
    label: int
    meta: dict


def encode_meta(meta: dict) -> bytes:
    return json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()


class ShardWriter:
    """Writes one shard atomically: to `<name>.tmp`, renamed to `<name>` on close.

    A shard that exists under its final name is therefore always complete, which
    is what resuming after a crash relies on.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.tmp_path = self.path.with_name(self.path.name + ".tmp")
        self._file: BinaryIO = open(self.tmp_path, "wb")
        self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.GNU_FORMAT)
        self.count = 0

    def _add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = FIXED_MTIME
        info.mode = 0o444
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        self._tar.addfile(info, io.BytesIO(data))

    def write(self, sample: Sample) -> None:
        if "." in sample.key or "/" in sample.key:
            raise ValueError(f"sample key {sample.key!r} contains '.' or '/'")
        self._add(f"{sample.key}.jpg", sample.jpg)
        self._add(f"{sample.key}.cls", str(int(sample.label)).encode())
        self._add(f"{sample.key}.json", encode_meta(sample.meta))
        self.count += 1

    def close(self) -> None:
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.tmp_path, self.path)

    def abort(self) -> None:
        self._tar.close()
        self._file.close()
        self.tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def iter_shard(path: str | os.PathLike) -> Iterator[Sample]:
    """Reads samples back without webdataset (used by `stats` and the tests)."""
    parts: dict[str, bytes] = {}
    key = None
    with tarfile.open(path, mode="r") as tar:
        for member in tar:
            if not member.isfile():
                continue
            stem, _, ext = member.name.partition(".")
            if key is not None and stem != key:
                yield _assemble(path, key, parts)
                parts = {}
            key = stem
            parts[ext] = tar.extractfile(member).read()
    if key is not None:
        yield _assemble(path, key, parts)


def _assemble(path, key: str, parts: dict[str, bytes]) -> Sample:
    missing = [ext for ext in MEMBER_ORDER if ext not in parts]
    if missing:
        raise ValueError(f"{path}: sample {key!r} lacks {missing}; expected members {MEMBER_ORDER}")
    return Sample(key, parts["jpg"], int(parts["cls"]), json.loads(parts["json"]))
