"""Streaming shards into batches (§4.1 augmentation in the workers, see train/augment.py).

Train: epoch e reads the train samples in one order, a pure function of (seed, e): the shard
list shuffled with seed (seed, e) -- identically on every rank -- and read end to end. Each
(rank, loader worker) takes one contiguous stretch of that order, exactly as many samples as
its batches of the epoch need (steps_per_epoch batches per rank, dealt round robin over the
workers), so over all ranks and workers every sample comes at most once per epoch and at most
ranks x batch - 1 samples wait for a later epoch (cuda-convnet's epochs also read every batch
once); every rank runs the same number of steps (no DDP hang: webdataset #188/#194/#225). A
stretch may start and end inside a shard: the samples before it are read, not decoded. More
steps than the samples hold (--steps-per-epoch) continue into the order of epoch e+1, e+2...
Each stretch passes a seeded shuffle buffer (before decoding: webdataset #439), drained at
its end. A run resumed mid-epoch (`skip_batches`) replays the skipped batches' reads and random
draws without decoding them, and rotates the workers' roles so that the loader's round robin,
which always starts at worker 0, hands out batch `skip_batches` next.

Eval: every shard once, split over ranks and workers; each sample counted once.
"""
from __future__ import annotations

import functools
import os
import random
import signal
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torch.utils.data._utils.signal_handling import _error_if_any_worker_fails
from webdataset.tariterators import group_by_keys, tar_file_expander

from shared.exit_status import die_with_parent, worker_death
from shared.manifest import ShardUrl
from shared.patch import decode_patch
from shared.shards import IMAGE_MEMBER, LABEL_MEMBER, parse_label, shard_error

from .augment import draw_crop


@dataclass(frozen=True)
class SampleRules:
    """What every sample must be: a patch x patch JPEG (the manifest's patch size) and a
    class index in [0, classes)."""
    patch: int
    classes: int


def open_shard(url: str):
    """A local shard is opened as a file; only a ShardUrl (--shard-urls) reaches webdataset's
    URL handling, which runs `pipe:` commands."""
    return wds.gopen(url) if isinstance(url, ShardUrl) else open(url, "rb")


def read_tar_samples(urls: list[str]) -> Iterator[dict]:
    """Raw samples of the given shards, one shard after another. A shard that is not a
    readable tar (cut short after the start-up check, replaced) is an error naming it."""
    for url in urls:
        try:
            stream = open_shard(url)
        except OSError as exc:
            raise shard_error(url, f"cannot be opened ({exc.strerror or exc})") from None
        try:
            yield from group_by_keys(tar_file_expander([{"url": str(url), "stream": stream}]))
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise shard_error(url, f"not a readable tar ({exc.args[0] if exc.args else type(exc).__name__})") from None
        finally:
            stream.close()


def read_pieces(pieces: Iterator[tuple[str, int, int]]) -> Iterator[dict]:
    """The samples of each (shard, pass over, take): those passed over are read, not decoded.
    A shard that ends before its manifest count (changed since the start-up check) is an error."""
    for url, skip, take in pieces:
        got = 0
        for index, sample in enumerate(read_tar_samples([url])):
            if index < skip:
                continue
            yield sample
            got += 1
            if got == take:
                break
        if got < take:
            raise shard_error(url, f"ends after {skip + got} samples, the manifest says at least {skip + take}")


def where(sample: dict) -> str:
    return f"{sample.get('__url__')}: sample {sample.get('__key__')!r}"


def decode_hwc(data: bytes, place: str) -> np.ndarray:
    """uint8 HxWx3 (libjpeg's own layout). strict=True turns libjpeg's corrupt-data
    warnings ("premature end of data segment", "N extraneous bytes") into errors: torchvision's
    decode_jpeg and Pillow decode such files to grey or shifted regions without a word."""
    try:
        return decode_patch(data)
    except ValueError as exc:
        raise ValueError(f"{place}: cannot be decoded ({exc}); re-run alexnet-prep on its source") from exc


