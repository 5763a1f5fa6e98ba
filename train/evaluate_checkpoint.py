"""Evaluate a saved checkpoint alone: `alexnet-train evaluate --checkpoint ... --shards ...`."""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from shared.folder_locks import DatasetReadLock, RunFolderLock
from shared.output_paths import check_output_file, check_output_folder

from .augment import DeviceAugment, InputStats
from .checkpoint import check_classes, load_checkpoint
from .config import TrainConfig
from .dataset_folder import load_dataset
from .distributed import Dist
from .figures import log_kernel_figure
from .device import Compute, autocast_for, default_workers, prepare_device, resolve_device, resolve_precision
from .evaluation import Evaluated, final_evaluation
from .model import AlexNet, Architecture
from .per_sample import require_ilsvrc_classes
from .run_folder import FIGURE_NAMES, RESULTS_NAME, is_run_record


def default_out(checkpoint: Path, trained_on: Path | None, shards: Path, task: str) -> Path:
    """The run's folder when evaluating on the run's own dataset; <run>/<task> for another
    (an ImageNetV2 result never overwrites the run's val results.json)."""
    own = trained_on is not None and Path(trained_on).resolve() == Path(shards).resolve()
    return checkpoint.parent if own else checkpoint.parent / task


def check_outputs(checkpoint: Path, shards: Path, out: Path | None, real_labels: Path | None,
                  predictions: Path | None) -> None:
    """Before any work: --out and --predictions are never an input (shared/output_paths.py)."""
    inputs = [checkpoint, real_labels]
    if out is not None:
        check_output_folder(out, "--out", inputs=inputs, input_folders=[shards], writes=(RESULTS_NAME, *FIGURE_NAMES))
    if predictions is not None:
        written = [(out or checkpoint.parent) / name for name in (RESULTS_NAME, *FIGURE_NAMES)]
        check_output_file(predictions, "--predictions", inputs=inputs + written, input_folders=[shards],
                          protected=is_run_record)


def evaluate_checkpoint(checkpoint: Path, shards: Path, out: Path | None, device_name: str, workers: int | None,
                        figures: bool, real_labels: Path | None = None, predictions: Path | None = None,
                        batch_size: int | None = None) -> dict:
    check_outputs(checkpoint, shards, out, real_labels, predictions)
    state = load_checkpoint(checkpoint)  # hundreds of MB: read once
    with DatasetReadLock(shards):
        manifest, _ = load_dataset(shards, for_training=False)
        if manifest.layout == "imagenetv2":
            require_ilsvrc_classes(manifest, shards, "ImageNetV2's class folders")
        check_classes(state, manifest.class_table(), checkpoint)
        trained = TrainConfig.from_dict(state["config"])
        out = out or default_out(checkpoint, trained.shards, shards, manifest.task)
        device = resolve_device(device_name)
        prepare_device(device)
        cfg = replace(trained, shards=shards, shard_urls=None, figures=figures, fast_dev_run=False,
                      workers=default_workers(device) if workers is None else workers, real_labels=real_labels,
                      device=device_name, eval_batch_size=batch_size or trained.eval_batch_size)
        with RunFolderLock(out):  # a training's final evaluation writes the same files there
            return evaluate_state(state, checkpoint, manifest, cfg.resolved(manifest.patch_size), out, predictions)


def evaluate_state(state: dict, checkpoint: Path, manifest, cfg: TrainConfig, out: Path,
                   predictions: Path | None) -> dict:
    device = resolve_device(cfg.device)
    model = AlexNet(manifest.num_classes, Architecture(**state["architecture"])).to(device)
    model.load_state_dict(state["model"])
    augment = DeviceAugment(InputStats(**state["normalization"]), cfg.pca_std, device)  # what the model saw
    out.mkdir(parents=True, exist_ok=True)
    if cfg.figures:
        log_kernel_figure(model, None, out, state["epoch"])
    if state["patch_size"] != manifest.patch_size:
        print(f"WARNING: {checkpoint} was trained on {state['patch_size']} px patches, {cfg.shards} holds "
              f"{manifest.patch_size} px ones ({cfg.crop} px crops of them): the model sees its inputs at another "
              f"scale; results.json records both sizes", file=sys.stderr)
    compute = Compute(device, autocast_for(device, resolve_precision(device, cfg.precision)), Dist(), augment)
    evaluated = Evaluated(state["epoch"] + 1, (state.get("metrics_row") or {}).get("wall_s"), state["patch_size"])
    return final_evaluation(cfg, manifest, model, compute, evaluated, folder=out, writer=None,
                            predictions=predictions)
