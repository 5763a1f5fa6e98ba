"""The shard stream: every sample once per epoch over ranks and workers, determinism per epoch,
each crop's label, the shuffle buffer's order, strict decoding and label checks."""
import itertools
import random

import numpy as np
import pytest
import simplejpeg
import torch

from shared.manifest import read_manifest
from shared.shards import Sample, AtomicShardWriter, iter_shard
from train.loader import (POOL, EvalShards, SampleRules, TrainStream, decode_crops_on_device, decode_sample,
                        iterate_train_batches, make_loader, read_tar_samples, shuffle_buffer)

RULES = SampleRules(256, 3)


def stream(root, seed, batch_size, steps=40, **kw):
    """The train split of the dataset at `root`, as the loop builds it."""
    return TrainStream.of_train_split(read_manifest(root), root, crop=224, buffer=16, seed=seed, steps=steps,
                                      batch_size=batch_size, **kw)


def test_stretches_partition_the_epoch_over_ranks_and_workers():
    """Uneven and empty shards: the (shard, pass over, take) pieces of all ranks and workers,
    laid end to end, are the epoch's order read once from the start, each sample at most once;
    more steps than samples continue into the next epoch's order."""
    counts = [8, 8, 3, 8, 0, 5, 7]
    urls = [f"s{i}" for i in range(len(counts))]
    for world, workers, b, steps in [(1, 1, 4, 9), (2, 3, 2, 9), (3, 2, 3, 4), (2, 2, 4, 12), (2, 4, 2, 9)]:  # the last: more workers than shards
        flat = []
        for rank in range(world):
            s = TrainStream(urls, counts, rules=RULES, crop=224, buffer=4, seed=5, steps=steps, rank=rank,
                            world=world, batch_size=b)
            s.epoch = 2
            for role in range(workers):
                start, n = s.stretch(role, workers)
                assert n == len(range(role, steps, workers)) * b
                pieces = list(s.pieces(start, n))
                assert sum(take for _, _, take in pieces) == n
                flat += [(url, skip + i) for url, skip, take in pieces for i in range(take)]
        assert len(flat) == world * steps * b
        orders = [(url, i) for q in (2, 3, 4) for url, count in s.epoch_order(q) for i in range(count)]
        assert flat == orders[:len(flat)], (world, workers, b, steps)
    assert s.epoch_order(0) != s.epoch_order(1)  # reshuffled each epoch


@pytest.mark.parametrize("world,workers,batch", [(1, 1, 4), (1, 3, 4), (2, 2, 4), (3, 2, 2)])
def test_every_train_sample_at_most_once_an_epoch_and_all_but_a_batch(tiny_shards, world, workers, batch):
    """The samples each rank's workers turn into batches, counted by key over all ranks."""
    manifest = read_manifest(tiny_shards)
    total = manifest.splits["train"].samples
    steps = total // (batch * world)
    keys = []
    for rank in range(world):
        s = stream(tiny_shards, 3, batch, steps, rank=rank, world=world)
        s.epoch = 1
        for role in range(workers):
            keys += [x["__key__"] for x in s.slot_samples(role, workers, random.Random(role))]
    assert len(keys) == len(set(keys)) == steps * batch * world
    assert total - len(keys) < batch * world


@pytest.mark.parametrize("workers", [0, 2])
def test_an_epoch_ends_after_its_steps_on_every_rank(tiny_shards, workers):
    """A finite epoch: each rank's loader ends after exactly `steps` batches (no rank waits
    for another's batch: webdataset #188)."""
    for rank in range(2):
        s = stream(tiny_shards, 1, 4, 5, rank=rank, world=2)
        assert sum(1 for _ in iterate_train_batches(s, workers, False)) == 5


def test_a_shard_shorter_than_its_count_is_named(tiny_shards):
    manifest = read_manifest(tiny_shards)
    urls = manifest.shard_paths(tiny_shards, "train")
    counts = list(manifest.splits["train"].shard_samples)
    counts[0] += 1  # as if the shard lost a sample after the start-up check
    s = TrainStream(urls, counts, rules=RULES, crop=224, buffer=4, seed=0, steps=100, batch_size=4)
    with pytest.raises(ValueError, match=rf"{urls[0]}: ends after {counts[0] - 1} samples"):
        list(s.slot_samples(0, 1, random.Random(0)))


