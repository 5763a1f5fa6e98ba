"""`alexnet-prep`: shard a raw dataset, compute its statistics, or synthesise a demo set."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from shared.manifest import MANIFEST_NAME, Manifest
from shared.stats import STATS_NAME

from .compute_stats import compute_rgb_stats
from .config import TASKS, PrepConfig
from .detect_layout import read_source
from .synthetic import write_synthetic_kaggle
from .write_shards import write_dataset

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Offline stage: raw images -> 256x256 WebDataset shards + mean/PCA stats.")
_DEFAULT = PrepConfig(src=Path("."))
SHOW_SKIPS = 5


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(2)


def print_summary(manifest: Manifest, out: Path) -> None:
    for name, split in manifest.splits.items():
        typer.echo(f"  {name:8s} {split.samples:>9,d} samples in {len(split.shards):>5,d} shards")
    for entry in manifest.ignored:
        typer.echo(f"  ignored  {entry['path']}: {entry['reason']}")
    if manifest.skipped:
        typer.secho(f"  skipped  {len(manifest.skipped)} inputs (all listed in {out / MANIFEST_NAME}):",
                    fg="yellow", err=True)
        for skip in manifest.skipped[:SHOW_SKIPS]:
            typer.echo(f"    {skip.path} ({skip.split}): {skip.reason}", err=True)


@app.command()
def shard(
    src: Path = typer.Option(..., help="Raw dataset folder (layout auto-detected)."),
    task: Optional[str] = typer.Option(None, help=f"Force a layout: {'|'.join(TASKS)}."),
    out: Optional[Path] = typer.Option(None, help="Output folder (default: shards/<task>)."),
    workers: int = typer.Option(_DEFAULT.workers, help="Processes (default: all cores)."),
    size: int = typer.Option(_DEFAULT.size, help="Patch side in px (§2: 256)."),
    quality: int = typer.Option(_DEFAULT.quality, help="JPEG quality of stored patches."),
    resample: str = typer.Option(_DEFAULT.resample, help="bilinear|bicubic|lanczos."),
    shard_size: int = typer.Option(_DEFAULT.shard_size, help="Samples per shard."),
    holdout: Optional[int] = typer.Option(None, help="Holdout size taken from train (default: per task, <=10%)."),
    seed: int = typer.Option(_DEFAULT.seed, help="Seed of the holdout draw and train shuffle."),
    part: Optional[str] = typer.Option(None, help="k/N: write every N-th shard (k=1..N) on this machine."),
    allow_skips: bool = typer.Option(False, help="Exit 0 even if some inputs were skipped."),
    overwrite: bool = typer.Option(False, help="Rebuild an existing complete dataset."),
):
    """Write 256x256 JPEG shards (§2: shorter side to 256, central crop) + manifest.json."""
    cfg = PrepConfig(src=src, task=task, out=out, size=size, quality=quality, resample=resample,
                     shard_size=shard_size, holdout=holdout, seed=seed, workers=workers, part=part,
                     allow_skips=allow_skips, overwrite=overwrite)
    try:
        cfg.parse_part()
        source = read_source(src, task)
        target = out or Path("shards") / source.task
        typer.echo(f"{src}: layout {source.layout}, {len(source.classes)} classes, "
                   + ", ".join(f"{k} {len(v):,d}" for k, v in source.items.items()) + f" -> {target}")
        manifest = write_dataset(source, cfg, target)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        _fail(str(exc))
    if manifest is None:
        return
    print_summary(manifest, target)
    if manifest.skipped and not allow_skips:
        typer.secho(f"{len(manifest.skipped)} inputs skipped; exit status 1 (pass --allow-skips to accept)",
                    fg="red", err=True)
        raise typer.Exit(1)


@app.command()
def stats(
    shards: Optional[Path] = typer.Option(None, help="Dataset folder (default: every ./shards/* lacking stats)."),
    workers: int = typer.Option(os.cpu_count() or 1, help="Processes."),
    mean_image: bool = typer.Option(True, help="Also save the 256x256 per-pixel mean image (cuda-convnet's)."),
):
    """Per-channel mean (§2) and RGB covariance eigenvectors/values (§4.1) of the train split."""
    if shards is not None:
        roots = [shards]
    else:
        roots = sorted(p.parent for p in Path("shards").glob(f"*/{MANIFEST_NAME}")
                       if not (p.parent / STATS_NAME).exists())
        typer.echo("datasets lacking stats: " + (", ".join(map(str, roots)) or "none"))
    for root in roots:
        try:
            result = compute_rgb_stats(root, workers, mean_image)
        except (FileNotFoundError, ValueError, KeyError) as exc:
            _fail(str(exc))
        typer.echo(f"{root / STATS_NAME}: {result.image_count:,d} images, mean RGB "
                   + " ".join(f"{m:.2f}" for m in result.mean_rgb)
                   + ", eigenvalues " + " ".join(f"{v:.1f}" for v in result.eigenvalues))


@app.command()
def synth(
    out: Path = typer.Option(..., help="Folder to write a Kaggle-layout dataset into."),
    classes: int = typer.Option(4, help="Number of classes (<= 8)."),
    train_per_class: int = typer.Option(60, help="Training images per class."),
    val_per_class: int = typer.Option(10, help="Validation images per class."),
    seed: int = typer.Option(0),
):
    """Generate a small learnable dataset (coloured shapes on textures) in the Kaggle ImageNet layout."""
    try:
        write_synthetic_kaggle(out, classes, train_per_class, val_per_class, seed)
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(f"{out}: {classes} classes, {classes * train_per_class} train, {classes * val_per_class} val")

