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

import hashlib
import io
import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from .json_files import naming

SPLITS = ("train", "holdout", "val")
SHARD_PATTERN = re.compile(r"(train|holdout|val)-([0-9]{6})\.tar")  # match with fullmatch
IMAGE_MEMBER, LABEL_MEMBER, META_MEMBER = "jpg", "cls", "json"  # the extensions of a sample's members
MEMBER_ORDER = (IMAGE_MEMBER, LABEL_MEMBER, META_MEMBER)
# A fixed timestamp makes shards byte-identical across runs. webdataset's TarWriter could
# write the same (it takes mtime/user/group), and tarfile_to_samples read them, but
# `import webdataset` imports torch (1.4 s, 650 MB) and prep never does (tests/test_cli.py):
# prep writes and reads tars with tarfile; train reads them with webdataset.
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


class AtomicShardWriter:
    """Writes one shard atomically: to `<name>.<pid>.tmp`, renamed to `<name>` on close.

    A shard that exists under its final name is therefore always complete, which
    is what resuming after a crash relies on.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.tmp_path = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")  # unique per process
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
        with naming(self.path):
            self._add(f"{sample.key}.jpg", sample.jpg)
            self._add(f"{sample.key}.cls", str(int(sample.label)).encode())
            self._add(f"{sample.key}.json", encode_meta(sample.meta))
        self.count += 1

    def close(self) -> None:
        with naming(self.path):
            self._tar.close()
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self.tmp_path, self.path)

    def abort(self) -> None:
        for close in (self._tar.close, self._file.close):  # the end blocks may fail again on a full disk
            try:
                close()
            except OSError:
                pass
        self.tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> "AtomicShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class ShardError(ValueError):
    """A shard whose bytes are not what alexnet-prep writes (cut short, damaged, replaced).
    One message argument, so that torch's DataLoader can re-raise it from a worker."""


def shard_error(path, problem: str) -> ShardError:
    error = ShardError(f"{path}: {problem}; `alexnet-prep verify` checks a dataset folder against its manifest")
    error.problem = problem
    return error


TAR_BLOCK = 512


def _tar_number(field: bytes) -> int:
    """A tar header's octal number field (NUL- or space-terminated)."""
    try:
        return int(field.split(b"\0", 1)[0], 8)  # base-256 (a 0x80 first byte) is never ours: ValueError
    except ValueError:
        raise ValueError(f"number field {field!r}") from None


def _header(block: bytes) -> tuple[str, int, bytes]:
    """(name, size, type flag) of one 512-byte header, its checksum verified."""
    if _tar_number(block[148:156]) != sum(block[:148]) + 256 + sum(block[156:]):  # 256: the field as 8 spaces
        raise ValueError("header checksum mismatch")
    name = block[:100].split(b"\0", 1)[0]
    if block[257:263] == b"ustar\0" and block[345]:  # POSIX ustar: a prefix holds the leading folders
        name = block[345:500].split(b"\0", 1)[0] + b"/" + name
    return name.decode("utf-8", "surrogateescape"), _tar_number(block[124:136]), block[156:157]


