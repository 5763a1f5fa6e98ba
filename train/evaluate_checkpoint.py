"""Evaluate a saved checkpoint alone: `alexnet-train evaluate --checkpoint ... --shards ...`."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from .augment import Normalizer
from .checkpoint import check_num_classes, load_checkpoint
from .config import TrainConfig
from .distributed import Dist
from .figures import log_kernel_figure
from .loop import autocast_for, final_evaluation, load_dataset, resolve_device
from .model import build_model


def evaluate_checkpoint(checkpoint: Path, shards: Path, out: Path, device_name: str, workers: int,
                        figures: bool) -> dict:
    start = time.perf_counter()
    state = load_checkpoint(checkpoint)  # hundreds of MB: read once
    trained = TrainConfig.from_dict(state["config"])
    cfg = replace(trained, shards=shards, workers=workers, figures=figures, fast_dev_run=False).resolved()
    manifest, stats = load_dataset(cfg)
    check_num_classes(state, manifest.num_classes, checkpoint)
    device = resolve_device(device_name)
    model = build_model(manifest.num_classes, cfg.dropout).to(device)
    model.load_state_dict(state["model"])
    normalizer = Normalizer(stats, cfg.pca_std, cfg.normalize == "std", device)
    out.mkdir(parents=True, exist_ok=True)
    if figures:
        log_kernel_figure(model, None, out, state["epoch"])
    return final_evaluation(cfg, manifest, model, normalizer, device, autocast_for(device, cfg.precision),
                            Dist(), out, None, device.type == "cuda", time.perf_counter() - start,
                            state["epoch"] + 1)
