"""`alexnet-prep`: shard a raw dataset, compute its statistics, verify a dataset folder, or
synthesise a demo set.

Exit status of `shard` (shared/exit_status.py): 0 done; 1 crashed, interrupted or the
environment failed (re-run the same command to resume); 2 refused (bad arguments or input,
nothing written); 3 done, but some inputs were skipped (all listed in manifest.json;
--allow-skips makes this 0). `verify`: 0 intact, 1 problems found (each named). Every command
runs in `error_boundary`: a fault is one line, never a traceback. Prep never imports torch
(tests/test_cli.py checks).
"""
from __future__ import annotations

import os
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Optional

import typer

from shared.exit_status import (DONE_WITH_SKIPS, error_boundary, fail, one_value_per_option_group, package_version,
                                sigterm_as_interrupt)
from shared.manifest import MANIFEST_NAME, Manifest, read_manifest
from shared.stats import STATS_NAME

from .config import RANGES, PrepConfig

# The stages' modules (numpy, Pillow, simplejpeg) are imported by the commands that run
# them: `alexnet-prep --help` takes 0.08 s, not 0.2 (typer alone: 0.06).

app = typer.Typer(cls=one_value_per_option_group(), add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="Offline stage: raw images -> 256x256 WebDataset shards + mean/PCA stats.")
FIELDS = {f.name: f for f in fields(PrepConfig)}


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"alexnet-prep {package_version()}")
        raise typer.Exit()


@app.callback()
def _before_every_command(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                                      help="Print the version and exit.")) -> None:
    sigterm_as_interrupt()  # SIGTERM stops any command as Ctrl-C does: one line, exit 1, resumable
SHOW_SKIPS = 5


# shard --help's panels; every PrepConfig field in exactly one (tests/test_cli.py)
PANELS = {"Input": ["src", "task", "max_pixels"], "Splits": ["holdout", "seed"],
          "Output": ["out", "size", "quality", "resample", "shard_size", "overwrite", "allow_skips"],
          "Machinery": ["workers", "part"]}
PANEL_OF = {name: panel for panel, names in PANELS.items() for name in names}
# The names practitioners type (torchvision references: --output-dir, -j), the old ones kept
FLAGS = {"out": ("--output-dir", "--out"), "workers": ("--workers", "-j"), "task": ("--form", "--task")}


def opt(name: str):
    """A flag for PrepConfig field `name`: its names, help, range and default come from the config."""
    f = FIELDS[name]
    default = f.default if f.default is not MISSING else None
    numeric = name in RANGES and not RANGES[name].startswith("one of")  # choices are listed by the help itself
    shown = (f" Range: {RANGES[name]}." if numeric else "") + (
        "" if default is None or default is False else f" \\[default: {default}]")
    flags = FLAGS.get(name, ("--" + name.replace("_", "-"),))
    if f.type in ("bool", bool):
        flags = (flags[0],)
    return typer.Option(None, *flags, help=f.metadata["help"] + shown, rich_help_panel=PANEL_OF[name],
                        show_default=False)


def print_summary(manifest: Manifest, out: Path) -> None:
    for name, split in manifest.splits.items():
        typer.echo(f"  {name:8s} {split.samples:>9,d} samples in {len(split.shards):>5,d} shards")
    for entry in manifest.ignored[:SHOW_SKIPS]:
        typer.echo(f"  ignored  {entry['path']}: {entry['reason']}")
    if len(manifest.ignored) > SHOW_SKIPS:
        typer.echo(f"  ignored  ... {len(manifest.ignored) - SHOW_SKIPS} more, listed in {out / MANIFEST_NAME}")
    if manifest.skipped:
        typer.secho(f"  skipped  {len(manifest.skipped)} inputs (all listed in {out / MANIFEST_NAME}):",
                    fg="yellow", err=True)
        for skip in manifest.skipped[:SHOW_SKIPS]:
            typer.echo(f"    {skip.path} ({skip.split}): {skip.reason}", err=True)


