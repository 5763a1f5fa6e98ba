"""What every run leaves behind: resolved config, git hash, per-epoch metrics, results.json;
and the Markdown error table over runs."""
from __future__ import annotations

import functools
import json
import subprocess
import threading
import time
from pathlib import Path

from shared.datasets import KNOWN
from shared.json_files import json_field, naming, read_json, write_atomic, write_json_atomic

REPO = Path(__file__).resolve().parents[1]
RESULTS_NAME = "results.json"
METRICS_NAME = "metrics.jsonl"
CURVE_NAME = "curve.png"  # training loss and holdout error per epoch (train/figures.py)
CONFIG_NAME = "config.json"
# What evaluate writes beside results.json (train/figures.py)
FIGURE_NAMES = ("figure3_kernels.png", "figure4_top5.png", "figure4_neighbours.png")


def is_run_record(path: Path) -> bool:
    """A file a run keeps in its folder (checkpoints, metrics, config, results, curves, event
    logs): never the target of an output flag (shared/output_paths.py)."""
    name = Path(path).name
    return (name in (RESULTS_NAME, METRICS_NAME, CURVE_NAME, CONFIG_NAME, *FIGURE_NAMES) or name.endswith(".pt")
            or name.startswith("events.out.tfevents"))


@functools.cache
def git_hash() -> str:
    """The checkout's commit (and -dirty) when first asked in this process. The commands ask
    at start (`train.cli.main`): a checkout that moves on during a run must not relabel the
    results of the code that was loaded (it did: a results.json named a later commit)."""
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return rev + ("-dirty" if dirty else "")


def create_run_dir(logdir: Path, name: str | None, task: str) -> Path:
    """A new run's folder; one holding another run's records is refused (appending to its
    metrics.jsonl or replacing its best.pt would mix two runs)."""
    run = logdir / (name or f"{task}-{time.strftime('%Y%m%d-%H%M%S')}")
    for folder in (logdir, run):
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"{folder} is a file, not a folder: pass another --logdir or --run-name")
    taken = [n for n in (METRICS_NAME, "last.pt", "best.pt", RESULTS_NAME) if (run / n).exists()]
    if taken:
        advice = (f"or --resume {run / 'last.pt'} to continue it" if (run / "last.pt").is_file()
                  else "or delete it (it holds no last.pt to resume from)")
        raise FileExistsError(f"{run} already holds a run ({', '.join(taken)}): pass another --run-name, {advice}")
    run.mkdir(parents=True, exist_ok=True)
    return run


def run_id_of_folder(run: Path) -> str | None:
    """The run id config.json records (a run whose checkpoints predate their identity keeps the
    folder's), or None."""
    try:
        record = read_json(run / CONFIG_NAME, "")
    except (FileNotFoundError, ValueError):
        return None
    run_id = record.get("run_id") if isinstance(record, dict) else None
    return run_id if isinstance(run_id, str) and len(run_id) == 32 and run_id.isalnum() else None


def open_event_writer(folder: Path):
    """TensorBoard's writer for a run folder. A write that fails in its background thread (a
    full disk, a folder made read-only) is raised again in the main process at its next call,
    where the command's error boundary reports it in one line; the thread's own traceback,
    printed beside that line, is kept quiet."""
    from torch.utils.tensorboard import SummaryWriter

    previous = threading.excepthook
    if not getattr(previous, "quiet_event_writer", False):
        def hook(args) -> None:
            if type(args.thread).__name__ == "_AsyncWriterThread" and isinstance(args.exc_value, OSError):
                return
            previous(args)

        hook.quiet_event_writer = True
        threading.excepthook = hook
    return SummaryWriter(str(folder))


def append_metrics(run: Path, row: dict) -> None:
    with naming(run / METRICS_NAME), open(run / METRICS_NAME, "a") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")


