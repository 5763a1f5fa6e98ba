"""Atomic writes for every file both stages leave on disk (records, checkpoints): a reader
sees the old file or the new one, never half of one -- written to `<name>.tmp`, flushed to
disk, then renamed. JSON records are written and read here."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import BinaryIO, Callable


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """`write(f)` fills a temporary file, which then replaces `path` in one rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # disk full, read-only, Ctrl-C: no half-written file stays behind
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | os.PathLike, obj) -> Path:
    data = (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()
    return write_atomic(path, lambda f: f.write(data))


def read_json(path: str | os.PathLike, if_missing: str):
    """The parsed file; a missing file raises FileNotFoundError with `if_missing` (what to
    run to make it), bad JSON a ValueError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {if_missing}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
