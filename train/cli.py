"""`alexnet-train`: train (default command), evaluate a checkpoint, print the table.

Every TrainConfig field is a flag, derived from the dataclass (its type, its choices and
its help); options left unset keep the config's defaults (or a --preset's).
"""
from __future__ import annotations

import inspect
import sys
from enum import Enum
import typing
from dataclasses import MISSING, fields, replace
from pathlib import Path
from typing import List, Optional

import typer

from shared.exit_status import (DONE_WITH_SKIPS, error_boundary, fail, interrupts_at_safe_points,
                                one_value_per_option_group, package_version, sigterm_as_interrupt)
from shared.manifest import read_manifest
from .config import PANELS, RANGES, TrainConfig, config_fields, flags_of, preset_names, preset_path
from .run_folder import git_hash

app = typer.Typer(cls=one_value_per_option_group(), add_completion=False, invoke_without_command=True, rich_markup_mode="rich",
                  help="Train the paper's AlexNet from alexnet-prep shards: `alexnet-train --shards DIR` (the options "
                       "below).\n\nCommands: evaluate (10-view error of a checkpoint), table (runs beside the "
                       "paper), predict (top-5 of images), figure1 (§3.1): `alexnet-train COMMAND --help`.")



def _flag_help(f) -> str:
    """The field's help, its enforced range and its default, in one style for every flag."""
    default = f.default if f.default is not MISSING else None
    shown = f" Range: {RANGES[f.name].text}." if f.name in RANGES else ""
    return f.metadata["help"] + shown + ("" if default is None else f" \\[default: {default}]")


PANEL_OF = {name: panel for panel, names in PANELS.items() for name in names}


def config_parameters(cls=TrainConfig) -> list[inspect.Parameter]:
    """One keyword parameter per dataclass field, typed for typer (Literal fields become
    choices), defaulting to None: unset; in its --help panel, under its names."""
    hints = typing.get_type_hints(cls)
    params = []
    order = [name for names in PANELS.values() for name in names]
    for f in sorted(fields(cls), key=lambda f: order.index(f.name)):  # panel by panel
        hint = hints[f.name]
        base = next((a for a in typing.get_args(hint) if a is not type(None)), hint) \
            if typing.get_origin(hint) is typing.Union else hint
        names = flags_of(f.name)
        if base is bool:
            names = (f"{names[0]}/--no-{names[0][2:]}",)
        info = typer.Option(None, *names, help=_flag_help(f), rich_help_panel=PANEL_OF[f.name], show_default=False)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=info,
                                        annotation=Optional[base]))
    return params


def train_command(ctx: typer.Context, config: Optional[Path] = None, preset: Optional[str] = None,
                  version: bool = False, **given) -> None:
    if version:
        typer.echo(f"alexnet-train {package_version()}")
        raise typer.Exit()
    if ctx.invoked_subcommand is not None:
        misplaced = [flags_of(k)[0] for k, v in given.items() if v is not None] + (["--preset"] if preset else []) \
            + (["--config"] if config else [])
        if misplaced:  # `alexnet-train --epochs 3 table runs/x` would ignore --epochs without a word
            fail(f"{', '.join(misplaced)}: {'options' if len(misplaced) > 1 else 'an option'} of training, given "
                 f"before `{ctx.invoked_subcommand}`, which does not use them; drop them, or see "
                 f"`alexnet-train {ctx.invoked_subcommand} --help`")
        return
    with error_boundary():  # defaults < --config < --preset < the flags given
        files = ([config] if config is not None else []) + ([preset_path(preset)] if preset is not None else [])
        cfg = TrainConfig()
        for path in files:
            cfg = TrainConfig.from_dict({**cfg.to_dict(), **config_fields(path)})
    cfg = replace(cfg, **{k: v for k, v in given.items() if v is not None})
    if cfg.shards is None and cfg.task is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(2)
    with error_boundary(), interrupts_at_safe_points():
        read_manifest(cfg.resolved().shards)  # a folder that is no dataset is refused before torch loads (7 s)
        from .loop import train  # heavy imports only when training

        results = train(cfg)
        if results.get("error@1") is not None:
            from .run_folder import format_table

            typer.echo(format_table([Path(results["run"])]))


train_command.__signature__ = inspect.Signature(
    [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)]
    + config_parameters()
    + [inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],
                         default=typer.Option(None, "--config", "-c", help="Replay a run: every field of its "
                                              "config.json (or of a file of fields), flags given beside it winning; "
                                              "never its --resume.", rich_help_panel="Run")),
       inspect.Parameter("preset", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[str],
                         default=typer.Option(None, help=f"A config file of train/presets/: {', '.join(preset_names())} "
                                                         f"(demo: 2 CPU cores, ~5 min).", rich_help_panel="Run")),
       inspect.Parameter("version", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                         default=typer.Option(False, "--version", help="Print the version and exit.",
                                              is_eager=True))])
train_command.__annotations__ = {p.name: p.annotation for p in train_command.__signature__.parameters.values()}
app.callback()(train_command)


