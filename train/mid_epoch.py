"""Mid-epoch checkpoints: a run killed between epoch ends (a spot instance reclaimed, a session
ended, a machine restarted) loses minutes, not an epoch.

Every `--checkpoint-every` minutes, at a step boundary, last.pt is rewritten (atomically, as at
epoch ends) with the model, the optimizer and the schedule as they are, plus `in_epoch`: the
epoch under way, the steps done, and per rank the state of every random draw still to come
(torch's generator, which dropout draws from; the lighting generator; CUDA's) and the running
loss sum. `--resume last.pt` then continues at the next step with the same batches (the
loader replays the skipped batches' reads and draws without decoding: train/loader.py), the same
masks and lighting, and the same epoch metrics: on the CPU the final weights equal an
uninterrupted run's bit for bit (tests/test_mid_epoch.py kills one with SIGKILL). A single-process
run that gets Ctrl-C or SIGTERM (a spot notice, a session's end) also saves at the next step
boundary before it stops (or, stopped in the holdout evaluation at an epoch's end, saves the
epoch's last step: the resumed epoch has no steps left and evaluates), so a polite stop loses
nothing at all.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from shared.exit_status import interrupt_pending

from .distributed import Dist, all_reduce_sum
from .loader import EPOCH_ORDER

SYNC_EVERY = 20  # steps between the ranks' vote on whether a checkpoint is due (one tiny all-reduce)
# what a mid-epoch resume must share with the run that wrote the checkpoint: each changes which
# samples, crops or draws come next
SAME_AS_WRITER = ("seed", "batch_size", "workers", "shuffle_buffer", "decode", "steps_per_epoch", "crop", "pca_std",
                  "fast_dev_run")


@dataclass
class EpochProgress:
    """An epoch after `step` of its steps, on one rank."""
    step: int = 0
    loss_sum: float = 0.0  # the sum of this rank's step losses so far (fp32, as the loop keeps it)
    images: int = 0  # images trained on, all ranks
    seconds: float = 0.0  # time spent training them (not counting the time between a kill and the resume)


def default_minutes(device: torch.device) -> float:
    """A CPU step is seconds long and an epoch hours: 10 minutes loses little and costs ~0.3%
    (a 700 MB save takes ~2 s); on CUDA an epoch of ImageNet is ~1.5 min at 15,000 img/s."""
    return 10.0 if device.type == "cpu" else 30.0


def rank_state(progress: EpochProgress, lighting: torch.Generator, device: torch.device) -> dict:
    state = {"loss_sum": progress.loss_sum, "torch_rng": torch.get_rng_state(), "lighting_rng": lighting.get_state()}
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    return state


def gather_rank_states(state: dict, d: Dist) -> list[dict]:
    if not d.enabled:
        return [state]
    states: list = [None] * d.world
    dist.all_gather_object(states, state)
    return states


def in_epoch_record(epoch: int, progress: EpochProgress, ranks: list[dict], cfg) -> dict:
    return {"epoch": epoch, "step": progress.step, "images": progress.images, "seconds": progress.seconds,
            "world": len(ranks), "ranks": ranks, "writer": {k: getattr(cfg, k) for k in SAME_AS_WRITER},
            "epoch_order": EPOCH_ORDER}


def check_resumable(record: dict, cfg, d: Dist, path) -> str | None:
    """A mid-epoch checkpoint continues only where the next batches and draws would be the
    ones the interrupted run was about to make; a note when the checkpoint's epoch was read by
    another version's order (its weights are sound, the rest of that epoch is drawn anew)."""
    if record["world"] != d.world:
        raise ValueError(f"{path}: written mid-epoch by {record['world']} ranks, resumed on {d.world}; resume on "
                         f"{record['world']} ranks (the ranks' data and random draws differ)")
    for name, value in record["writer"].items():
        if getattr(cfg, name) != value:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{path}: written mid-epoch with {flag} {value}, this run has {getattr(cfg, name)}; "
                             f"resume with {flag} {value} so that the epoch continues as it began")
    if record.get("epoch_order") != EPOCH_ORDER:
        return (f"note: {path} was written mid-epoch by a version that ordered an epoch's samples otherwise; "
                f"epoch {record['epoch']} continues in this version's order, so some of its samples may come "
                f"twice and others not at all; later epochs read every sample once")
    return None


def restore_rank(record: dict, rank: int, lighting: torch.Generator, device: torch.device) -> EpochProgress:
    state = record["ranks"][rank]
    torch.set_rng_state(state["torch_rng"])
    lighting.set_state(state["lighting_rng"])
    if device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"], device)
    return EpochProgress(record["step"], state["loss_sum"], record["images"], record["seconds"])


class MidEpochSaver:
    """Called by train_one_epoch after every step; saves when `minutes` have passed since the
    epoch began or since the last save (all ranks agree: rank 0's clock decides), and, in a
    single-process run, at once when Ctrl-C or SIGTERM has come (a spot instance's notice, a
    session's end): the run then stops after the step under way, or in the holdout evaluation
    after the epoch's last step, with nothing lost. Under DDP a signal
    stops the ranks without that save (they would have to agree on the step first); the last
    timed save is kept."""

    def __init__(self, minutes: float, steps: int, d: Dist, device: torch.device, save):
        self.interval_s, self.steps, self.d, self.device, self.save = minutes * 60, steps, d, device, save
        self.last = time.monotonic()
        self.finished = None  # the last step's (progress, lighting), unsaved: the epoch's end saves

    def __call__(self, step: int, progress, lighting: torch.Generator) -> None:
        if self.interval_s <= 0:
            return
        stopping = not self.d.enabled and interrupt_pending()
        # the epoch's end saves last.pt after its holdout evaluation, which a pending signal stops
        # first: the last step is then saved like any other (the resumed epoch has no steps left)
        if step >= self.steps and not stopping:
            self.finished = (progress, lighting)
            return
        if self.d.enabled and step % SYNC_EVERY:
            return
        due = float(stopping or (self.d.is_main and time.monotonic() - self.last >= self.interval_s))
        if self.d.enabled:
            due = all_reduce_sum([due], self.device, self.d)[0]
        if not due:
            return
        current = progress()
        ranks = gather_rank_states(rank_state(current, lighting, self.device), self.d)
        if self.d.is_main:
            self.save(current, ranks)
        self.last = time.monotonic()

    def save_if_stopped_after_the_last_step(self) -> None:
        """A signal stopped the holdout evaluation that follows the epoch's last step: that step
        is saved as if the signal had come during it (the evaluation draws no random numbers,
        so the saved draws are still the ones the next epoch starts from)."""
        if self.finished is not None and interrupt_pending():
            self(self.steps, *self.finished)
