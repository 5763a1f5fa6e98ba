"""The training loop in torchvision references' shape: `train` sets up one `Run`, then per
epoch `train_one_epoch`, `evaluate` on the holdout, the §5 schedule and checkpoints, and at
the end `final_evaluation` (§4.1's ten views, train/evaluation.py) with the best-by-holdout
weights."""
from __future__ import annotations

import hashlib
import itertools
import math
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from shared.exit_status import RunStopped, describe_os_error, interruption, raise_if_interrupted, worker_death
from shared.folder_locks import DatasetReadLock, RunFolderLock
from shared.json_files import write_atomic, write_json_atomic
from shared.manifest import Manifest
from shared.output_paths import check_output_folder

from .augment import DeviceAugment, InputStats
from .checkpoint import (BEST, LAST, ModelCard, RunProgress, check_classes, check_same_run, checkpoint_state,
                         copy_into, first_line, load_checkpoint, remove_partial_writes, restore_best,
                         save_epoch_checkpoints, save_last)
from .config import FAST_DEV_STEPS, TrainConfig
from .loader import TrainStream, iterate_train_batches
from .dataset_folder import DatasetFiles, check_evaluated, dataset_input_stats, load_dataset
from .device import (Compute, Precision, autocast_for, default_workers, describe, prepare_device,
                     resolve_device, resolve_precision, warn_slow_bf16)
from .distributed import Dist, all_reduce_sum, close_distributed, init_distributed
from .evaluation import Evaluated, eval_loader, evaluate, final_evaluation, log_scalars
from .figures import log_kernel_figure, write_training_curve
from .model import build_model
from .optim import build_optimizer
from .per_sample import load_real_labels
from .run_folder import (CONFIG_NAME, CURVE_NAME, METRICS_NAME, RESULTS_NAME, append_metrics, create_run_dir,
                         git_hash, open_event_writer, read_metrics, rewrite_metrics, run_id_of_folder)
from .mid_epoch import (EpochProgress, MidEpochSaver, check_resumable, default_minutes, in_epoch_record,
                        restore_rank)
from .schedule import LrDrop, LrSchedule


def derive_seed(seed: int, rank: int, epoch: int, purpose: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}/{rank}/{epoch}/{purpose}".encode()).digest()[:8], "little")


def seed_epoch(seed: int, rank: int, epoch: int) -> torch.Generator:
    """Dropout masks (torch's global generators) and the PCA lighting generator for one
    epoch of one rank: different on every rank (each GPU draws its own masks and lighting),
    a pure function of (seed, rank, epoch), so a resumed run draws what an uninterrupted one did."""
    torch.manual_seed(derive_seed(seed, rank, epoch, "dropout"))
    return torch.Generator().manual_seed(derive_seed(seed, rank, epoch, "lighting"))


