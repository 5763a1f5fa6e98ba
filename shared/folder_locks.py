"""Who may write a folder while whom reads it: flock(2) on a `.lock` file inside it.

A dataset folder: `alexnet-prep shard` and `stats` write it under an exclusive lock
(`DatasetWriteLock`); `alexnet-train` and `evaluate` read it under a shared one
(`DatasetReadLock`) for as long as they run. So `shard --overwrite` cannot rewrite the shards a
training is reading (it rewrote them, and the training ended with exit 0 on mixed data), and a
training does not start on a dataset being written. A run folder: one writer at a time
(`RunFolderLock`): a second training or evaluation into it is refused at start, naming the
holder (it died later on the first one's temporary files).

An exclusive holder writes "pid N on host since T" into the file and clears it when done, so a
refusal can say who holds it; shared holders write nothing. Locks end with the process (and
with the workers that inherited the descriptor). Where the file cannot be opened (a read-only
copy of a dataset), nothing is locked: training still notices a changed shard
(train/dataset_folder.py)."""
from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

from .manifest import MANIFEST_NAME

LOCK_NAME = ".lock"


def _holder_line() -> bytes:
    return f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode()


class _ExclusiveLock:
    what = "folder"

    def __init__(self, folder: Path):
        self.folder, self.path, self.fd = Path(folder), Path(folder) / LOCK_NAME, -1

    def refusal(self, holder: str) -> str:
        raise NotImplementedError

    def __enter__(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 400, 0).decode(errors="replace").strip()
            os.close(self.fd)
            raise FileExistsError(self.refusal(holder)) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, _holder_line(), 0)
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def release(self) -> None:
        if self.fd >= 0:
            try:
                os.ftruncate(self.fd, 0)  # no holder named once it is free
            except OSError:
                pass
            os.close(self.fd)  # the lock ends once no worker holds the descriptor either
            self.fd = -1


class DatasetWriteLock(_ExclusiveLock):
    """`alexnet-prep shard` and `stats`: the only writer of a dataset folder, with no reader."""

    def refusal(self, holder: str) -> str:
        if holder:
            return (f"{self.folder} is being written by another alexnet-prep run ({holder}); wait for it to finish or "
                    f"stop it (its pool workers hold the lock too)")
        return (f"{self.folder} is being read by a training or evaluation run (a shared lock on {self.path}); wait "
                f"for it to end, or write the new dataset elsewhere (--out)")


class RunFolderLock(_ExclusiveLock):
    """A training or evaluation writing into a run folder."""

    def refusal(self, holder: str) -> str:
        return (f"{self.folder} is in use by another alexnet-train ({holder or 'a running process'}); wait for it to "
                f"end or stop it, or pass another --run-name / --output-dir")


class DatasetReadLock:
    """A training or evaluation reading a dataset folder: shared with other readers, never held
    while a writer is at work."""

    def __init__(self, folder: Path):
        self.folder, self.path, self.fd = Path(folder), Path(folder) / LOCK_NAME, -1

    def __enter__(self) -> "DatasetReadLock":
        made = (self.folder / MANIFEST_NAME).is_file()  # only a dataset gets a lock file made for it
        for flags in (os.O_RDONLY, os.O_RDWR | os.O_CREAT) if made else (os.O_RDONLY,):
            try:  # a dataset prepped before the lock had no file
                self.fd = os.open(self.path, flags, 0o644)
                break
            except OSError:
                continue
        if self.fd < 0:
            return self  # a read-only copy without the file: nothing to lock
        try:
            fcntl.flock(self.fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 400, 0).decode(errors="replace").strip() or "a running process"
            os.close(self.fd)
            raise FileExistsError(f"{self.folder} is being written by alexnet-prep ({holder}); wait for it to finish, "
                                  f"then start again") from None
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