def iter_members(read_at, file_size: int, path) -> Iterator[tuple[str, int, int]]:
    """(name, data offset, size) of every regular member, walking the headers only
    (`read_at(offset, n)` reads the file). Our shards hold regular files and GNU long names;
    anything else, a bad header or data past the end is a ShardError."""
    offset, long_name = 0, None
    while offset + TAR_BLOCK <= file_size:
        block = read_at(offset, TAR_BLOCK)
        if block == bytes(TAR_BLOCK):
            return  # end-of-archive marker
        try:
            name, size, kind = _header(block)
        except ValueError as exc:
            raise shard_error(path, f"not a tar header at byte {offset:,} ({exc})") from None
        data = offset + TAR_BLOCK
        if data + size > file_size:
            raise shard_error(path, f"member {name!r} runs past the end of the file (cut short)")
        if kind == b"L":
            long_name = read_at(data, size).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        elif kind in (b"0", b"\0", b"7"):
            yield (long_name or name), data, size
            long_name = None
        elif kind != b"5":  # folders carry nothing
            raise shard_error(path, f"tar member {name!r} of type {kind!r}: a shard holds regular files only")
        offset = data + -(-size // TAR_BLOCK) * TAR_BLOCK
    raise shard_error(path, f"ends at byte {file_size:,} without tar's end-of-archive marker (cut short)")


def list_members(path: str | os.PathLike) -> list[str]:
    """Member names from the headers alone (data is never read)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        return [name for name, _, _ in iter_members(lambda o, n: os.pread(f.fileno(), n, o), size, path)]


def iter_shard(path: str | os.PathLike, meta: bool = True) -> Iterator[Sample]:
    """A shard's samples in order, read without webdataset (stats, verify, the tests): members
    must come as {key}.jpg, {key}.cls, {key}.json. The file is read whole (a shard is tens of MB)
    and parsed here: 43 us per sample against tarfile's 150 on 2 busy cores (stats reads every train shard)."""
    with open(path, "rb") as f:
        data = f.read()
    view = memoryview(data)
    members = list(iter_members(lambda o, n: data[o:o + n], len(data), path))
    problem = member_order_problem([name for name, _, _ in members])
    if problem:
        raise shard_error(path, problem)
    for i in range(0, len(members), len(MEMBER_ORDER)):
        (name, jo, js), (_, co, cs), (_, mo, ms) = members[i:i + len(MEMBER_ORDER)]
        key = name.partition(".")[0]
        try:
            label = int(bytes(view[co:co + cs]))
            info = json.loads(bytes(view[mo:mo + ms])) if meta else {}
        except (ValueError, UnicodeDecodeError) as exc:
            raise shard_error(path, f"sample {key!r}: unreadable class or metadata ({exc})") from None
        yield Sample(key, bytes(view[jo:jo + js]), label, info)


_LABEL = re.compile(rb"^[0-9]{1,9}$")


def parse_label(data: bytes, classes: int, where: str) -> int:
    """A `.cls` member: ASCII digits naming a class in [0, classes). Anything else (a
    negative number such as cross-entropy's ignore_index -100, 999 of 10 classes, text) is
    an error naming the sample."""
    if not _LABEL.match(data.strip()):
        raise ValueError(f"{where}: class index {data[:20]!r} is not a non-negative integer")
    label = int(data)
    if not 0 <= label < classes:
        raise ValueError(f"{where}: class index {label} outside 0..{classes - 1} (the manifest's classes)")
    return label


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def member_order_problem(names: list[str]) -> str | None:
    """Members must come as {key}.jpg, {key}.cls, {key}.json, keys never repeated."""
    if len(names) % len(MEMBER_ORDER):
        return f"{len(names)} members, not a multiple of {len(MEMBER_ORDER)}"
    keys = set()
    for i in range(0, len(names), len(MEMBER_ORDER)):
        key = names[i].partition(".")[0]
        if names[i:i + len(MEMBER_ORDER)] != [f"{key}.{ext}" for ext in MEMBER_ORDER] or key in keys:
            return f"members {names[i:i + 3]} at position {i}: expected {key}.jpg, {key}.cls, {key}.json once"
        keys.add(key)
    return None


def shard_problem(path: str | os.PathLike, samples: int, size: int, sha256: str | None = None) -> str | None:
    """What is wrong with a shard against its manifest entry (size, member order and count
    from the tar index, sha256 when given), or None. Reads only tar headers unless sha256."""
    path = Path(path)
    if not path.is_file():
        return f"{path.name}: missing"
    actual = path.stat().st_size
    if actual != size:
        return f"{path.name}: {actual:,} bytes, manifest says {size:,}"
    try:
        names = list_members(path)
    except ShardError as exc:
        return f"{path.name}: not a readable shard ({exc.problem})"
    except OSError as exc:
        return f"{path.name}: unreadable ({exc.strerror})"
    order = member_order_problem(names)
    if order:
        return f"{path.name}: {order}"
    if len(names) // len(MEMBER_ORDER) != samples:
        return f"{path.name}: {len(names) // len(MEMBER_ORDER)} samples, manifest says {samples}"
    if sha256 is not None and file_sha256(path) != sha256:
        return f"{path.name}: sha256 differs from the manifest's (damaged or replaced)"
    return None