def decode_sample(sample: dict, rules: SampleRules) -> tuple[np.ndarray, int]:
    """(HWC uint8 image, label), or a ValueError naming the shard and key."""
    place = where(sample)
    if IMAGE_MEMBER not in sample or LABEL_MEMBER not in sample:
        raise ValueError(f"{place}: has {sorted(k for k in sample if not k.startswith('__'))}, expected "
                         f"{IMAGE_MEMBER} and {LABEL_MEMBER}")
    label = parse_label(sample[LABEL_MEMBER], rules.classes, place)
    return check_decoded(decode_hwc(sample[IMAGE_MEMBER], place), rules.patch, place), label


def check_decoded(img, patch: int, place: str):
    """Prep's patch x patch RGB (HWC array, or CHW tensor from the device decoder), else an
    error naming the sample."""
    shape = tuple(img.shape) if isinstance(img, np.ndarray) else (img.shape[1], img.shape[2], img.shape[0])
    if shape != (patch, patch, 3):
        raise ValueError(f"{place}: image {shape[0]}x{shape[1]}x{shape[2]}, expected {patch}x{patch}x3 as the "
                         f"manifest says")
    return img


def shuffle_buffer(samples: Iterator[dict], size: int, rng: random.Random) -> Iterator[dict]:
    """webdataset's shuffle stage, seeded: a `size`-sample buffer, full before the first
    sample leaves (initial = size), so a pass is a pure function of rng's seed."""
    return wds.shuffle(size, initial=size, rng=rng)(iter(samples))


def worker_slot(rank: int, world: int) -> tuple[int, int]:
    info = get_worker_info()
    workers, worker = (info.num_workers, info.id) if info else (1, 0)
    return rank * workers + worker, world * workers


# which samples an epoch's batches hold, by this module's rule; a mid-epoch checkpoint records it
EPOCH_ORDER = "stretches-of-one-order"
DECODERS = ("worker", "device")  # where JPEGs are decoded (--decode)
PREFETCH = 4  # batches queued per loader worker
POOL = PREFETCH + 2  # + one held by the loop + one being filled


