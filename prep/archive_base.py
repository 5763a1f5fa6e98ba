"""What every archive this tool reads shares (prep/archives.py: zip; prep/tar_archives.py: tar
and tar.gz): the tree of members, and the rules for a member never read -- an unsafe name, a
name twice, a file that is also a folder, a bomb."""
from __future__ import annotations

import tarfile
import zipfile
import zlib
from pathlib import PurePosixPath

MAX_MEMBER_BYTES = 1 << 30  # 1 GiB: ImageNet's largest image is ~20 MB, a CIFAR batch ~31 MB
MAX_RATIO = 200  # deflate rarely exceeds ~10x on images and pickles; bombs reach 1000x+
RATIO_FLOOR = 1 << 20  # members below 1 MiB are never bombs, whatever their ratio
# What zipfile and zlib raise for a damaged member: encrypted (RuntimeError), bad CRC and a
# local name that differs from the central directory's (BadZipFile), bad deflate data
# (zlib.error), deflate64 and other methods (NotImplementedError), cut short (EOFError).
DAMAGED_MEMBER = (zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError, EOFError, OSError,
                  tarfile.TarError, ValueError)


UNSAFE = "unsafe member name (absolute or '..'): never read"


class DamagedMember(ValueError):
    """A member that cannot be read: a skip with this reason, as a damaged JPEG is."""


def bomb_problem(size: int, packed: int) -> str | None:
    """Why a member is not read: too big, or compressed more than deflate does real data."""
    if size > MAX_MEMBER_BYTES or (size > RATIO_FLOOR and packed and size / packed > MAX_RATIO):
        return (f"declares {size:,} bytes from {packed:,} (over {MAX_MEMBER_BYTES:,} bytes or {MAX_RATIO}x): "
                f"not read")
    return None


def unsafe_name(name: str) -> bool:
    """An absolute member name, or one that climbs with '..', is never read -- at any depth
    (a member of a tar inside the train tar follows the outer archive's rules)."""
    parts = PurePosixPath(name).parts
    return name.startswith("/") or ".." in parts or not parts


def clean_name(name: str) -> str:
    """A member's name as the tree holds it ("./a//b/" -> "a/b")."""
    return "/".join(PurePosixPath(name).parts)


class Archive:
    """The members of one archive file as a tree: dirs -> sorted child names."""

    streamed = False  # True: image members are read by a streaming pass, not one at a time

    def __init__(self, path: str):
        self.path = str(path)
        self.files: dict[str, object] = {}  # member name -> zip info or bytes
        self.children: dict[str, set[str]] = {"": set()}
        self.problems: list[tuple[str, str]] = []  # (member name, why it is not read)
        self._seen: set[str] = set()
        self._ambiguous: set[str] = set()

    def _add(self, name: str, is_dir: bool, payload) -> None:
        parts = PurePosixPath(name).parts
        if unsafe_name(name):
            self.problems.append((name, UNSAFE))
            return
        clean = clean_name(name)
        if clean in self._seen:
            if is_dir and clean in self.children and clean not in self.files:
                return  # a folder entry repeated: harmless
            if clean not in self._ambiguous:  # listed once, however many times it appears
                self._ambiguous.add(clean)
                self.problems.append((clean, "the name appears more than once in the archive: ambiguous, not read"))
            self.files.pop(clean, None)
            return
        self._seen.add(clean)
        for depth in range(len(parts)):
            parent, child = "/".join(parts[:depth]), parts[depth]
            self.children.setdefault(parent, set()).add(child)
        if is_dir:
            self.children.setdefault(clean, set())
        else:
            self.files[clean] = payload

    def _finish(self) -> None:
        for name in sorted(set(self.files) & set(self.children)):
            del self.files[name]
            self.problems.append((name, "both a file and a folder in the archive: ambiguous, not read"))

    def read(self, name: str) -> bytes:
        raise NotImplementedError
