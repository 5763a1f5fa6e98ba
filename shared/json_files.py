"""Atomic writes for every file both stages leave on disk (records, checkpoints): a reader
sees the old file or the new one, never half of one -- written to `<name>.tmp`, flushed to
disk, then renamed. JSON records are written and read here."""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable


@contextmanager
def naming(path):
    """An OSError raised while writing `path` names it: a write() or fsync() that fails for
    a full disk carries no file name ("?: No space left on device" was all a user saw)."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """`write(f)` fills a temporary file, which then replaces `path` in one rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with naming(path), open(tmp, "wb") as f:
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
    return parse_json_text(path.read_bytes(), path)


def parse_json_text(data: bytes, path) -> object:
    """JSON from untrusted bytes: bad syntax, text that is not UTF-8, nesting deep enough to
    exhaust the parser's stack and integers too long to convert are all one ValueError
    naming the file (json raises RecursionError and a bare ValueError for the last two)."""
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start:,})") from None
    except RecursionError:
        raise ValueError(f"{path}: not valid JSON (nested too deeply to read)") from None
    except ValueError as exc:  # JSONDecodeError, and "Exceeds the limit (4300 digits)"
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


def json_field(d, key: str, kind, path, where: str = ""):
    """d[key], which must be of `kind` (bool is not an int here): else one line naming the
    file and the field. The one type check of the JSON files both stages read."""
    if not isinstance(d, dict) or key not in d:
        raise ValueError(f"{path}: {where}{key!r} missing")
    value = d[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise ValueError(f"{path}: {where}{key!r} is {type(value).__name__} {str(value)[:40]!r}, expected {names}")
    return value