class TrainStream(IterableDataset):
    """Yields whole batches (uint8 crops, labels, mirror flags, pool slot): each crop is
    copied once, into the batch; mirroring happens on the device (DeviceAugment).

    Batch memory is recycled. Sending a fresh 19 MB batch from a worker cost ~14 ms
    (new shared memory, first-touch page faults; ~110 us per image, as much as a third of
    decoding it, bench/loader_throughput.py on 2 cores). Each worker therefore fills POOL
    shared buffers in turn; `release_flags[slot]` is set by the worker when it fills one
    and cleared by `iterate_train_batches` once the loop has asked for the next batch,
    i.e. has finished with this one. With no free buffer the worker allocates a new one:
    never a wait, never a buffer overwritten while in use.
    """

    def __init__(self, urls: list[str], counts: list[int], *, rules: SampleRules, crop: int, buffer: int, seed: int,
                 steps: int, rank: int = 0, world: int = 1, batch_size: int = 128, decode: str = "worker"):
        if decode not in DECODERS:
            raise ValueError(f"decode {decode!r}: expected one of {DECODERS}")
        if len(counts) != len(urls):
            raise ValueError(f"{len(urls)} shards but {len(counts)} sample counts")
        self.urls, self.counts, self.rules, self.crop, self.buffer = list(urls), list(counts), rules, crop, buffer
        self.seed, self.steps, self.batch_size, self.decode = seed, steps, batch_size, decode
        self.rank, self.world = rank, world
        self.epoch = 0
        self.skip_batches = 0  # this epoch's batches already trained on (a mid-epoch resume)
        self.release_flags: torch.Tensor | None = None  # shared uint8 [workers * POOL]

    @classmethod
    def of_train_split(cls, manifest, root, url_template: str | None = None, **kw) -> "TrainStream":
        """The train split of the dataset at `root`: its shards with their manifest counts."""
        info = manifest.splits["train"]
        return cls(manifest.shard_paths(root, "train", url_template), info.shard_samples,
                   rules=SampleRules(manifest.patch_size, manifest.num_classes), **kw)

    def epoch_order(self, q: int) -> list[tuple[str, int]]:
        """(shard, samples) in the order epoch q reads them; the same on every rank."""
        order = list(zip(self.urls, self.counts))
        random.Random(f"{self.seed}-pass-{q}").shuffle(order)
        return order

    def stretch(self, role: int, workers: int) -> tuple[int, int]:
        """(first sample, samples) of this epoch's order that worker `role` of this rank reads:
        rank r's stretch follows ranks 0..r-1, each role's follows the roles before it."""
        b = self.batch_size
        before = self.rank * self.steps * b + sum(len(range(w, self.steps, workers)) for w in range(role)) * b
        return before, len(range(role, self.steps, workers)) * b

    def pieces(self, start: int, n: int) -> Iterator[tuple[str, int, int]]:
        """(shard, samples to pass over, samples to take) covering `n` samples from `start` of
        the epoch's order, continuing into the next epochs' orders when the epoch is too short."""
        if n > 0 and not any(self.counts):
            raise ValueError("the train split has no samples")
        q, pos = self.epoch, 0
        while n > 0:
            for url, count in self.epoch_order(q):
                if pos + count > start and n > 0:
                    skip = start - pos
                    take = min(count - skip, n)
                    yield url, skip, take
                    start, n = start + take, n - take
                pos += count
            q += 1

    def slot_samples(self, role: int, workers: int, rng: random.Random) -> Iterator[dict]:
        """The raw samples worker `role` turns into batches, in the order it uses them."""
        start, n = self.stretch(role, workers)
        return shuffle_buffer(read_pieces(self.pieces(start, n)), self.buffer, rng)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, list, list, int]]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        role = (worker + self.skip_batches) % workers  # the worker whose batch comes next
        slot = self.rank * workers + role
        rng = random.Random(f"{self.seed}-epoch-{self.epoch}-slot-{slot}")
        samples = self.slot_samples(role, workers, rng)
        done = len(range(role, self.skip_batches, workers))
        self._skip(samples, rng, done)
        batches = len(range(role, self.steps, workers)) - done
        if self.decode == "device":
            yield from self._undecoded_batches(samples, rng, batches)
            return
        b, c, patch = self.batch_size, self.crop, self.rules.patch
        pool: dict[int, torch.Tensor] = {}
        for _ in range(batches):
            # HWC memory: libjpeg decodes to HWC, so each crop row is one contiguous copy,
            # and the batch arrives channels_last, the layout the model runs in.
            flag, images = self._acquire(pool, info, (b, c, c, 3))
            out = images.numpy()  # numpy's strided copy is ~2x torch's for this slice
            labels, flips = [], []
            for i in range(b):
                img, label = decode_sample(next(samples), self.rules)
                top, left, flip = draw_crop(patch, patch, c, rng)
                out[i] = img[top:top + c, left:left + c]
                labels.append(label)
                flips.append(flip)
            # labels and flags travel as plain lists: a small tensor would cost a new
            # shared-memory segment and a file-descriptor hand-over per batch
            yield images.permute(0, 3, 1, 2), labels, flips, flag

    def _skip(self, samples: Iterator[dict], rng: random.Random, batches: int) -> None:
        """Advance past `batches` of this worker's batches: every read and draw a batch makes,
        in the same order, without the decoding."""
        patch = self.rules.patch
        for _ in range(batches * self.batch_size):
            next(samples)
            draw_crop(patch, patch, self.crop, rng)

    def _undecoded_batches(self, samples: Iterator[dict], rng: random.Random, batches: int):
        """--decode device: the same draws, but JPEG bytes travel and the device decodes."""
        b, c, patch = self.batch_size, self.crop, self.rules.patch
        for _ in range(batches):
            raw: dict[str, list] = {"jpg": [], "top": [], "left": [], "where": [], "patch": patch}
            labels, flips = [], []
            for _ in range(b):
                sample = next(samples)
                place = where(sample)
                top, left, flip = draw_crop(patch, patch, c, rng)
                raw["jpg"].append(sample[IMAGE_MEMBER])
                raw["top"].append(top)
                raw["left"].append(left)
                raw["where"].append(place)
                labels.append(parse_label(sample[LABEL_MEMBER], self.rules.classes, place))
                flips.append(flip)
            yield raw, labels, flips, -1

    def _acquire(self, pool: dict, info, shape) -> tuple[int, torch.Tensor]:
        if info is None or self.release_flags is None:  # in-process: nothing to recycle safely
            return -1, torch.empty(shape, dtype=torch.uint8)
        for flag in range(info.id * POOL, (info.id + 1) * POOL):
            if self.release_flags[flag] == 0:
                self.release_flags[flag] = 1
                if flag not in pool:
                    pool[flag] = new_shared_uint8(shape)
                return flag, pool[flag]
        return -1, new_shared_uint8(shape)


