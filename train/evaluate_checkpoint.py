"""Evaluate a saved checkpoint alone: `alexnet-train evaluate --checkpoint ... --shards ...`."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from .augment import DeviceAugment, InputStats
from .checkpoint import check_classes, load_checkpoint
from .config import TrainConfig
from .dataset import load_dataset
from .distributed import Dist
from .figures import log_kernel_figure
from .loop import autocast_for, final_evaluation, resolve_device
from .model import AlexNet, Architecture


def evaluate_checkpoint(checkpoint: Path, shards: Path, out: Path, device_name: str, workers: int,
                        figures: bool) -> dict:
    start = time.perf_counter()
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file: pass a folder for results.json and the figures")
    state = load_checkpoint(checkpoint)  # hundreds of MB: read once
    manifest, _ = load_dataset(shards)
    check_classes(state, manifest.class_table(), checkpoint)
    trained = TrainConfig.from_dict(state["config"])
    cfg = replace(trained, shards=shards, shard_urls=None, workers=workers, figures=figures,
                  fast_dev_run=False).resolved(manifest.patch_size)
    device = resolve_device(device_name)
    model = AlexNet(manifest.num_classes, Architecture(**state["architecture"])).to(device)
    model.load_state_dict(state["model"])
    augment = DeviceAugment(InputStats(**state["normalization"]), cfg.pca_std, device)  # what the model saw
    out.mkdir(parents=True, exist_ok=True)
    if figures:
        log_kernel_figure(model, None, out, state["epoch"])
    return final_evaluation(cfg=cfg, manifest=manifest, model=model, augment=augment, device=device,
                            amp=autocast_for(device, cfg.precision), d=Dist(), folder=out, writer=None,
                            wall_s=time.perf_counter() - start, epochs=state["epoch"] + 1)
