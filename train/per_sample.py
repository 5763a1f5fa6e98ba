"""Per-sample results of an evaluation: each sample's top-5, the predictions file
(`alexnet-train evaluate --predictions FILE.jsonl`), and the ReaL labels scored against them.

ReaL (Beyer et al. 2020, "Are we done with ImageNet?"; google-research/reassessed-imagenet's
real.json): 50,000 lists of sorted-wnid class indices in val-file order, one per image
ILSVRC2012_val_%08d; 3,163 are empty. A prediction is correct when it is in the image's list;
images with empty lists are left out, so 46,837 are scored. error@5 here counts a sample as
correct when any of its top 5 is in the list (the paper reports ReaL accuracy@1 only).
Lists are matched to samples by key, never by position.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from shared.ilsvrc import VAL_IMAGES, VAL_KEY, is_ilsvrc_order
from shared.json_files import parse_json_text, write_atomic
from shared.manifest import MANIFEST_NAME

MAX_REAL_BYTES = 64 << 20  # real.json is ~1 MB


def top5_records(keys, labels: torch.Tensor, probs: torch.Tensor) -> list[dict]:
    values, indices = probs.topk(min(5, probs.shape[1]), dim=1)
    return [{"key": key, "label": int(y), "top5": idx, "probabilities": p}
            for key, y, idx, p in zip(keys, labels.tolist(), indices.tolist(), values.tolist())]


def gather_records(records: list[dict], d) -> list[dict]:
    """Every rank's records on every rank, in key order."""
    if d.enabled:
        import torch.distributed as dist

        parts = [None] * d.world
        dist.all_gather_object(parts, records)
        records = [r for part in parts for r in part]
    return sorted(records, key=lambda r: r["key"])


def require_ilsvrc_classes(manifest, shards, what: str) -> None:
    """ReaL and ImageNetV2 index ILSVRC-2012's classes in sorted-wnid order: a dataset with
    another class table would be scored in the wrong index space."""
    if not is_ilsvrc_order([c.wnid for c in manifest.classes]):
        raise ValueError(f"{Path(shards) / MANIFEST_NAME}: its {manifest.num_classes} classes are not ILSVRC-2012's "
                         f"in sorted-wnid order, which {what} index; shard ImageNet again with this version of "
                         f"alexnet-prep")


def load_real_labels(path: Path, manifest, shards) -> dict[str, list[int]]:
    """real.json as key -> list, validated: 50,000 lists of class indices in range, for a
    dataset whose classes are ILSVRC-2012's."""
    require_ilsvrc_classes(manifest, shards, "ReaL labels")
    classes = manifest.num_classes
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--real-labels {path}: no such file (real.json from "
                                f"github.com/google-research/reassessed-imagenet)")
    if path.stat().st_size > MAX_REAL_BYTES:
        raise ValueError(f"{path}: {path.stat().st_size:,} bytes; real.json is about 1 MB")
    lists = parse_json_text(path.read_bytes(), path)
    if not isinstance(lists, list) or len(lists) != VAL_IMAGES:
        raise ValueError(f"{path}: expected a list of {VAL_IMAGES:,} lists (one per val image, in file order), got "
                         f"{type(lists).__name__} of {len(lists) if isinstance(lists, list) else 0:,}")
    for n, labels in enumerate(lists):
        if not isinstance(labels, list) or not all(isinstance(c, int) and not isinstance(c, bool)
                                                   and 0 <= c < classes for c in labels):
            raise ValueError(f"{path}: entry {n} ({VAL_KEY.format(n + 1)}) is {repr(labels)[:60]}, expected a list "
                             f"of class indices 0..{classes - 1}")
    return {VAL_KEY.format(n + 1): labels for n, labels in enumerate(lists)}


def score_real(records: list[dict], real: dict[str, list[int]]) -> dict:
    """ReaL error@1 and @5 over the evaluated images whose list is not empty."""
    strangers = [r["key"] for r in records if r["key"] not in real]
    if strangers:
        raise ValueError(f"ReaL labels cover ImageNet's val images (ILSVRC2012_val_NNNNNNNN); {len(strangers)} "
                         f"evaluated samples are not among them (e.g. {strangers[0]!r})")
    scored = [r for r in records if real[r["key"]]]
    if not scored:
        raise ValueError("no evaluated image has a ReaL label (every matching list is empty)")
    hit1 = sum(r["top5"][0] in real[r["key"]] for r in scored)
    hit5 = sum(any(t in real[r["key"]] for t in r["top5"]) for r in scored)
    return {"error@1": 1 - hit1 / len(scored), "error@5": 1 - hit5 / len(scored), "scored": len(scored),
            "evaluated": len(records), "empty": len(records) - len(scored)}


def write_predictions(path: Path, ten: list[dict], centre: list[dict]) -> None:
    """One JSON line per sample, in key order: key, label, the 10-view top-5 and probabilities
    ("views": 10), and the centre crop's."""
    by_key = {r["key"]: r for r in centre}
    lines = []
    for r in ten:
        c = by_key[r["key"]]
        lines.append(json.dumps({"key": r["key"], "label": r["label"], "views": 10, "top5": r["top5"],
                                 "probabilities": r["probabilities"], "centre_top5": c["top5"],
                                 "centre_probabilities": c["probabilities"]}) + "\n")
    data = "".join(lines).encode()
    write_atomic(path, lambda f: f.write(data))