def new_shared_uint8(shape: tuple[int, ...]) -> torch.Tensor:
    """Allocated straight in shared memory, as default_collate does in workers (a plain
    tensor would be copied there when sent to the main process)."""
    numel = 1
    for n in shape:
        numel *= n
    if hasattr(torch.UntypedStorage, "_new_shared"):
        storage = torch.UntypedStorage._new_shared(numel)
        return torch.empty(0, dtype=torch.uint8).set_(storage).view(shape)
    return torch.empty(shape, dtype=torch.uint8).share_memory_()


def iterate_train_batches(stream: TrainStream, workers: int, pin: bool,
                          device: torch.device | None = None) -> Iterator[tuple]:
    """(images, labels, flips) batches of `stream` from `workers` processes; each batch's
    buffer is handed back to its worker when the next batch is requested. With
    stream.decode == "device", images are decoded here, on `device`."""
    stream.release_flags = torch.zeros(max(1, workers) * POOL, dtype=torch.uint8).share_memory_()
    held = -1
    for images, labels, flips, flag in make_loader(stream, None, workers, pin):
        if held >= 0:
            stream.release_flags[held] = 0
        held = int(flag)
        if isinstance(images, dict):
            images = decode_crops_on_device(images, stream.crop, device or torch.device("cpu"))
        yield images, torch.tensor(labels), torch.tensor(flips)


def decode_crops_on_device(raw: dict, crop: int, device: torch.device) -> torch.Tensor:
    """A batch of JPEG bytes -> uint8 (B, 3, crop, crop) crops on `device` (nvJPEG, batched,
    on CUDA; libjpeg-turbo on the CPU, which the tests use to check this path). nvJPEG
    reports no corrupt-data warnings: this path relies on the shards' checksums
    (--verify-checksums, alexnet-prep verify) for damage the decoder accepts."""
    from torchvision.io import ImageReadMode, decode_jpeg  # deprecated for torchcodec; only this path

    data = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in raw["jpg"]]
    if device.type == "cuda":
        # nvJPEG's hardware engine writes its outputs before the work already queued on the
        # stream has run, into blocks the caching allocator recycled from that work: other
        # tensors are overwritten (pytorch/vision#9606, meta-pytorch/torchcodec#1634). Seen
        # here as a NaN loss in the second step on an H200 (torch 2.11, docs/performance.md);
        # draining the stream first is the fix both threads measured.
        torch.cuda.current_stream(device).synchronize()
    try:
        images = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        for one, place in zip(data, raw["where"]):  # find the culprit to name it
            try:
                decode_jpeg(one, mode=ImageReadMode.RGB, device=device)
            except RuntimeError as exc:
                raise ValueError(f"{place}: cannot be decoded ({exc}); re-run alexnet-prep on its source") from exc
        raise
    crops = []
    for img, top, left, place in zip(images, raw["top"], raw["left"], raw["where"]):
        crops.append(check_decoded(img, raw["patch"], place)[:, top:top + crop, left:left + crop])
    return torch.stack(crops)


