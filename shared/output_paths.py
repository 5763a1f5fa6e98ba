"""The one rule for every path an output flag names, in both tools (docs/trust.md): an
output is a new name or a regular file (a folder, for a folder flag), and it is never an
input of the same command -- not the same file (through a symlink or a hard link too), not
inside a dataset folder the command reads, not a record of a run folder it reads. Checked
before any work; a refusal is a ValueError naming the flag and the path (exit 2).

Without it `evaluate --predictions` could replace, with exit 0, the checkpoint, the ReaL file,
the dataset's manifest.json, a shard or a device node."""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterable

KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
         (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symlink"))


def _kind(mode: int) -> str:
    return next((name for test, name in KINDS if test(mode)), "not a regular file")


def _real(path) -> Path:
    return Path(os.path.realpath(path))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _mode(path: Path, flag: str) -> int | None:
    """What `path` leads to (st_mode, symlinks followed), or None for a new name."""
    try:
        return os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            raise ValueError(f"{flag} {path}: a symlink to nothing; name something new") from None
        return None
    except OSError as exc:
        raise ValueError(f"{flag} {path}: cannot be checked ({exc.strerror})") from None


def same_file(a, b) -> bool:
    """Whether two paths name one file (hard links and symlinks included); False where
    either does not exist."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _never_an_input(path: Path, flag: str, inputs: Iterable, input_folders: Iterable) -> None:
    real = _real(path)
    for given in (p for p in inputs if p is not None):
        if same_file(path, given) or real == _real(given):
            raise ValueError(f"{flag} {path}: is {given}, an input of this command; name a new file")
    for folder in (f for f in input_folders if f is not None):
        if _inside(real, _real(folder)):
            raise ValueError(f"{flag} {path}: inside {folder}, which this command reads; write outside it")
        linked = _hard_link_into(path, folder)
        if linked is not None:
            raise ValueError(f"{flag} {path}: is {linked} (a hard link), inside {folder}, which this command "
                             f"reads; name a new file")


def _hard_link_into(path: Path, folder) -> Path | None:
    """The file of `folder` (at any depth) that `path` is a hard link of, if it is one: only
    a file with more than one link is looked for, so the usual case costs one stat."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if st.st_nlink < 2 or not stat.S_ISREG(st.st_mode):
        return None
    for root, _, names in os.walk(folder):
        for name in names:
            try:
                other = os.stat(os.path.join(root, name))
            except OSError:
                continue
            if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
                return Path(root, name)
    return None


def check_output_file(path, flag: str, *, inputs: Iterable = (), input_folders: Iterable = (),
                      protected=lambda path: False) -> Path:
    """`path` may be written: a new name in an existing folder, or a regular file that is
    no input, lies in no input folder and is not `protected` (e.g. a run's checkpoint)."""
    path = Path(path)
    mode = _mode(path, flag)
    if mode is not None and not stat.S_ISREG(mode):
        raise ValueError(f"{flag} {path}: {_kind(mode)}, not a regular file; name a new file")
    if not _real(path).parent.is_dir():
        raise ValueError(f"{flag} {path}: folder {path.parent} does not exist")
    _never_an_input(path, flag, inputs, input_folders)
    if mode is not None and protected(_real(path)):
        raise ValueError(f"{flag} {path}: a record of a run this command reads; name a new file")
    return path


def check_output_folder(path, flag: str, *, inputs: Iterable = (), input_folders: Iterable = (),
                        writes: Iterable[str] = ()) -> Path:
    """`path` may be written into: a new name or a folder, not inside an input folder, and
    none of the files the command `writes` there (names) is one of its inputs."""
    path = Path(path)
    mode = _mode(path, flag)
    if mode is not None and not stat.S_ISDIR(mode):
        raise ValueError(f"{flag} {path}: {'a file' if stat.S_ISREG(mode) else _kind(mode)}, not a folder; "
                         f"name a folder")
    _never_an_input(path, flag, (), input_folders)
    inputs = [p for p in inputs if p is not None]
    for name in writes:
        target = path / name
        for given in inputs:
            if same_file(target, given) or _real(target) == _real(given):
                raise ValueError(f"{flag} {path}: the {name} written there would replace {given}, an input of "
                                 f"this command; name another folder")
    return path
