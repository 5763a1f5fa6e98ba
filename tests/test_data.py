"""The shard stream: shard split per pass, determinism per epoch, batch contents."""
import itertools

import torch

from shared.manifest import read_manifest
from shared.shards import iter_shard
from train.data import POOL, EvalShards, TrainStream, iterate_train_batches, make_loader


def test_each_pass_splits_shards_exactly_over_all_slots():
    urls = [f"s{i}" for i in range(11)]
    stream = TrainStream(urls, 224, 10, seed=3)
    for q in range(3):
        parts = [stream.shards_for_pass(q, slot, 4) for slot in range(4)]
        assert sorted(itertools.chain(*parts)) == sorted(urls)
    assert stream.shards_for_pass(0, 0, 1) != stream.shards_for_pass(1, 0, 1)  # reshuffled each pass


def test_batches_are_deterministic_per_epoch_and_labelled(tiny_shards):
    manifest = read_manifest(tiny_shards)
    urls = manifest.shard_paths(tiny_shards, "train")
    labels_by_crop = {}
    for s in (x for u in urls for x in iter_shard(u)):
        labels_by_crop[s.key] = s.label

    def first_batches(epoch, workers):
        stream = TrainStream(urls, 224, 16, seed=1, batch_size=8)
        stream.epoch = epoch
        return [tuple(t.clone() for t in b) for b in itertools.islice(iterate_train_batches(stream, workers, False), 3)]

    a, b, c = first_batches(0, 2), first_batches(0, 2), first_batches(1, 2)
    for (xa, ya, fa), (xb, yb, fb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(fa, fb)
    assert not all(torch.equal(x[0], y[0]) for x, y in zip(a, c))
    images, labels, flips = a[0]
    assert images.shape == (8, 3, 224, 224) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and flips.dtype == torch.bool
    assert set(labels.tolist()) <= set(labels_by_crop.values())


def test_eval_shards_yield_every_sample_once_across_workers(tiny_shards):
    manifest = read_manifest(tiny_shards)
    urls = manifest.shard_paths(tiny_shards, "train")
    seen = sum(len(y) for _, y in make_loader(EvalShards(urls), 5, 3, False))
    assert seen == manifest.splits["train"].samples


def test_recycled_batch_buffers_match_fresh_ones(tiny_shards):
    """Many more batches than pooled buffers: a worker (recycling) gives exactly what the
    in-process stream (fresh memory) gives, so no buffer is overwritten while in use."""
    urls = read_manifest(tiny_shards).shard_paths(tiny_shards, "train")
    n = 3 * POOL

    def batches(workers):
        stream = TrainStream(urls, 224, 16, seed=2, batch_size=4)
        out = []
        for images, labels, flips in itertools.islice(iterate_train_batches(stream, workers, False), n):
            out.append((images.clone(), labels, flips))  # consumed before the next request
        return out

    pooled, fresh = batches(1), batches(0)
    assert len(pooled) == len(fresh) == n
    for (a, la, fa), (b, lb, fb) in zip(pooled, fresh):
        assert torch.equal(a, b) and torch.equal(la, lb) and torch.equal(fa, fb)


def test_pil_fallback_decodes_the_same_pixels(tiny_shards, monkeypatch):
    import train.data as data

    sample = next(iter_shard(read_manifest(tiny_shards).shard_paths(tiny_shards, "val")[0]))
    fast = data.decode_jpeg_chw(sample.jpg)
    monkeypatch.setattr(data, "decode_jpeg", None)
    slow = data.decode_jpeg_chw(sample.jpg)
    assert slow.shape == fast.shape == (3, 256, 256)
    assert (slow.int() - fast.int()).abs().float().mean() < 1.0  # two IDCT implementations


def test_device_decode_path_gives_the_same_batches(tiny_shards):
    """--decode device (nvJPEG on CUDA) draws the same crops; on the CPU it must reproduce
    the worker path exactly, which checks its logic without a GPU."""
    urls = read_manifest(tiny_shards).shard_paths(tiny_shards, "train")

    def batches(decode):
        stream = TrainStream(urls, 224, 16, seed=4, batch_size=6, decode=decode)
        return [tuple(t.clone() for t in b) for b in itertools.islice(
            iterate_train_batches(stream, 1, False, torch.device("cpu")), 3)]

    for (a, la, fa), (b, lb, fb) in zip(batches("worker"), batches("device")):
        assert a.shape == b.shape == (6, 3, 224, 224)
        assert torch.equal(a, b) and torch.equal(la, lb) and torch.equal(fa, fb)