class EvalShards(IterableDataset):
    """Every sample of `urls` once across all ranks and workers; whole patches, CHW uint8,
    and the label (and the sample's key, with `keys`: per-sample results)."""

    def __init__(self, urls: list[str], rules: SampleRules, rank: int = 0, world: int = 1, limit: int | None = None,
                 keys: bool = False):
        self.urls, self.rules, self.rank, self.world, self.limit = list(urls), rules, rank, world, limit
        self.keys = keys

    def __iter__(self) -> Iterator[tuple]:
        slot, slots = worker_slot(self.rank, self.world)
        for n, sample in enumerate(read_tar_samples(self.urls[slot::slots])):
            if self.limit is not None and n >= self.limit:
                return
            img, label = decode_sample(sample, self.rules)
            image = torch.from_numpy(img).permute(2, 0, 1)
            yield (image, label, sample["__key__"]) if self.keys else (image, label)


# A SIGKILLed worker's pipe is closed before the worker can be waited for (the kernel closes a
# dying process's files first), so the main process may read the end of the pipe, or a batch
# cut off, while torch still sees the worker alive: EOFError, ConnectionResetError, "received 0
# items of ancdata", a missing shared-memory file. Seen once in a clean clone's suite: the
# out-of-memory test's run ended on such an error, then torch's SIGCHLD handler's traceback. The death shows within
# milliseconds; seconds cover a loaded machine.
DEATH_SETTLE_S = 3.0


class WorkerDeathNamingLoader(DataLoader):
    """A DataLoader whose batches end with torch's worker-death error ("DataLoader worker (pid N)
    is killed by signal: Killed.") whichever error a worker's death surfaced as first."""

    def __iter__(self):
        return batches_naming_worker_deaths(super().__iter__(), self.num_workers)


def batches_naming_worker_deaths(batches: Iterator, workers: int) -> Iterator:
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as exc:
            if workers:
                raise_if_a_worker_dies(exc, DEATH_SETTLE_S)
            raise
        yield batch


def raise_if_a_worker_dies(exc: Exception, within_s: float) -> None:
    """Raise torch's worker-death error, caused by `exc`, if a worker of a live loader iterator
    dies within `within_s` seconds; `exc` already naming a death or a worker's own error
    (re-raised by torch with "in DataLoader worker process N") is left as it is."""
    if worker_death(exc) is not None or "in DataLoader worker process" in str(exc):
        return
    deadline = time.monotonic() + within_s
    try:
        while time.monotonic() < deadline:
            _error_if_any_worker_fails()  # torch's own check (waitid, WNOWAIT) of its workers
            time.sleep(0.02)
    except RuntimeError as death:  # from the check, or from torch's SIGCHLD handler meanwhile
        if worker_death(death) is None:
            raise
        raise death from exc


def make_loader(dataset: IterableDataset, batch_size: int | None, workers: int, pin: bool) -> DataLoader:
    """batch_size None: the dataset yields whole batches itself (TrainStream). The loader's
    own generator: a DataLoader otherwise draws its workers' base seed from torch's global
    generator, which dropout draws from too -- a resumed run would then start its masks one
    draw later (our workers seed their own random.Random and never use torch's seed)."""
    return WorkerDeathNamingLoader(dataset, batch_size=batch_size, num_workers=workers, pin_memory=pin,
                                   prefetch_factor=PREFETCH if workers else None, persistent_workers=False,
                                   generator=torch.Generator().manual_seed(0),
                                   worker_init_fn=functools.partial(_loader_worker_init, os.getpid()) if workers
                                   else None)


def _loader_worker_init(parent: int, worker_id: int) -> None:
    # The main process defers Ctrl-C and SIGTERM to its next step: a worker must not (torch stops
    # one with SIGTERM), and it dies with the main process however that dies. Its own process
    # group: a signal to the run's group (Ctrl-C in a terminal, `timeout`, `kill -- -PGID`) then
    # reaches the main process alone, which stops at a safe point and shuts its workers down;
    # in the group, a worker died first and the run ended as an internal error ("DataLoader
    # worker is killed by signal", seen under `timeout` in bench/gpu_session.sh's dry run).
    os.setpgrp()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    die_with_parent(parent)
