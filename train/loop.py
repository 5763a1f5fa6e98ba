"""The training loop: one visible function, `train`, with `train_one_epoch` and `evaluate`."""
from __future__ import annotations

import itertools
import math
import random
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from shared.json_files import write_json_atomic
from shared.manifest import Manifest, read_manifest
from shared.stats import RgbStats, read_stats

from .augment import Normalizer, centre_crop, ten_views
from .checkpoint import copy_checkpoint, load_checkpoint, restore_rng, save_checkpoint, unwrap
from .config import TrainConfig
from .data import EvalShards, TrainStream, check_shard_count, iterate_train_batches, make_loader
from .distributed import Dist, all_reduce_sum, close_distributed, init_distributed
from .figures import log_kernel_figure, write_prediction_figures
from .model import build_model
from .optim import build_optimizer, build_schedule
from .run_folder import append_metrics, create_run_dir, git_hash, write_results

FAST_DEV_STEPS = 3  # --fast-dev-run: train steps per epoch, eval batches per worker


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available here; use --device cpu")
    return torch.device(name)


def autocast_for(device: torch.device, precision: str):
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


def count_topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> list[int]:
    """How many labels are among the k highest scores, for each k (k capped at #classes)."""
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = top == labels[:, None]
    return [int(hits[:, :k].any(dim=1).sum()) for k in ks]


@torch.no_grad()
def evaluate(model, loader, normalizer: Normalizer, device, crop: int, views: int, amp, d: Dist,
             desc: str = "eval") -> dict:
    """error@1/@5 over every sample of `loader` (all ranks): centre crop, or the §4.1 ten
    views with their softmax outputs averaged."""
    model.eval()
    # crops per forward pass: big batches keep a GPU busy (eager 10-view inference ran at
    # 26,890 crops/s at 1280 on an H200, issue 4); on the CPU they only cost memory
    max_crops = 1280 if device.type == "cuda" else 256
    correct1 = correct5 = seen = 0
    loss_sum = 0.0
    for images, labels in tqdm(loader, desc=desc, leave=False, disable=not d.is_main, file=sys.stderr):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        crops = ten_views(images, crop) if views == 10 else [centre_crop(images, crop)]
        stacked = torch.cat(crops)  # uint8 (views * B, 3, crop, crop): views share forward passes
        probs = []
        for chunk in stacked.split(max_crops):
            x = normalizer(chunk)
            with amp:
                probs.append(F.softmax(model(x).float(), dim=1))
        probs = torch.cat(probs).view(len(crops), len(images), -1).mean(0)
        c1, c5 = count_topk_correct(probs, labels)
        correct1, correct5, seen = correct1 + c1, correct5 + c5, seen + len(labels)
        loss_sum += float(F.nll_loss(probs.clamp_min(1e-12).log(), labels, reduction="sum"))
    correct1, correct5, seen, loss_sum = all_reduce_sum([correct1, correct5, seen, loss_sum], device, d)
    seen = int(seen)
    if seen == 0:
        raise ValueError(f"{desc}: no samples evaluated")
    return {"error@1": 1 - correct1 / seen, "error@5": 1 - correct5 / seen, "loss": loss_sum / seen,
            "samples": seen, "views": views}