def block_index(urls):
    """8x8 top-left block of every possible 224 crop of every train image -> its label."""
    index = {}
    for sample in (x for u in urls for x in iter_shard(u)):
        img = simplejpeg.decode_jpeg(sample.jpg, colorspace="RGB")
        for top in range(33):
            for left in range(33):
                index[img[top:top + 8, left:left + 8].tobytes()] = sample.label
    return index


def test_batches_are_deterministic_per_epoch_and_each_crop_carries_its_own_label(tiny_shards):
    urls = read_manifest(tiny_shards).shard_paths(tiny_shards, "train")

    def first_batches(epoch, workers):
        s = stream(tiny_shards, 1, 8)
        s.epoch = epoch
        return [tuple(t.clone() for t in b) for b in itertools.islice(iterate_train_batches(s, workers, False), 3)]

    a, b, c = first_batches(0, 2), first_batches(0, 2), first_batches(1, 2)
    for (xa, ya, fa), (xb, yb, fb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(fa, fb)
    assert not all(torch.equal(x[0], y[0]) for x, y in zip(a, c))
    images, labels, flips = a[0]
    assert images.shape == (8, 3, 224, 224) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and flips.dtype == torch.bool
    index = block_index(urls)
    for images, labels, _ in a:  # unflipped crops (mirroring happens on the device)
        hwc = images.permute(0, 2, 3, 1).numpy()
        assert [index[crop[:8, :8].tobytes()] for crop in hwc] == labels.tolist()


def test_shuffle_buffer_permutes_within_reach():
    """Every sample once; not in file order; a sample leaves at most `size` places early."""
    out = [s["i"] for s in shuffle_buffer(({"i": i} for i in range(500)), 50, random.Random(0))]
    assert sorted(out) == list(range(500))
    assert out != list(range(500))
    moved = [abs(pos - i) for pos, i in enumerate(out)]
    assert sum(m > 10 for m in moved) > 250  # genuinely mixed
    assert all(i - pos <= 50 for pos, i in enumerate(out))  # cannot jump further ahead than the buffer


def test_eval_shards_yield_every_sample_once_across_workers(tiny_shards):
    manifest = read_manifest(tiny_shards)
    urls = manifest.shard_paths(tiny_shards, "train")
    seen = sorted(int(y) for _, ys in make_loader(EvalShards(urls, RULES), 5, 3, False) for y in ys)
    assert seen == sorted(s.label for u in urls for s in iter_shard(u))


def test_recycled_batch_buffers_match_fresh_ones(tiny_shards):
    """Many more batches than pooled buffers: a worker (recycling) gives exactly what the
    in-process stream (fresh memory) gives, so no buffer is overwritten while in use."""
    n = 3 * POOL

    def batches(workers):
        out = []
        for images, labels, flips in iterate_train_batches(stream(tiny_shards, 2, 4, n), workers, False):
            out.append((images.clone(), labels, flips))  # consumed before the next request
        return out

    pooled, fresh = batches(1), batches(0)
    assert len(pooled) == len(fresh) == n
    for (a, la, fa), (b, lb, fb) in zip(pooled, fresh):
        assert torch.equal(a, b) and torch.equal(la, lb) and torch.equal(fa, fb)


def test_device_decode_path_gives_the_same_crops(tiny_shards):
    """--decode device (nvJPEG on CUDA) draws the same crops; on the CPU (libjpeg-turbo in
    torchvision) it must reproduce the worker path to within IDCT rounding."""
    def batches(decode):
        return [tuple(t.clone() for t in b) for b in itertools.islice(
            iterate_train_batches(stream(tiny_shards, 4, 6, decode=decode), 1, False, torch.device("cpu")), 3)]

    for (a, la, fa), (b, lb, fb) in zip(batches("worker"), batches("device")):
        assert a.shape == b.shape == (6, 3, 224, 224)
        assert (a.int() - b.int()).abs().float().mean() < 1.0
        assert torch.equal(la, lb) and torch.equal(fa, fb)


def test_device_decode_on_cuda_drains_the_stream_before_nvjpeg_writes(monkeypatch):
    """nvJPEG's hardware decoder writes before the stream's queued work has run, into blocks
    recycled from it (pytorch/vision#9606): without the drain, training on an H200 went NaN in its
    second step. The CPU check of that logic: the stream is synchronized before the decode."""
    import torchvision.io

    calls = []

    class Stream:
        def synchronize(self):
            calls.append("synchronize")

    def decode_jpeg(data, mode, device):
        calls.append(f"decode on {device}")
        return [torch.zeros(3, 256, 256, dtype=torch.uint8) for _ in data]
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: Stream())
    monkeypatch.setattr(torchvision.io, "decode_jpeg", decode_jpeg)
    raw = {"jpg": [good_jpeg()] * 2, "top": [0, 1], "left": [2, 3], "where": ["a", "b"], "patch": 256}
    crops = decode_crops_on_device(raw, 224, torch.device("cuda"))
    assert calls == ["synchronize", "decode on cuda"] and crops.shape == (2, 3, 224, 224)
    calls.clear()
    decode_crops_on_device(raw, 224, torch.device("cpu"))
    assert calls == ["decode on cpu"]  # nothing to drain on the CPU