def train_one_epoch(model, optimizer, batches, compute: Compute, *, steps: int, generator, epoch: int,
                    progress: EpochProgress | None = None, after_step=None) -> dict:
    """`steps` steps from `batches`, or the rest of them after `progress` (a mid-epoch
    resume); `after_step(steps_done, progress, generator)` may save a mid-epoch checkpoint."""
    device, d, augment, amp = compute.device, compute.d, compute.augment, compute.amp
    model.train()
    done = progress or EpochProgress()
    loss_sum = torch.tensor(done.loss_sum, dtype=torch.float32, device=device)
    images_seen, start = done.images, time.perf_counter() - done.seconds
    bar = tqdm(itertools.islice(batches, steps - done.step), total=steps, initial=done.step, desc=f"epoch {epoch}",
               leave=False, disable=not d.is_main, file=sys.stderr)
    for step, (images, labels, flips) in enumerate(bar, start=done.step):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        alphas = augment.draw_alphas(len(images), generator)
        x = augment(images, alphas, flips)  # fp32, outside autocast: lighting is a matmul
        with amp:
            loss = F.cross_entropy(model(x), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach()
        images_seen += len(images) * d.world
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if after_step is not None:
            after_step(step + 1, lambda: EpochProgress(step + 1, float(loss_sum), images_seen,
                                                       time.perf_counter() - start), generator)
        # The safe point follows the save: a signal that comes while the next batch is awaited
        # (the loader is the slower side on a loaded machine) would otherwise stop the run before
        # its step, with the steps since the last save unsaved.
        raise_if_interrupted()
    loss = all_reduce_sum([float(loss_sum) / steps], device, d)[0] / d.world
    if not math.isfinite(loss):
        raise ValueError(f"epoch {epoch}: training loss is {loss} (the run diverged); lower --learn-rate, or "
                         f"--resume the last.pt of an earlier epoch with a lower one")
    seconds = time.perf_counter() - start
    return {"loss": loss, "images_per_s": images_seen / seconds, "seconds": seconds}


@dataclass
class Run:
    """One training run's state; `model` is the bare module (torchvision's model_without_ddp),
    `net` what the loop calls (DDP and/or torch.compile around it)."""
    cfg: TrainConfig
    compute: Compute  # device, autocast, ranks, the on-device input step
    manifest: Manifest
    inputs: InputStats  # normalisation (§2) and lighting (§4.1) statistics
    model: nn.Module
    net: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: LrSchedule
    precision: Precision
    device_settings: dict  # prepare_device's, for config.json
    steps: int
    epochs: int
    start_epoch: int = 0
    best_error: float = math.inf
    best_epoch: int = -1
    folder: Path | None = None
    writer: object | None = None  # TensorBoard's SummaryWriter (run_folder.open_event_writer)
    resumed_row: dict | None = None  # last.pt's metrics row, re-written to metrics.jsonl if a kill lost it
    last_row: dict | None = None  # the last completed epoch's metrics row (mid-epoch checkpoints carry it)
    in_epoch: dict | None = None  # a mid-epoch checkpoint's record, until its epoch resumes
    checkpoint_minutes: float = 0.0
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)  # made at the start, kept by every resume
    dataset_files: DatasetFiles | None = None  # the shards as the run found them: a change is noticed
    folder_lock: RunFolderLock | None = None

    @property
    def device(self) -> torch.device:
        return self.compute.device

    @property
    def d(self) -> Dist:
        return self.compute.d

    def identity(self) -> dict:
        return {"run_id": self.run_id, "dataset": self.manifest.fingerprint()}


def train(cfg: TrainConfig) -> dict:
    cfg = cfg.resolved()  # every option checked before anything starts
    check_run_outputs(cfg)
    device = resolve_device(cfg.device)
    settings = prepare_device(device)
    d = init_distributed(device.type)
    if device.type == "cuda" and d.enabled:
        device = torch.device("cuda", d.local_rank)
    try:
        with DatasetReadLock(cfg.shards):  # no alexnet-prep rewrites the dataset under the run
            run = setup_run(cfg, device, d, settings)
            try:
                return run_all_epochs(run)
            finally:
                if run.folder_lock is not None:
                    run.folder_lock.release()
    finally:
        close_distributed(d)


def run_all_epochs(run: Run) -> dict:
    """The epochs and the final evaluation; a stop says what to resume from."""
    try:
        for epoch in range(run.start_epoch, run.epochs):
            run.dataset_files.check_unchanged()
            run_epoch(run, epoch)
        run.dataset_files.check_unchanged()
        return finish(run)
    except OSError as exc:  # disk full or read-only at a checkpoint, a shard gone: what to resume from
        raise RunStopped(f"{describe_os_error(exc)}; fix that, then {resume_advice(run)}") from None
    except KeyboardInterrupt as exc:  # the same command would now be refused (the folder holds a run)
        raise RunStopped(f"interrupted ({interruption(exc)}); {resume_advice(run)}") from None
    except RuntimeError as exc:
        if (died := worker_death(exc)) is None:
            raise
        raise RunStopped(f"{died}; {resume_advice(run)}") from None


def check_run_outputs(cfg: TrainConfig) -> None:
    """--logdir (and the run folder in it) is never inside the dataset folder, and what the
    run writes there is never its --real-labels (shared/output_paths.py)."""
    for folder in [Path(cfg.logdir)] + ([Path(cfg.logdir) / cfg.run_name] if cfg.run_name else []):
        check_output_folder(folder, "--logdir", inputs=[cfg.real_labels], input_folders=[cfg.shards],
                            writes=(CONFIG_NAME, METRICS_NAME, RESULTS_NAME, CURVE_NAME, BEST, LAST))


def resume_advice(run: Run) -> str:
    """What to continue from, as the run folder holds it now: last.pt, else a best.pt whose
    last.pt was never written (a full disk between the two), else nothing."""
    for name, what in ((LAST, "the last saved epoch or step is kept there"), (BEST, "the last epoch saved")):
        path = run.folder / name if run.folder is not None else None
        if path is not None and path.is_file():
            return f"continue with --resume {path} ({what})"
    return "nothing was saved yet: start the run again"


