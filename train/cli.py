"""`alexnet-train`: train (default command), evaluate a checkpoint, draw figures, print the table.

Options left unset keep TrainConfig's paper defaults (or a --preset's); `--help` names the
paper section behind each.
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import List, Optional

import torch
import typer

from .config import PRESETS, TASKS, TrainConfig

app = typer.Typer(add_completion=False, invoke_without_command=True,
                  help="Train the paper's AlexNet from alexnet-prep shards (default command), or "
                       "evaluate / figures / table.")
D = TrainConfig()


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(2)


@app.callback()
def train_command(
    ctx: typer.Context,
    shards: Optional[Path] = typer.Option(None, help="Dataset folder from alexnet-prep (manifest.json, stats.json)."),
    task: Optional[str] = typer.Option(None, help=f"Shortcut for --shards shards/<task>: {'|'.join(TASKS)}."),
    shard_urls: Optional[str] = typer.Option(None, help="Read shards from URLs, '{name}' = shard file name, "
                                             "e.g. 'pipe:aws s3 cp s3://b/imagenet/{name} -'; manifest and "
                                             "stats still come from --shards."),
    preset: Optional[str] = typer.Option(None, help=f"Named overrides: {', '.join(PRESETS)} (demo: 2 CPU cores, ~5 min)."),
    epochs: Optional[int] = typer.Option(None, help=f"§5: ~90 passes (default: {D.epochs})."),
    batch_size: Optional[int] = typer.Option(None, help=f"§5: global batch, split over ranks (default: {D.batch_size})."),
    optimizer: Optional[str] = typer.Option(None, help=f"sgd = §5's rule, adam = reference impl. (default: {D.optimizer})."),
    learn_rate: Optional[float] = typer.Option(None, help="§5: 0.01 for sgd; 1e-4 for adam (default: per optimizer)."),
    momentum: Optional[float] = typer.Option(None, help=f"§5 (default: {D.momentum})."),
    weight_decay: Optional[float] = typer.Option(None, help=f"§5, on weights (default: {D.weight_decay})."),
    lr_patience: Optional[int] = typer.Option(None, help=f"§5: epochs w/o holdout gain before lr/10 (default: {D.lr_patience})."),
    dropout: Optional[float] = typer.Option(None, help=f"§4.2 (default: {D.dropout})."),
    init: Optional[str] = typer.Option(None, help=f"§5 biases 1 (paper) or 0.1 (caffe) (default: {D.init})."),
    pca_std: Optional[float] = typer.Option(None, help=f"§4.1 lighting alpha std (default: {D.pca_std})."),
    normalize: Optional[str] = typer.Option(None, help=f"§2 'mean' subtraction; 'std' also divides (default: {D.normalize})."),
    seed: Optional[int] = typer.Option(None, help=f"[{D.seed}]"),
    workers: Optional[int] = typer.Option(None, help=f"Loader processes per rank (default: {D.workers})."),
    decode: Optional[str] = typer.Option(None, help="JPEG decoding: worker (loader processes) | device "
                                         "(nvJPEG on CUDA) (default: worker)."),
    steps_per_epoch: Optional[int] = typer.Option(None, help="[train samples // batch size]"),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda | cuda:N (default: auto)."),
    precision: Optional[str] = typer.Option(None, help="auto (bf16 autocast on cuda) | fp32 | bf16 (default: auto)."),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile (default: on for cuda)."),
    logdir: Optional[Path] = typer.Option(None, help=f"Runs go to <logdir>/<run-name> (default: {D.logdir})."),
    run_name: Optional[str] = typer.Option(None, help="[<task>-<timestamp>]"),
    extra_logging: Optional[bool] = typer.Option(None, "--extra-logging", help="Parameter/gradient histograms."),
    fast_dev_run: Optional[bool] = typer.Option(None, "--fast-dev-run", help="A few steps of train, holdout, val."),
    resume: Optional[Path] = typer.Option(None, help="Continue from a checkpoint (last.pt)."),
    figures: Optional[bool] = typer.Option(None, "--figures/--no-figures", help="Fig. 3 each epoch, Fig. 4 at the end (default: on)."),
):
    if ctx.invoked_subcommand is not None:
        return
    cfg = TrainConfig()
    if preset is not None:
        if preset not in PRESETS:
            _fail(f"--preset {preset!r}: expected one of {', '.join(PRESETS)}")
        cfg = replace(cfg, **PRESETS[preset])
    given = {k: v for k, v in ctx.params.items() if v is not None and k != "preset"}
    cfg = replace(cfg, **given)
    if cfg.shards is None and cfg.task is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(2)
    from .loop import train  # heavy imports only when training

    try:
        results = train(cfg)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    if results.get("error@1") is not None:
        from .run_folder import format_table

        typer.echo(format_table([Path(results["run"])]))


@app.command()
def evaluate(
    checkpoint: Path = typer.Option(..., help="best.pt or last.pt of a run."),
    shards: Path = typer.Option(..., help="Dataset folder to evaluate on."),
    out: Optional[Path] = typer.Option(None, help="Folder for results.json and figures (default: the checkpoint's)."),
    device: str = typer.Option("auto"),
    workers: int = typer.Option(D.workers),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="Also write Figure 3 and 4 PNGs."),
):
    """§4.1 10-view (and centre-crop) error@1/@5 of a checkpoint on val (holdout if no val);
    writes results.json (+ figure3_kernels.png, figure4_top5.png, figure4_neighbours.png)."""
    from .evaluate_checkpoint import evaluate_checkpoint

    try:
        results = evaluate_checkpoint(checkpoint, shards, out or checkpoint.parent, device, workers, figures)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    from .run_folder import format_table

    typer.echo(format_table([Path(results["run"])]))


@app.command()
def table(runs: List[Path] = typer.Argument(..., help="Run folders holding results.json.")):
    """Markdown table of error@1/@5 over runs, beside the paper's and the reference implementation's."""
    from .run_folder import format_table

    try:
        typer.echo(format_table(runs))
    except FileNotFoundError as exc:
        _fail(str(exc))


def main() -> None:
    torch.set_num_threads(torch.get_num_threads())  # import torch before typer parses (fork-safety)
    app(prog_name="alexnet-train")


if __name__ == "__main__":
    sys.exit(main())