@app.command()
def evaluate(
    checkpoint: Path = typer.Option(..., help="best.pt or last.pt of a run."),
    shards: Path = typer.Option(..., help="Dataset folder to evaluate on."),
    out: Optional[Path] = typer.Option(None, "--output-dir", "--out", help="Folder for results.json and figures "
                                                                          "(default: the checkpoint's)."),
    device: str = typer.Option("auto", help="auto (cuda if available) | cpu | cuda | cuda:N."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", min=0, max=256,
                                          help="Loader processes (default: as training's --workers)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", min=1, max=65_536,
                                             help="Images per batch, each giving 10 crops (default: the run's "
                                                  "--eval-batch-size)."),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="Also write Figure 3 and 4 PNGs."),
    real_labels: Optional[Path] = typer.Option(None, help=_flag_help(next(f for f in fields(TrainConfig)
                                                                           if f.name == "real_labels"))),
    predictions: Optional[Path] = typer.Option(None, help="Write one JSON line per sample: key, label, 10-view and "
                                                          "centre top-5 indices and probabilities."),
):
    """§4.1 10-view (and centre-crop) error@1/@5 of a checkpoint on val (holdout if no val);
    writes results.json (+ figure3_kernels.png, figure4_top5.png, figure4_neighbours.png) into
    the run's folder for its own dataset, into <run>/<dataset> for another (ImageNetV2)."""
    with error_boundary():
        from .evaluate_checkpoint import evaluate_checkpoint
        from .run_folder import format_table

        with interrupts_at_safe_points():
            results = evaluate_checkpoint(checkpoint, shards, out, device, workers, figures, real_labels,
                                          predictions, batch_size)
        typer.echo(format_table([Path(results["run"])]))


@app.command()
def table(runs: List[Path] = typer.Argument(..., help="Run folders holding results.json.")):
    """Markdown table of error@1/@5 over runs, beside the paper's and the PyTorch replication's."""
    with error_boundary():
        from .run_folder import format_table

        typer.echo(format_table(runs))


class Views(str, Enum):
    """predict --views: the two test-time inputs of §4.1."""
    one = "1"
    ten = "10"


@app.command()
def predict(
    paths: List[Path] = typer.Argument(..., help="Image files or folders (searched recursively)."),
    checkpoint: Path = typer.Option(..., help="best.pt of a run (it carries classes and normalisation)."),
    views: Views = typer.Option(Views.ten, help="10 = §4.1's four corners, centre and mirrors; 1 = the centre "
                                                "crop."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per image on stdout."),
    device: str = typer.Option("auto", help="auto (cuda if available) | cpu | cuda:N."),
    batch_size: int = typer.Option(32, min=1, max=4096, help="Images per forward batch (x views crops)."),
):
    """Top-5 classes of each image, with the checkpoint's model and the paper's test-time
    pipeline. Exit status 0; 3 if some images could not be read (each named); 2 refused."""
    import json

    from .predict import expand_paths, load_predictor, predict_paths

    with error_boundary():
        files = expand_paths(paths)
        predictor = load_predictor(checkpoint, device)
        failed = 0
        for result in predict_paths(predictor, files, int(views.value), batch_size, progress=len(files) > 100):
            failed += "error" in result
            if as_json:
                typer.echo(json.dumps(result))
            elif "error" in result:
                typer.secho(f"{result['path']}: {result['error']}", fg="red", err=True)
            else:
                typer.echo(result["path"])
                for t in result["top5"]:
                    typer.echo(f"  {t['probability']:.3f}  {t['wnid'] or '':9s}  {t['name']}")
    if failed:
        typer.secho(f"{failed} of {len(files)} images could not be read", fg="red", err=True)
        raise typer.Exit(DONE_WITH_SKIPS)


@app.command()
def figure1(
    shards: Path = typer.Option(..., help="CIFAR-10 shards, e.g. alexnet-prep shard --src cifar10-train --size 32."),
    out: Path = typer.Option(Path("runs/figure1"), "--output-dir", "--out", help="Folder for figure1.png and "
                                                                                  "figure1.json."),
    quick: bool = typer.Option(False, "--quick", help="The README's chosen rates and one seed (21 min on 2 cores) "
                                                      "instead of the sweep and three seeds."),
    seeds: List[int] = typer.Option([1, 2, 3], "--seed", help="Seeds for the final runs (repeat the flag)."),
    sweep_epochs: float = typer.Option(2.0, min=0.5, max=100.0, help="Epochs per rate in the sweep."),
):
    """§3.1 Figure 1: a four-layer CNN with ReLUs vs tanh on CIFAR-10, epochs to 25% training
    error (the paper: six times faster with ReLUs)."""
    from .figure1 import MAX_EPOCHS, QUICK_RATES, SWEEP_RATES, describe_ratio, figure1 as run_figure1

    with error_boundary():
        result = run_figure1(shards, out, seeds[:1] if quick else seeds, QUICK_RATES if quick else None,
                             {nl: list(SWEEP_RATES) for nl in ("relu", "tanh")}, sweep_epochs,
                             MAX_EPOCHS)
    s = result["summary"]
    typer.echo(f"epochs to 25% training error: ReLU {s['relu_epochs_to_25']}, tanh {s['tanh_epochs_to_25']}; "
               f"{describe_ratio(s)}; rates {result['rates']}; {result['wall_s']:.0f} s -> {out / 'figure1.png'}")


def main() -> None:
    sigterm_as_interrupt()  # a scheduler's SIGTERM stops a run as Ctrl-C does: one line, resumable, no orphans
    git_hash()  # the code being run is the checkout as it is now, not when results are written
    app(prog_name="alexnet-train")  # torch is imported by the commands that need it: --help stays fast


if __name__ == "__main__":
    sys.exit(main())