@app.command()
def shard(
    src: Path = typer.Option(..., help=FIELDS["src"].metadata["help"], rich_help_panel="Input"),
    task: Optional[str] = opt("task"),
    out: Optional[Path] = opt("out"),
    workers: Optional[int] = opt("workers"),
    size: Optional[int] = opt("size"),
    quality: Optional[int] = opt("quality"),
    resample: Optional[str] = opt("resample"),
    shard_size: Optional[int] = opt("shard_size"),
    holdout: Optional[int] = opt("holdout"),
    seed: Optional[int] = opt("seed"),
    max_pixels: Optional[int] = opt("max_pixels"),
    part: Optional[str] = opt("part"),
    allow_skips: Optional[bool] = opt("allow_skips"),
    overwrite: Optional[bool] = opt("overwrite"),
):
    """Write 256x256 JPEG shards (§2: shorter side to 256, central crop) + manifest.json."""
    given = dict(src=src, task=task, out=out, workers=workers, size=size, quality=quality, resample=resample,
                 shard_size=shard_size, holdout=holdout, seed=seed, max_pixels=max_pixels, part=part,
                 allow_skips=allow_skips, overwrite=overwrite)
    with error_boundary():
        from .detect_layout import read_source
        from .output_folder import check_out_outside_src
        from .write_shards import write_dataset

        cfg = PrepConfig(**{k: v for k, v in given.items() if v is not None})
        if cfg.out is not None:
            check_out_outside_src(cfg.src, cfg.out)  # before listing: the output must not be read as input
        source = read_source(cfg.src, cfg.task)
        target = cfg.out or Path("shards") / source.task
        check_out_outside_src(cfg.src, target)
        typer.echo(f"{cfg.src}: layout {source.layout}, {len(source.classes)} classes, "
                   + ", ".join(f"{k} {len(v):,d}" for k, v in source.items.items()) + f" -> {target}")
        if source.reading:
            typer.echo(f"  {source.reading}")
        manifest = write_dataset(source, cfg, target)
    if manifest is None:
        return
    print_summary(manifest, target)
    if manifest.skipped and not cfg.allow_skips:
        typer.secho(f"{len(manifest.skipped)} inputs skipped; exit status {DONE_WITH_SKIPS} (pass --allow-skips to "
                    f"accept)", fg="red", err=True)
        raise typer.Exit(DONE_WITH_SKIPS)


@app.command()
def verify(
    shards: Optional[Path] = typer.Option(None, help="Dataset folder (default: every ./shards/* with a manifest)."),
    workers: int = typer.Option(4, min=1, max=256, help="Files read at once."),
):
    """Check a dataset folder against its manifest: every shard's size, sha256, member order
    and sample count, and stats.json. Names each bad file; exit status 1 if any."""
    from .verify import verify_dataset

    roots = [shards] if shards is not None else sorted(p.parent for p in Path("shards").glob(f"*/{MANIFEST_NAME}"))
    if not roots:
        fail("no dataset folders in ./shards/: pass --shards DIR")
    bad = 0
    for root in roots:
        with error_boundary():
            read_manifest(root)  # no dataset, or a manifest that cannot be read: refused (2), as every command does
            problems, checked = verify_dataset(root, workers)
        for problem in problems:
            typer.secho(f"{root}: {problem}", fg="red", err=True)
        typer.echo(f"{root}: {checked} shards checked, " + (f"{len(problems)} problems" if problems else "intact"))
        bad += bool(problems)
    if bad:
        raise typer.Exit(1)


@app.command()
def stats(
    shards: Optional[Path] = typer.Option(None, help="Dataset folder (default: every ./shards/* lacking stats)."),
    workers: int = typer.Option(os.cpu_count() or 1, min=1, max=1024, help="Processes."),
    mean_image: bool = typer.Option(True, help="Also save the 256x256 per-pixel mean image (cuda-convnet's)."),
):
    """Per-channel mean (§2) and RGB covariance eigenvectors/values (§4.1) of the train split."""
    from .compute_stats import compute_rgb_stats

    if shards is not None:
        roots = [shards]
    else:
        found = sorted(p.parent for p in Path("shards").glob(f"*/{MANIFEST_NAME}"))
        if not found:
            fail("no dataset folders in ./shards/: pass --shards DIR")
        roots = [root for root in found if not (root / STATS_NAME).exists()]
        typer.echo(f"datasets lacking stats: {', '.join(map(str, roots)) or 'none'} ({len(found)} in ./shards/; "
                   f"--shards DIR computes one again)")
    for root in roots:
        with error_boundary():
            result = compute_rgb_stats(root, workers, mean_image)
        typer.echo(f"{root / STATS_NAME}: {result.image_count:,d} images, mean RGB "
                   + " ".join(f"{m:.2f}" for m in result.mean_rgb)
                   + ", eigenvalues " + " ".join(f"{v:.1f}" for v in result.eigenvalues))


@app.command()
def synth(
    out: Path = typer.Option(..., help="Folder to write a Kaggle-layout dataset into."),
    classes: int = typer.Option(4, min=2, max=8, help="Number of classes."),
    train_per_class: int = typer.Option(60, min=1, max=10_000, help="Training images per class."),
    val_per_class: int = typer.Option(10, min=1, max=10_000, help="Validation images per class."),
    seed: int = typer.Option(0, min=0),
):
    """Generate a small learnable dataset (coloured shapes on textures) in the Kaggle ImageNet layout."""
    from shared.output_paths import check_output_folder

    from .synthetic import write_synthetic_kaggle

    with error_boundary():
        check_output_folder(out, "--out")
        write_synthetic_kaggle(out, classes, train_per_class, val_per_class, seed)
    typer.echo(f"{out}: {classes} classes, {classes * train_per_class} train, {classes * val_per_class} val")

