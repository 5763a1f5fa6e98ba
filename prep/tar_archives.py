"""Tar archives read in place: uncompressed tars by offset, tar.gz by streaming.

- `TarArchive` (.tar): ILSVRC2012_img_train.tar is a tar of 1,000 per-class tars (148 GB),
  ILSVRC2012_img_val.tar one of 50,000 JPEGs. Only the headers are read to list them; a
  member that is itself a .tar is listed as a folder of its members, each member's data
  located by its offset in the outer file, so every worker reads any member with one pread.
- `TarGzArchive` (.tar.gz, .tgz): one sequential listing pass (names, sizes, the bomb checks
  measured while inflating). Non-image members (CIFAR's pickles, label files) are kept in
  memory for the layout readers; image members are not -- Hugging Face's train archives
  are ~30 GB each -- and are read by one more streaming pass (`stream_members`) in which
  prep's decode phase gets them in archive order (prep/streamed_patches.py).
"""
from __future__ import annotations

import io
import os
import tarfile
import zlib
from collections import Counter

from shared.patch import IMAGE_SUFFIXES

from .archive_base import (MAX_MEMBER_BYTES, MAX_RATIO, UNSAFE, Archive, DamagedMember, bomb_problem, clean_name,
                           unsafe_name)

KEEP_IN_MEMORY = 256 << 20  # non-image tar.gz members up to this size are kept (CIFAR's largest: 31 MB)


class _Window(io.RawIOBase):
    """Bytes [start, start + size) of an open file, as a seekable file of its own."""

    def __init__(self, f, start: int, size: int):
        self.f, self.start, self.size, self.pos = f, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = {0: offset, 1: self.pos + offset, 2: self.size + offset}[whence]
        return self.pos

    def readinto(self, buffer) -> int:
        n = max(0, min(len(buffer), self.size - self.pos))
        data = os.pread(self.f.fileno(), n, self.start + self.pos)
        buffer[:len(data)] = data
        self.pos += len(data)
        return len(data)


AMBIGUOUS_TAR = "this inner tar appears {} times in the archive: ambiguous, none of its copies read"


class TarArchive(Archive):
    """An uncompressed tar; members that are tars are folders of their members."""

    def __init__(self, path: str):
        super().__init__(path)
        self._fd, self._pid = -1, None
        with open(path, "rb") as f:
            try:
                self._list(f, 0, os.fstat(f.fileno()).st_size, "", nested=True)
            except (tarfile.TarError, EOFError, OSError) as exc:
                raise ValueError(f"{path}: not a readable tar ({type(exc).__name__}: {exc})") from None
        self._finish()

    def _list(self, f, start: int, size: int, prefix: str, nested: bool) -> None:
        with tarfile.open(fileobj=_Window(f, start, size), mode="r:") as tar:
            members = list(tar)
        # an inner tar named twice (a class tar in ILSVRC2012_img_train.tar) is ambiguous as a whole,
        # as every other repeated name is: both copies unread, never the union of their images
        inner = Counter(clean_name(m.name) for m in members
                        if nested and m.isfile() and m.name.lower().endswith(".tar"))
        for member in members:
            name = prefix + member.name
            if prefix and unsafe_name(member.name):  # the outer name is checked by _add
                self.problems.append((name, UNSAFE))
            elif member.isdir():
                self._add(name, True, None)
            elif not member.isfile():
                self.problems.append((name, "link or special member: not read"))
            elif nested and member.name.lower().endswith(".tar"):
                times = inner[clean_name(member.name)]
                if times > 1:
                    if (clean_name(name), AMBIGUOUS_TAR.format(times)) not in self.problems:
                        self.problems.append((clean_name(name), AMBIGUOUS_TAR.format(times)))
                    continue
                self._add(name, True, None)
                try:
                    self._list(f, start + member.offset_data, member.size, name.rstrip("/") + "/", False)
                except (tarfile.TarError, EOFError) as exc:
                    self.problems.append((name, f"damaged inner tar ({exc}): not read"))
            elif member.size > MAX_MEMBER_BYTES:
                self.problems.append((name, bomb_problem(member.size, member.size)))
            else:
                self._add(name, False, (start + member.offset_data, member.size))

    def read(self, name: str) -> bytes:
        offset, size = self.files[name]
        if self._pid != os.getpid():  # a forked worker opens its own descriptor
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        data = os.pread(self._fd, size, offset)
        if len(data) != size:
            raise DamagedMember(f"damaged archive member: {len(data)} of {size} bytes (the tar is cut short)")
        return data


class CountingReader(io.RawIOBase):
    """A file that counts the bytes read from it: the compressed position of a gzip stream."""

    def __init__(self, f):
        self.f, self.count = f, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self.f.readinto(buffer)
        self.count += n or 0
        return n


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


class TarGzArchive(Archive):
    """A tar.gz, listed in one streaming pass; each member checked against the bomb limits
    as it is inflated (a member inflating past MAX_RATIO times the compressed bytes it
    consumed, once past 1 MiB, is dropped at once, its data never kept)."""

    streamed = True

    def __init__(self, path: str):
        super().__init__(path)
        self.order: list[str] = []  # members in archive order: the decode pass reads them so
        raw, tar = open(path, "rb"), None
        try:  # opening reads the gzip header: a file that is not gzip fails here
            counter = CountingReader(raw)
            tar = tarfile.open(fileobj=io.BufferedReader(counter, 1 << 16), mode="r|gz")
            for member in tar:
                self._member(tar, member, counter)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise ValueError(f"{path}: not a readable tar.gz ({type(exc).__name__}: {exc})") from None
        finally:
            if tar is not None:
                tar.close()
            raw.close()
        self._finish()

    def _member(self, tar, member, counter) -> None:
        if member.isdir():
            self._add(member.name, True, None)
        elif not member.isfile():
            self.problems.append((member.name, "link or special member: not read"))
        elif member.size > MAX_MEMBER_BYTES:
            self.problems.append((member.name, bomb_problem(member.size, 0)))
        else:
            keep = member.size <= KEEP_IN_MEMORY and not is_image_name(member.name)
            data = self._inflate(tar.extractfile(member), member, counter, keep)
            if data is not False:
                self._add(member.name, False, data)
                self.order.append(member.name)

    def _inflate(self, f, member, counter, keep: bool):
        """The member's bytes (None when not kept), or False for a bomb."""
        start, chunks, got = counter.count, [], 0
        while chunk := f.read(1 << 20):
            got += len(chunk)
            if keep:
                chunks.append(chunk)
            if bomb_problem(got, max(1, counter.count - start)):
                self.problems.append((member.name, f"inflates past {MAX_RATIO}x its compressed size: not read"))
                while f.read(1 << 20):  # skip the rest without keeping it
                    pass
                return False
        return b"".join(chunks) if keep else None

    def read(self, name: str) -> bytes:
        data = self.files[name]
        if data is not None:
            return data
        for _, data in self.stream_members({name}):  # an image member outside the decode pass: slow, correct
            return data
        raise DamagedMember(f"damaged archive member {name!r}: not found on a second pass")

    def stream_members(self, names: set[str]):
        """(name, bytes) of the members in `names`, in archive order, one at a time."""
        raw, tar = open(self.path, "rb"), None
        try:
            tar = tarfile.open(fileobj=raw, mode="r|gz")
            for member in tar:
                if member.isfile() and clean_name(member.name) in names:
                    yield clean_name(member.name), tar.extractfile(member).read()
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise ValueError(f"{self.path}: damaged tar.gz on the decode pass ({exc})") from None
        finally:
            if tar is not None:
                tar.close()
            raw.close()
