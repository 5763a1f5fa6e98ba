"""Datasets read straight from the archives users download: `--src imagenet.zip`,
`tiny-imagenet-200.zip`, `cifar-10-python.tar.gz`, or a --src folder holding archives
(ILSVRC2012_img_train.tar, Hugging Face's train_images_0.tar.gz): no unzip step, no second
copy on disk. `resolve` follows a path under --src into an archive.

`ArchivePath` behaves like the pathlib.Path the layout readers use (`/`, name, stem, suffix,
parent, is_file, is_dir, iterdir, read_bytes, read_text), so every layout reads archives and
folders with the same code and lists the same samples, skips and ignored entries: shards
from an archive are byte-identical to shards from the extracted tree.

- zip: an index of the central directory (dir -> children) is built once; each worker
  process opens its own handle (a zip allows random access) and reads its members.
- tar and tar.gz: prep/tar_archives.py (by offset, and by streaming).

Untrusted archives: a member whose name is absolute or climbs with `..`, a name that appears
twice, a link or device member, or a member declaring more than MAX_MEMBER_BYTES or a
compression ratio over MAX_RATIO (a zip bomb) is listed as a skip and never read
(prep/archive_base.py: the rules every archive kind shares).
"""
from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path, PurePosixPath

from .archive_base import DAMAGED_MEMBER, Archive, DamagedMember, bomb_problem
from .tar_archives import TarArchive, TarGzArchive

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")


def is_archive(path) -> bool:
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


class ZipArchive(Archive):
    def __init__(self, path: str):
        super().__init__(path)
        self._zip, self._pid = None, None
        for info in self.handle().infolist():
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                self.problems.append((info.filename, "symlink member: not followed"))
            elif bomb_problem(info.file_size, info.compress_size):
                self.problems.append((info.filename, bomb_problem(info.file_size, info.compress_size)))
            else:
                self._add(info.filename, info.is_dir(), info)
        self._finish()

    def handle(self) -> zipfile.ZipFile:
        if self._pid != os.getpid():  # a forked worker opens its own: a shared file offset would race
            self._zip, self._pid = zipfile.ZipFile(self.path), os.getpid()
        return self._zip

    def read(self, name: str) -> bytes:
        try:
            return self.handle().read(self.files[name])  # zipfile checks size and CRC
        except DAMAGED_MEMBER as exc:
            raise DamagedMember(f"damaged archive member ({type(exc).__name__}: {exc})") from None



_OPEN: dict[str, Archive] = {}  # forked workers inherit these: the index is built once


def open_archive(path) -> Archive:
    key = os.path.abspath(path)
    if key not in _OPEN:
        kind = {".zip": ZipArchive, ".tar": TarArchive}.get(os.path.splitext(key)[1].lower(), TarGzArchive)
        _OPEN[key] = kind(key)
    return _OPEN[key]


def archives_under(src) -> list[tuple[str, "Archive"]]:
    """(path prefix, archive) of every archive read for this --src: the --src archive itself
    (members named as they are), or archives inside a --src folder ("<file>/<member>")."""
    if isinstance(src, ArchivePath):
        return [("", src.archive)]
    root = os.path.abspath(src)
    return [(os.path.relpath(path, root) + "/", archive) for path, archive in sorted(_OPEN.items())
            if os.path.commonpath([path, root]) == root]


def resolve(root, rel: str):
    """`root / rel`, where `rel` may pass through an archive file under a --src folder
    ("ILSVRC2012_img_train.tar/n01440764.tar/n01440764_10026.JPEG"): the rest is a member."""
    if isinstance(root, ArchivePath):
        return root / rel
    parts = rel.split("/")
    for i in range(len(parts) - 1):
        if is_archive(parts[i]):
            candidate = Path(root, *parts[:i + 1])
            if candidate.is_file():
                return ArchivePath(open_archive(candidate), "/".join(parts[i + 1:]))
    return Path(root, rel)


class ArchivePath:
    """A path inside an archive, with the pathlib.Path methods the layout readers use."""

    def __init__(self, archive: Archive, member: str = ""):
        self.archive, self.member = archive, member.strip("/")

    def __truediv__(self, other) -> "ArchivePath":
        joined = "/".join(p for p in (self.member, str(other).strip("/")) if p)
        return ArchivePath(self.archive, "/".join(PurePosixPath(joined).parts))

    @property
    def name(self) -> str:
        if not self.member:  # the archive's top stands for a folder named after the archive
            return PurePosixPath(self.archive.path).name.split(".")[0]
        return PurePosixPath(self.member).name

    @property
    def stem(self) -> str:
        return PurePosixPath(self.member).stem

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.member).suffix

    @property
    def parent(self) -> "ArchivePath":
        parent = str(PurePosixPath(self.member).parent)
        return ArchivePath(self.archive, "" if parent == "." else parent)

    @property
    def parents(self) -> list["ArchivePath"]:
        out, path = [], self
        while path.member:
            path = path.parent
            out.append(path)
        return out

    def is_file(self) -> bool:
        return self.member in self.archive.files

    def is_dir(self) -> bool:
        return self.member in self.archive.children

    def exists(self) -> bool:
        return self.is_file() or self.is_dir()

    def iterdir(self):
        return (self / name for name in sorted(self.archive.children.get(self.member, ())))

    def read_bytes(self) -> bytes:
        if not self.is_file():
            raise FileNotFoundError(f"{self}: no such member")
        return self.archive.read(self.member)

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def open(self, mode: str = "rb"):
        return io.BytesIO(self.read_bytes())

    def resolve(self) -> "ArchivePath":
        return self

    def relative_to(self, other: "ArchivePath") -> PurePosixPath:
        return PurePosixPath(self.member).relative_to(PurePosixPath(other.member or "."))

    def __str__(self) -> str:
        return f"{self.archive.path}!/{self.member}" if self.member else self.archive.path

    def __repr__(self) -> str:
        return f"ArchivePath({str(self)!r})"

    def __reduce__(self):  # workers get (archive file, member), not the archive's whole index
        return (_archive_path, (self.archive.path, self.member))

    def __eq__(self, other) -> bool:
        return isinstance(other, ArchivePath) and other.archive is self.archive and other.member == self.member

    def __hash__(self) -> int:
        return hash((id(self.archive), self.member))

    def __lt__(self, other: "ArchivePath") -> bool:
        return self.member < other.member


def _archive_path(archive_file: str, member: str) -> ArchivePath:
    return ArchivePath(open_archive(archive_file), member)


def archive_root(path) -> ArchivePath:
    """The archive's top, or its single top-level folder when everything sits in one
    (tiny-imagenet-200.zip holds tiny-imagenet-200/...)."""
    root = ArchivePath(open_archive(path))
    entries = list(root.iterdir())
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else root
