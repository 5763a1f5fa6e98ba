"""Error rates on a split, as §4.1 reports them: the holdout pass after each epoch, and the
final centre-crop and ten-view pass (`final_evaluation`) that `train` and the `evaluate`
command end with; `predict` shares `view_probabilities`. Apart from the training loop, which
only calls it: the commands that never train import no training code."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from shared.exit_status import raise_if_interrupted
from shared.manifest import Manifest

from .augment import DeviceAugment, centre_crop, ten_views
from .config import FAST_DEV_STEPS, TrainConfig
from .dataset_folder import check_evaluated, check_shards, eval_shortfall
from .device import Compute, eval_workers
from .distributed import Dist, all_reduce_sum
from .figures import write_prediction_figures
from .loader import EvalShards, SampleRules, make_loader
from .per_sample import gather_records, load_real_labels, score_real, top5_records, write_predictions
from .run_folder import git_hash, write_results


def count_topk_correct(probs: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> list[int]:
    """How many labels are among the k highest scores, for each k (k capped at #classes)."""
    top = probs.topk(min(max(ks), probs.shape[1]), dim=1).indices
    hits = top == labels[:, None]
    return [int(hits[:, :k].any(dim=1).sum()) for k in ks]


@torch.no_grad()
def view_probabilities(model, images: torch.Tensor, augment: DeviceAugment, crop: int, views: int, amp) -> torch.Tensor:
    """§4.1 at test time: softmax of the centre crop, or of the ten views averaged, for uint8
    (B, 3, H, W) images on the model's device. The views share forward passes: up to 1280
    crops per pass on CUDA (eager 10-view inference ran at 26,890 crops/s at 1280 on an H200,
    docs/performance.md), 256 on the CPU where big batches only cost memory."""
    crops = ten_views(images, crop) if views == 10 else [centre_crop(images, crop)]
    stacked = torch.cat(crops)  # uint8 (views * B, 3, crop, crop)
    probs = []
    with amp:  # one region: autocast casts the weights to bf16 once for all chunks, not once per chunk
        for chunk in stacked.split(1280 if images.device.type == "cuda" else 256):
            probs.append(F.softmax(model(augment(chunk)).float(), dim=1))
    return torch.cat(probs).view(len(crops), len(images), -1).mean(0)


@torch.no_grad()
def evaluate(model, loader, compute: Compute, *, crop: int, views: int, desc: str = "eval",
             per_sample: bool = False) -> dict:
    """error@1/@5 over every sample of `loader` (all ranks): centre crop, or the §4.1 ten
    views with their softmax outputs averaged. With `per_sample` (a loader of EvalShards
    with keys), also each sample's top-5 (train/per_sample.py), gathered from every rank."""
    device, d = compute.device, compute.d
    model.eval()
    correct1 = correct5 = seen = 0
    loss_sum = 0.0
    records = []
    for images, labels, *keys in tqdm(loader, desc=desc, leave=False, disable=not d.is_main, file=sys.stderr):
        raise_if_interrupted()
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        probs = view_probabilities(model, images, compute.augment, crop, views, compute.amp)
        c1, c5 = count_topk_correct(probs, labels)
        correct1, correct5, seen = correct1 + c1, correct5 + c5, seen + len(labels)
        loss_sum += float(F.nll_loss(probs.clamp_min(1e-12).log(), labels, reduction="sum"))
        if per_sample:
            records += top5_records(keys[0], labels, probs)
    correct1, correct5, seen, loss_sum = all_reduce_sum([correct1, correct5, seen, loss_sum], device, d)
    seen = int(seen)
    if seen == 0:
        raise ValueError(f"{desc}: no samples evaluated")
    result = {"error@1": 1 - correct1 / seen, "error@5": 1 - correct5 / seen, "loss": loss_sum / seen,
              "samples": seen, "views": views}
    if per_sample:
        result["per_sample"] = gather_records(records, d)
    return result


def eval_loader(cfg: TrainConfig, manifest: Manifest, split: str, d: Dist, device: torch.device, keys: bool = False):
    """Every sample of `split`, its shards checked again first (sizes and tar headers: a
    shard replaced since the start is named now, not after a whole evaluation)."""
    check_shards(manifest, Path(cfg.shards), cfg.shard_urls, False, splits=[split])
    urls = manifest.shard_paths(cfg.shards, split, cfg.shard_urls)
    limit = FAST_DEV_STEPS * cfg.eval_batch_size if cfg.fast_dev_run else None
    dataset = EvalShards(urls, SampleRules(manifest.patch_size, manifest.num_classes), d.rank, d.world, limit, keys)
    workers = eval_workers(cfg.workers, device)
    return make_loader(dataset, cfg.eval_batch_size, min(workers, max(1, len(urls) // d.world)),
                       device.type == "cuda")


@dataclass(frozen=True)
class Evaluated:
    """What the results record says of the model evaluated: its epochs, the training seconds behind
    it (a metrics row's wall_s) and the patch size it was trained on."""
    epochs: int
    train_wall_s: float | None
    trained_patch_size: int | None = None


def final_evaluation(cfg: TrainConfig, manifest: Manifest, model, compute: Compute, evaluated: Evaluated, *,
                     folder: Path | None, writer, predictions: Path | None = None) -> dict:
    """`model` on the reported split (val, else holdout): centre crop and the 10 views of §4.1;
    ReaL error with --real-labels, every sample's top-5 into `predictions`. The patch sizes
    trained on and evaluated on are recorded (an evaluation on other patches is warned of), and
    the seconds behind the model (`evaluated`) beside this pass's."""
    device, d = compute.device, compute.d
    start = time.perf_counter()
    split = manifest.reported_split
    real = load_real_labels(cfg.real_labels, manifest, cfg.shards) if cfg.real_labels else None
    keep = real is not None or predictions is not None
    loader = eval_loader(cfg, manifest, split, d, device, keys=keep)
    metrics, per_sample = {}, {}
    for views, prefix in ((1, "centre_"), (10, "")):  # the paper reports the 10-view figures
        m = evaluate(model, loader, compute, crop=cfg.crop, views=views, desc=f"{split} {views}-view",
                     per_sample=keep)
        if not cfg.fast_dev_run:
            check_evaluated(split, m["samples"], manifest, cfg.shards)
        metrics.update({f"{prefix}error@1": m["error@1"], f"{prefix}error@5": m["error@5"], f"{prefix}loss": m["loss"],
                        "samples": m["samples"]})
        per_sample[views] = m.get("per_sample")
    shortfall = None if cfg.fast_dev_run else eval_shortfall(manifest.task, split, metrics["samples"])
    extra = {"patch_size": manifest.patch_size,
             "trained_patch_size": evaluated.trained_patch_size or manifest.patch_size,
             "train_wall_s": evaluated.train_wall_s, "eval_wall_s": round(time.perf_counter() - start, 1)}
    if real is not None:
        ten, centre = score_real(per_sample[10], real), score_real(per_sample[1], real)
        extra["real"] = {**ten, "centre_error@1": centre["error@1"], "centre_error@5": centre["error@5"],
                         "labels": str(cfg.real_labels)}
    results = {"task": manifest.task, "split": split, "metrics": metrics, **extra}
    if d.is_main:
        report_shortfall(shortfall, manifest)
        log_scalars(writer, split, metrics, 0)
        if predictions is not None:
            write_predictions(predictions, per_sample[10], per_sample[1])
        results = write_results(folder, manifest, cfg, metrics, split, str(device), git_hash(), evaluated.epochs,
                                shortfall, extra)
        if cfg.figures:
            write_prediction_figures(model, manifest, cfg.shards, compute.augment, device, cfg.crop, folder, writer,
                                     url_template=cfg.shard_urls)
        print(f"{split} ({metrics['samples']} samples): 10-view error@1 {metrics['error@1']:.4f} "
              f"error@5 {metrics['error@5']:.4f}; centre crop error@1 {metrics['centre_error@1']:.4f} "
              f"error@5 {metrics['centre_error@5']:.4f}" + (f"; ReaL error@1 {extra['real']['error@1']:.4f} "
                                                             f"({extra['real']['scored']:,} scored)" if real else ""),
              file=sys.stderr)
    return results


def report_shortfall(shortfall: dict | None, manifest: Manifest) -> None:
    if shortfall is None:
        return
    skipped = sum(1 for s in manifest.skipped if s.split == "val")
    print(f"WARNING: {manifest.task} val holds {shortfall['evaluated']:,} of the official {shortfall['expected']:,} "
          f"images ({shortfall['missing']:,} missing; {skipped} val inputs skipped by prep, listed in "
          f"manifest.json): these error rates are not comparable with published ones", file=sys.stderr)


def log_scalars(writer, prefix: str, metrics: dict, step: int) -> None:
    if writer is None:
        return
    for key, value in metrics.items():
        if key not in ("samples", "views"):
            writer.add_scalar(f"{prefix}/{key}", value, step)
