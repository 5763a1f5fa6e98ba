"""Atomic JSON writes for every record both stages leave on disk: a reader sees the old
file or the new one, never half of one (write to `<name>.tmp`, then rename)."""
from __future__ import annotations

import json
import os
from pathlib import Path


def write_json_atomic(path: str | os.PathLike, obj) -> Path:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def read_json(path: str | os.PathLike, if_missing: str):
    """The parsed file; a missing file raises FileNotFoundError with `if_missing` (what to
    run to make it), bad JSON a ValueError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {if_missing}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