def one_sample_shard(tmp_path, jpg: bytes, cls: bytes):
    path = tmp_path / "train-000000.tar"
    with AtomicShardWriter(path) as w:
        w.write(Sample("n01440764_1", jpg, 0, {}))
    sample = next(read_tar_samples([str(path)]))
    sample["cls"] = cls
    return sample


def good_jpeg() -> bytes:
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    return simplejpeg.encode_jpeg(np.ascontiguousarray(np.kron(small, np.ones((16, 16, 1), np.uint8))), 90)


@pytest.mark.parametrize("cls,message", [(b"999", "class index 999 outside 0..2"),
                                          (b"-1", "is not a non-negative integer"),
                                          (b"-100", "is not a non-negative integer"),
                                          (b"two", "is not a non-negative integer")])
def test_labels_outside_the_classes_name_the_sample(tmp_path, cls, message):
    sample = one_sample_shard(tmp_path, good_jpeg(), cls)
    with pytest.raises(ValueError, match=f"train-000000.tar: sample 'n01440764_1': .*{message}"):
        decode_sample(sample, RULES)


def test_corrupt_jpegs_name_shard_and_key(tmp_path):
    good = good_jpeg()
    assert decode_sample(one_sample_shard(tmp_path, good, b"1"), RULES)[1] == 1
    cut = good[: int(len(good) * 0.4)] + b"\xff\xd9"  # a cut file with an end marker: Pillow decodes it grey
    for data in (cut, b"\xff\xd8 not really a jpeg"):
        with pytest.raises(ValueError, match=r"train-000000.tar: sample 'n01440764_1': cannot be decoded"):
            decode_sample(one_sample_shard(tmp_path, data, b"1"), RULES)
    raw = {"jpg": [b"\xff\xd8 nope"], "top": [0], "left": [0], "where": ["x.tar: sample 'k'"], "patch": 256}
    with pytest.raises(ValueError, match=r"sample 'k': cannot be decoded"):
        decode_crops_on_device(raw, 224, torch.device("cpu"))  # the --decode device path
    with pytest.raises(ValueError, match="image 256x256x3, expected 128x128x3"):
        decode_sample(one_sample_shard(tmp_path, good, b"1"), SampleRules(128, 3))


def test_shared_batch_memory_uses_torch_private_allocator():
    """new_shared_uint8 allocates straight in shared memory with the private
    torch.UntypedStorage._new_shared, as default_collate does (a public share_memory_() would
    copy each 19 MB batch once more); this fails loudly the day torch renames it."""
    from train.loader import new_shared_uint8

    assert hasattr(torch.UntypedStorage, "_new_shared"), "torch dropped UntypedStorage._new_shared: see train/loader.py"
    t = new_shared_uint8((2, 3, 4))
    assert t.is_shared() and t.shape == (2, 3, 4) and t.dtype == torch.uint8