def read_metrics(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a kill mid-write
    return rows


def rewrite_metrics(run: Path, last_epoch: int, last_row: dict | None, source: Path) -> None:
    """On resume: one row per epoch up to `last_epoch` (the checkpoint's), dropping rows of
    epochs about to be redone and duplicates, restoring the checkpoint's row if a kill lost it."""
    by_epoch: dict[int, dict] = {}
    for row in read_metrics(source):
        if isinstance(row.get("epoch"), int) and row["epoch"] <= last_epoch:
            by_epoch.setdefault(row["epoch"], row)  # the first row of an epoch is the one that finished it
    if last_row is not None:
        by_epoch[last_epoch] = last_row  # the checkpoint's own row is authoritative
    text = "".join(json.dumps(by_epoch[e], sort_keys=True) + "\n" for e in sorted(by_epoch)).encode()
    write_atomic(run / METRICS_NAME, lambda f: f.write(text))


# error@1, error@5 on the reported split
PAPER = {"imagenet": (0.407, 0.182)}  # Krizhevsky et al. 2012, Table 2, one CNN
# The PyTorch replication this project replaces (README, "Sources"): its results table.
REPLICATION = {name: d.seed_figure for name, d in KNOWN.items() if d.seed_figure is not None}
# Published figures shown beside ImageNet runs: (who, task, 10-view, centre, ReaL error@1, source)
REFERENCES = [
    ("the paper, one CNN", "imagenet", (0.407, 0.182), None, None, "Krizhevsky et al. 2012, Table 2"),
    ("Caffe bvlc_alexnet", "imagenet", None, (0.429, 0.198), None, "BVLC/caffe models/bvlc_alexnet/readme.md"),
    ("torchvision AlexNet (one tower, no LRN)", "imagenet", None, (0.43478, 0.20934), 0.3694,
     "AlexNet_Weights.IMAGENET1K_V1 docs (acc 56.522 / 79.066); ReaL from its top-5 predictions in the ImageNetV2 "
     "repository"),
    ("torchvision AlexNet (one tower, no LRN)", "imagenetv2-matched-frequency", None, (0.5602, 0.3261), None,
     "its top-5 predictions in the ImageNetV2 repository (Recht et al. 2019: 56.5 -> 44.0 accuracy)"),
]


def write_results(run: Path, manifest, cfg, metrics: dict, split: str, device: str, git: str, epochs: int,
                  shortfall: dict | None = None, extra: dict | None = None) -> dict:
    results = {
        "task": manifest.task, "classes": manifest.num_classes, "split": split,
        "epochs": epochs,
        "samples": metrics["samples"],
        "error@1": metrics["error@1"], "error@5": metrics["error@5"],  # 10 views (§4.1)
        "centre_error@1": metrics["centre_error@1"], "centre_error@5": metrics["centre_error@5"],
        "device": device, "git": git, "metrics": metrics,
        # fewer images than the official evaluation set (skips in prep): not comparable with the paper
        "complete": shortfall is None, "shortfall": shortfall,
        **(extra or {}),  # "real": ReaL error (train/per_sample.py)
    }
    write_json_atomic(run / RESULTS_NAME, results)
    return {**results, "run": str(run)}


def _pair(values) -> str:
    return f"{values[0]:.3f} / {values[1]:.3f}" if values else "–"


def _real(real: dict | None) -> str:
    return f"{_pair((real['error@1'], real['error@5']))} ({real['scored']:,} scored)" if real else "–"


def results_of(run: Path) -> list[dict]:
    """A run's results.json, then those of its other test sets (`evaluate` writes an ImageNetV2
    result to <run>/<task>/results.json)."""
    paths = [p for p in [Path(run) / RESULTS_NAME] + sorted(Path(run).glob(f"*/{RESULTS_NAME}")) if p.is_file()]
    if not paths:
        raise FileNotFoundError(f"{Path(run) / RESULTS_NAME} not found: evaluate the run first (alexnet-train "
                                f"evaluate)")
    return [parse_results(read_json(p, "evaluate the run first"), p) for p in paths]


def _rate(d, key: str, path, where: str = "") -> float:
    value = json_field(d, key, (float, int), path, where)
    if not 0 <= value <= 1:
        raise ValueError(f"{path}: {where}{key!r} is {value}, expected an error rate in 0..1")
    return value


def parse_results(d, path) -> dict:
    """What `table` reads of a results.json, checked (a results.json is a file anyone can
    hand over: a list, a missing task, null errors or half a ReaL block were internal errors)."""
    if not isinstance(d, dict):
        raise ValueError(f"{path}: holds a {type(d).__name__}, expected an object")
    for key in ("task", "split"):
        json_field(d, key, str, path)
    for key in ("samples", "epochs"):
        if json_field(d, key, int, path) < 0:
            raise ValueError(f"{path}: {key!r} is negative")
    for key in ("error@1", "error@5", "centre_error@1", "centre_error@5"):
        _rate(d, key, path)
    json_field({"complete": d.get("complete", True)}, "complete", bool, path)
    if d.get("real") is not None:
        real = json_field(d, "real", dict, path)
        for key in ("error@1", "error@5"):
            _rate(real, key, path, "real.")
        json_field(real, "scored", int, path, "real.")
    return d


# The results table, column by column: (header, the cell of one results.json record of a run)
TABLE_COLUMNS = (
    ("run", lambda run, r: Path(run).name),
    ("task", lambda run, r: r["task"]),
    ("split", lambda run, r: r["split"]),
    ("samples", lambda run, r: f"{r['samples']:,}" + ("" if r.get("complete", True) else " (incomplete)")),
    ("epochs", lambda run, r: str(r["epochs"])),
    ("ours 10-view err@1 / err@5", lambda run, r: _pair((r["error@1"], r["error@5"]))),
    ("ours centre", lambda run, r: _pair((r["centre_error@1"], r["centre_error@5"]))),
    ("ReaL err@1 / err@5 (10-view)", lambda run, r: _real(r.get("real"))),
    ("paper", lambda run, r: _pair(PAPER.get(r["task"]))),
    ("PyTorch replication", lambda run, r: _pair(REPLICATION.get(r["task"]))),
)


def format_table(runs: list[Path]) -> str:
    rows = ["| " + " | ".join(header for header, _ in TABLE_COLUMNS) + " |", "|---" * len(TABLE_COLUMNS) + "|"]
    tasks = set()
    for run in runs:
        for r in results_of(run):
            tasks.add(r["task"])
            rows.append("| " + " | ".join(cell(run, r) for _, cell in TABLE_COLUMNS) + " |")
    imagenet = any(task == "imagenet" or task.startswith("imagenetv2") for task in tasks)
    shown = REFERENCES if imagenet else []  # val, ReaL and ImageNetV2 are read together
    if shown:
        rows += ["", "Published figures (not runs of this toolkit):", "",
                 "| who | task | 10-view err@1 / err@5 | centre err@1 / err@5 | ReaL err@1 | source |",
                 "|---|---|---|---|---|---|"]
        rows += [f"| {who} | {task} | {_pair(ten)} | {_pair(centre)} | {f'{real:.3f}' if real else '–'} | {source} |"
                 for who, task, ten, centre, real, source in shown]
    return "\n".join(rows)