def setup_run(cfg: TrainConfig, device: torch.device, d: Dist, settings: dict | None = None) -> Run:
    cfg = cfg.resolved()
    if cfg.workers is None:
        cfg = replace(cfg, workers=default_workers(device))
    manifest, stats = load_dataset(cfg.shards, cfg.shard_urls, cfg.verify_checksums)
    dataset_files = DatasetFiles.as_found(manifest, cfg.shards, cfg.shard_urls)
    cfg = cfg.resolved(manifest.patch_size)
    if cfg.real_labels:  # checked now, not after the last epoch
        load_real_labels(cfg.real_labels, manifest, cfg.shards)
    if cfg.batch_size % d.world:
        raise ValueError(f"--batch-size {cfg.batch_size} is global and must divide by {d.world} ranks")
    steps = FAST_DEV_STEPS if cfg.fast_dev_run else (
        cfg.steps_per_epoch or max(1, manifest.splits["train"].samples // cfg.batch_size))
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    model = build_model(manifest.num_classes, cfg.architecture(), cfg.init)
    model = model.to(device, memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg.optimizer, cfg.learn_rate, cfg.momentum, cfg.weight_decay,
                                cfg.bias_lr_mult if cfg.optimizer == "sgd" else 1.0)
    schedule = LrSchedule.from_config(optimizer, cfg)
    inputs = dataset_input_stats(cfg.shards, manifest, stats, cfg.normalize, cfg.crop)
    precision = resolve_precision(device, cfg.precision)
    warn_slow_bf16(device, precision)
    compute = Compute(device, autocast_for(device, precision), d, DeviceAugment(inputs, cfg.pca_std, device))
    run = Run(cfg, compute, manifest, inputs, model, model, optimizer, schedule, precision, settings or {}, steps,
              1 if cfg.fast_dev_run else cfg.epochs)
    run.checkpoint_minutes = cfg.checkpoint_every if cfg.checkpoint_every is not None else default_minutes(device)
    run.dataset_files = dataset_files
    if cfg.resume:
        resume_from(run, cfg.resume)
    run.net = wrap_for_training(run)
    if d.is_main:
        open_run_folder(run)
    return run


def wrap_for_training(run: Run) -> nn.Module:
    if run.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: pick the fastest conv kernels once
    net = run.model
    if run.d.enabled:
        net = DistributedDataParallel(net, device_ids=[run.device.index] if run.device.type == "cuda" else None)
    return torch.compile(net) if uses_compile(run.cfg, run.device) else net


def uses_compile(cfg: TrainConfig, device: torch.device) -> bool:
    """Default on CUDA only: on the 2-core CPU the compiled net trained slower than the eager
    one with train/lrn.py's kernels, after ~15 s of compiling (docs/performance.md)."""
    return cfg.compile if cfg.compile is not None else device.type == "cuda"


def resume_from(run: Run, path: Path) -> None:
    state = load_checkpoint(path)
    check_classes(state, run.manifest.class_table(), path)
    if state["architecture"] != run.model.arch.to_dict():
        raise ValueError(f"{path}: trained with architecture {state['architecture']}, this run asks for "
                         f"{run.model.arch.to_dict()}; pass the same --lrn/--conv1-padding/--dropout-mode flags")
    run.best_error, run.best_epoch = check_same_run(state, run.cfg, run.manifest, Path(path))
    run.run_id = (state.get("identity") or {}).get("run_id") or run_id_of_folder(Path(path).parent) or run.run_id
    run.model.load_state_dict(state["model"])
    try:
        run.optimizer.load_state_dict(state["optimizer"])
        run.schedule.load_state_dict(state["schedule"])
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise ValueError(f"{path}: its optimizer or schedule state does not fit this run's ({first_line(exc)})") \
            from None
    run.start_epoch = state["epoch"] + 1
    run.resumed_row = run.last_row = state["metrics_row"]
    if "in_epoch" in state:
        note = check_resumable(state["in_epoch"], run.cfg, run.d, path)
        if note and run.d.is_main:
            print(note, file=sys.stderr)
        run.in_epoch = state["in_epoch"]


def open_run_folder(run: Run) -> None:
    cfg = run.cfg
    resume_dir = Path(cfg.resume).parent if cfg.resume else None
    named = Path(cfg.logdir) / cfg.run_name if cfg.run_name else None
    if resume_dir is not None and (named is None or named.resolve() == resume_dir.resolve()):
        folder = resume_dir  # continue in place: best.pt and metrics.jsonl live there
    else:
        folder = create_run_dir(cfg.logdir, cfg.run_name, run.manifest.task)
    run.folder = folder
    run.folder_lock = RunFolderLock(folder).__enter__()  # before anything here is touched: one writer
    for stale in remove_partial_writes(folder):
        print(f"removed {stale}: a save interrupted by a crash", file=sys.stderr)
    if resume_dir is not None:
        prepare_resumed_folder(run, resume_dir)
    write_json_atomic(folder / CONFIG_NAME, {
        "config": cfg.to_dict(), "run_id": run.run_id, "git": git_hash(), "world_size": run.d.world, "device": str(run.device),
        "torch": torch.__version__, "steps_per_epoch": run.steps, "per_rank_batch": cfg.batch_size // run.d.world,
        "architecture": run.model.arch.to_dict(), "precision": run.precision.to_dict(),
        "device_settings": run.device_settings, "compile": uses_compile(run.cfg, run.device)})
    run.writer = open_event_writer(folder)
    print(f"run folder {folder}: {run.manifest.task}, {run.manifest.num_classes} classes, {run.steps} steps/epoch "
          f"x {run.epochs - run.start_epoch} epochs, batch {cfg.batch_size} ({run.d.world} ranks), "
          f"{describe(run.device, run.precision, run.device_settings)}",
          file=sys.stderr)


def prepare_resumed_folder(run: Run, resume_dir: Path) -> None:
    """metrics.jsonl holds each finished epoch once; best.pt comes along to a new folder."""
    rewrite_metrics(run.folder, run.start_epoch - 1, run.resumed_row, source=resume_dir / "metrics.jsonl")
    if run.folder != resume_dir and (resume_dir / BEST).is_file():
        write_atomic(run.folder / BEST, lambda f: copy_into(resume_dir / BEST, f))


def run_epoch(run: Run, epoch: int) -> None:
    cfg, d = run.cfg, run.d
    generator = seed_epoch(cfg.seed, d.rank, epoch)
    lr = run.schedule.lr
    stream, progress = train_stream(run, epoch), None
    if run.in_epoch is not None:  # resumed mid-epoch: this epoch's draws continue where they stopped
        progress = restore_rank(run.in_epoch, d.rank, generator, run.device)
        stream.skip_batches, run.in_epoch = progress.step, None
        if d.is_main:
            print(f"epoch {epoch}: continuing at step {progress.step} of {run.steps}", file=sys.stderr)
    saver = MidEpochSaver(run.checkpoint_minutes, run.steps, d, run.device,
                          lambda done, ranks: save_mid_epoch(run, epoch, done, ranks))
    batches = iterate_train_batches(stream, cfg.workers, run.device.type == "cuda", run.device)
    train_metrics = train_one_epoch(run.net, run.optimizer, batches, run.compute, steps=run.steps,
                                    generator=generator, epoch=epoch, progress=progress, after_step=saver)
    batches.close()  # shuts the epoch's loader workers down
    held_start = time.perf_counter()
    try:
        holdout = eval_loader(cfg, run.manifest, "holdout", d, run.device)
        held = evaluate(run.model, holdout, run.compute, crop=cfg.crop, views=1, desc="holdout")
    except KeyboardInterrupt:
        saver.save_if_stopped_after_the_last_step()  # the epoch's steps outlive the stop
        raise
    if not cfg.fast_dev_run:
        check_evaluated("holdout", held["samples"], run.manifest, cfg.shards)
    drop = run.schedule.step(epoch, held["error@1"])
    improved = held["error@1"] < run.best_error
    if improved:
        run.best_error, run.best_epoch = held["error@1"], epoch
    if d.is_main:
        wall_s = run_seconds(run.last_row, train_metrics["seconds"] + time.perf_counter() - held_start)
        record_epoch(run, epoch, {"epoch": epoch, "lr": lr, "train": train_metrics, "holdout": held, "wall_s": wall_s,
                                  **({"lr_drop": asdict(drop)} if drop else {})}, drop, improved)


def run_seconds(last_row: dict | None, epoch_seconds: float) -> float | None:
    """The run's training and holdout seconds through this epoch, summed over every process that
    resumed it (the time between a kill and its resume, and start-up, not counted): a resumed
    run's results.json would otherwise give only its last process's time. None once unknown
    (resumed from a checkpoint written before metrics rows carried wall_s)."""
    if last_row is None:  # epoch 0, or a resume within it
        return round(epoch_seconds, 1)
    before = last_row.get("wall_s")
    return None if before is None else round(before + epoch_seconds, 1)


def record_epoch(run: Run, epoch: int, row: dict, drop: LrDrop | None, improved: bool) -> None:
    step = (epoch + 1) * run.steps
    w = run.writer
    log_scalars(w, "train", {**row["train"], "lr": row["lr"]}, step)
    log_scalars(w, "holdout", row["holdout"], step)
    if run.cfg.extra_logging:
        for name, p in run.model.named_parameters():
            w.add_histogram(f"param/{name}", p, step)
            if p.grad is not None:
                w.add_histogram(f"grad/{name}", p.grad, step)
    if run.cfg.figures:
        log_kernel_figure(run.model, w, run.folder, step)
    held, tm = row["holdout"], row["train"]
    print(f"epoch {epoch}: loss {tm['loss']:.4f}, holdout error@1 {held['error@1']:.4f} error@5 "
          f"{held['error@5']:.4f} ({held['samples']} samples), lr {row['lr']:g}, {tm['images_per_s']:.0f} img/s",
          file=sys.stderr)
    if drop is not None:
        w.add_scalar("train/lr_drop", drop.lr, step)
        w.add_text("lr_drops", f"epoch {drop.epoch}: holdout error@1 {drop.holdout_error:.4f}, ε -> {drop.lr:g}", step)
        print(f"lr drop {len(run.schedule.drops)}/{run.cfg.lr_drops} after epoch {drop.epoch}: holdout error@1 "
              f"{drop.holdout_error:.4f} ({run.cfg.lr_schedule} rule), ε -> {drop.lr:g}", flush=True)
    save_epoch_checkpoints(run.folder, run_state(run, epoch, row), improved)
    run.last_row = row
    append_metrics(run.folder, row)  # after the checkpoint: a resume rewrites rows past last.pt's epoch
    if run.cfg.figures:
        write_training_curve(read_metrics(run.folder / METRICS_NAME), run.folder / CURVE_NAME)


def run_state(run: Run, epoch: int, row: dict | None) -> dict:
    """What last.pt holds after `epoch` (the last completed one; -1 before the first)."""
    card = ModelCard(run.model.arch.to_dict(), run.manifest.class_table(), run.inputs.state(),
                     run.manifest.patch_size, run.cfg.to_dict())
    return checkpoint_state(run.model, run.optimizer, run.schedule, card,
                            RunProgress(epoch, run.best_error, run.best_epoch, row), run.identity())


def save_mid_epoch(run: Run, epoch: int, done: EpochProgress, ranks: list[dict]) -> None:
    state = run_state(run, epoch - 1, run.last_row)
    state["in_epoch"] = in_epoch_record(epoch, done, ranks, run.cfg)
    save_last(run.folder, state)


def train_stream(run: Run, epoch: int) -> TrainStream:
    cfg, d, manifest = run.cfg, run.d, run.manifest
    stream = TrainStream.of_train_split(manifest, cfg.shards, cfg.shard_urls, crop=cfg.crop, buffer=cfg.shuffle_buffer,
                                        seed=cfg.seed, steps=run.steps, rank=d.rank, world=d.world,
                                        batch_size=cfg.batch_size // d.world, decode=cfg.decode)
    stream.epoch = epoch
    return stream


def finish(run: Run) -> dict:
    """Model selection by holdout error (best.pt), then the final evaluation on every rank."""
    if run.folder is not None:
        best = restore_best(run.folder)
        if best is not None:
            run.model.load_state_dict(best["model"])
    if run.d.enabled:  # rank 0 loaded best.pt; give every rank the same weights
        for tensor in run.model.state_dict().values():
            torch.distributed.broadcast(tensor, 0)
    results = final_evaluation(run.cfg, run.manifest, run.model, run.compute,
                               Evaluated(run.epochs, (run.last_row or {}).get("wall_s")), folder=run.folder,
                               writer=run.writer)
    if run.writer is not None:
        hparams = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in run.cfg.to_dict().items()}
        run.writer.add_hparams(hparams, {f"hparam/{k}": v for k, v in results["metrics"].items()
                                         if isinstance(v, float)}, run_name=".")
        run.writer.close()
    return results