def train_one_epoch(model, optimizer, batches, steps: int, normalizer: Normalizer, generator, device,
                    amp, d: Dist, epoch: int) -> dict:
    model.train()
    loss_sum = torch.zeros((), device=device)
    images_seen, start = 0, time.perf_counter()
    bar = tqdm(itertools.islice(batches, steps), total=steps, desc=f"epoch {epoch}", leave=False,
               disable=not d.is_main, file=sys.stderr)
    for step, (images, labels, flips) in enumerate(bar):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        alphas = normalizer.draw_alphas(len(images), generator)
        x = normalizer(images, alphas, flips)  # fp32, outside autocast: lighting is a matmul
        with amp:
            loss = F.cross_entropy(model(x), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach()
        images_seen += len(images) * d.world
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    loss = all_reduce_sum([float(loss_sum) / steps], device, d)[0] / d.world
    if not math.isfinite(loss):
        raise FloatingPointError(f"epoch {epoch}: training loss is {loss}; lower --learn-rate")
    return {"loss": loss, "images_per_s": images_seen / (time.perf_counter() - start)}


def log_scalars(writer, prefix: str, metrics: dict, step: int) -> None:
    if writer is None:
        return
    for key, value in metrics.items():
        if key not in ("samples", "views"):
            writer.add_scalar(f"{prefix}/{key}", value, step)


def load_dataset(cfg: TrainConfig) -> tuple[Manifest, RgbStats]:
    manifest = read_manifest(cfg.shards)
    for split in ("train", "holdout"):
        if split not in manifest.splits or manifest.splits[split].samples == 0:
            raise ValueError(f"{cfg.shards}: no {split!r} split; re-run alexnet-prep shard")
    return manifest, read_stats(cfg.shards)


def eval_loader(manifest, cfg, split, d: Dist, workers: int, pin: bool):
    urls = manifest.shard_paths(cfg.shards, split, cfg.shard_urls)
    limit = FAST_DEV_STEPS * cfg.eval_batch_size if cfg.fast_dev_run else None
    dataset = EvalShards(urls, d.rank, d.world, limit)
    return make_loader(dataset, cfg.eval_batch_size, min(workers, max(1, len(urls) // d.world)), pin)


def train(cfg: TrainConfig) -> dict:
    cfg = cfg.resolved()
    device = resolve_device(cfg.device)
    d = init_distributed(device.type)
    if device.type == "cuda" and d.enabled:
        device = torch.device("cuda", d.local_rank)
    try:
        return _train(cfg, device, d)
    finally:
        close_distributed(d)


def _train(cfg: TrainConfig, device: torch.device, d: Dist) -> dict:
    manifest, stats = load_dataset(cfg)
    if cfg.batch_size % d.world:
        raise ValueError(f"--batch-size {cfg.batch_size} is global and must divide by {d.world} ranks")
    local_batch = cfg.batch_size // d.world
    train_urls = manifest.shard_paths(cfg.shards, "train", cfg.shard_urls)
    check_shard_count(train_urls, d.world, max(1, cfg.workers), cfg.shards)
    steps = FAST_DEV_STEPS if cfg.fast_dev_run else (
        cfg.steps_per_epoch or max(1, manifest.splits["train"].samples // cfg.batch_size))
    epochs = 1 if cfg.fast_dev_run else cfg.epochs
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: pick the fastest conv kernels once

    model = build_model(manifest.num_classes, cfg.dropout, cfg.init).to(device, memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg.optimizer, cfg.learn_rate, cfg.momentum, cfg.weight_decay)
    schedule = build_schedule(optimizer, cfg.lr_patience, cfg.lr_drops, cfg.learn_rate)
    start_epoch, best_error = 0, float("inf")
    if cfg.resume:
        state = load_checkpoint(cfg.resume, manifest.num_classes)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        start_epoch, best_error = state["epoch"] + 1, state["best_error"]
        restore_rng(state)
    net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if d.enabled else model
    use_compile = cfg.compile if cfg.compile is not None else device.type == "cuda"
    if use_compile:
        net = torch.compile(net)
    amp = autocast_for(device, cfg.precision)
    normalizer = Normalizer(stats, cfg.pca_std, cfg.normalize == "std", device)
    pin = device.type == "cuda"
    stream = TrainStream(train_urls, cfg.crop, cfg.shuffle_buffer, cfg.seed, d.rank, d.world, local_batch,
                         cfg.decode)
    holdout = eval_loader(manifest, cfg, "holdout", d, cfg.workers, pin)

    run = writer = None
    if d.is_main:
        run = create_run_dir(cfg.logdir, cfg.run_name, manifest.task)
        write_json_atomic(run / "config.json", {"config": cfg.to_dict(), "git": git_hash(), "world_size": d.world,
                                         "device": str(device), "torch": torch.__version__,
                                         "steps_per_epoch": steps, "per_rank_batch": local_batch})
        writer = SummaryWriter(str(run))
        print(f"run folder {run}: {manifest.task}, {manifest.num_classes} classes, {steps} steps/epoch "
              f"x {epochs - start_epoch} epochs, batch {cfg.batch_size} ({d.world} ranks), {device}",
              file=sys.stderr)
    wall_start = time.perf_counter()
    for epoch in range(start_epoch, epochs):
        stream.epoch = epoch
        generator = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)  # PCA lighting draws
        batches = iterate_train_batches(stream, cfg.workers, pin, device)
        train_metrics = train_one_epoch(net, optimizer, batches, steps, normalizer, generator, device, amp,
                                        d, epoch)
        batches.close()  # shuts the epoch's loader workers down
        held = evaluate(unwrap(net), holdout, normalizer, device, cfg.crop, 1, amp, d, "holdout")
        schedule.step(held["error@1"])
        lr = optimizer.param_groups[0]["lr"]
        improved = held["error@1"] < best_error
        best_error = min(best_error, held["error@1"])
        if d.is_main:
            step = (epoch + 1) * steps
            log_scalars(writer, "train", {**train_metrics, "lr": lr}, step)
            log_scalars(writer, "holdout", held, step)
            if cfg.extra_logging:
                for name, p in unwrap(net).named_parameters():
                    writer.add_histogram(f"param/{name}", p, step)
                    if p.grad is not None:
                        writer.add_histogram(f"grad/{name}", p.grad, step)
            if cfg.figures:
                log_kernel_figure(unwrap(net), writer, run, step)
            append_metrics(run, {"epoch": epoch, "lr": lr, "train": train_metrics, "holdout": held})
            print(f"epoch {epoch}: loss {train_metrics['loss']:.4f}, holdout error@1 {held['error@1']:.4f} "
                  f"error@5 {held['error@5']:.4f} ({held['samples']} samples), lr {lr:g}, "
                  f"{train_metrics['images_per_s']:.0f} img/s", file=sys.stderr)
            save_checkpoint(run / "last.pt", model=unwrap(net), optimizer=optimizer, schedule=schedule,
                            epoch=epoch, config=cfg.to_dict(), num_classes=manifest.num_classes,
                            best_error=best_error, metrics={"holdout": held, "train": train_metrics})
            if improved:  # the same state: copy the file rather than serialise it twice
                copy_checkpoint(run / "last.pt", run / "best.pt")
        if not cfg.fast_dev_run:
            expect = manifest.splits["holdout"].samples
            if held["samples"] != expect:
                raise RuntimeError(f"holdout evaluated {held['samples']} samples, manifest says {expect}")

    model = unwrap(net)
    if run is not None and (run / "best.pt").exists():  # model selection by holdout error
        model.load_state_dict(load_checkpoint(run / "best.pt")["model"])
    if d.enabled:  # rank 0 loaded best.pt; give every rank the same weights
        for tensor in model.state_dict().values():
            torch.distributed.broadcast(tensor, 0)
    results = final_evaluation(cfg, manifest, model, normalizer, device, amp, d, run, writer, pin,
                               time.perf_counter() - wall_start, epochs)
    if writer is not None:
        hparams = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in cfg.to_dict().items()}
        writer.add_hparams(hparams, {f"hparam/{k}": v for k, v in results["metrics"].items()
                                     if isinstance(v, float)}, run_name=".")
        writer.close()
    return results


def final_evaluation(cfg, manifest, model, normalizer, device, amp, d: Dist, run: Path | None, writer, pin,
                     wall_s: float, epochs: int) -> dict:
    """`model` on val (or holdout if there is no val): centre crop and the 10 views of §4.1."""
    split = "val" if "val" in manifest.splits and manifest.splits["val"].samples else "holdout"
    loader = eval_loader(manifest, cfg, split, d, cfg.workers, pin)
    metrics = {}
    for views, prefix in ((1, "centre_"), (10, "")):  # the paper reports the 10-view figures
        m = evaluate(model, loader, normalizer, device, cfg.crop, views, amp, d, f"{split} {views}-view")
        if not cfg.fast_dev_run and m["samples"] != manifest.splits[split].samples:
            raise RuntimeError(f"{split} evaluated {m['samples']} samples, manifest says "
                               f"{manifest.splits[split].samples}")
        metrics.update({f"{prefix}error@1": m["error@1"], f"{prefix}error@5": m["error@5"], "samples": m["samples"]})
    results = {"task": manifest.task, "split": split, "metrics": metrics}
    if d.is_main:
        if writer is not None:
            log_scalars(writer, split, metrics, 0)
        results = write_results(run, manifest, cfg, metrics, split, wall_s, str(device), git_hash(), epochs)
        if cfg.figures:
            write_prediction_figures(model, manifest, cfg.shards, normalizer, device, cfg.crop, run, writer,
                                     url_template=cfg.shard_urls)
        print(f"{split} ({metrics['samples']} samples): 10-view error@1 {metrics['error@1']:.4f} "
              f"error@5 {metrics['error@5']:.4f}; centre crop error@1 {metrics['centre_error@1']:.4f} "
              f"error@5 {metrics['centre_error@5']:.4f}", file=sys.stderr)
    return results
