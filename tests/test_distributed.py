"""DDP on the CPU with gloo and 2 processes: same parameters on every rank, the same loss
curve as one process with the whole batch, exact sharded evaluation, torchrun end to end."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from ddp_helpers import STEPS, epoch_draws, evaluate_sharded, train_fixed_batch, worker
from shared.manifest import read_manifest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tiny_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.start_processes(worker, args=(2, str(tiny_shards), str(out), free_port()), nprocs=2,
                       start_method="spawn", join=True)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def test_parameters_identical_across_ranks(two_ranks):
    assert all(r["identical"] for r in two_ranks)


def test_dropout_masks_and_lighting_differ_across_ranks(two_ranks, tiny_shards):
    """Each GPU draws its own dropout masks and lighting (seeded by seed, rank, epoch), and
    what a rank draws depends on nothing else (resume, world size)."""
    r0, r1 = two_ranks[0]["draws"], two_ranks[1]["draws"]
    assert r0["mask"] != r1["mask"] and r0["alphas"] != r1["alphas"]
    assert set(r0["mask"]) == {0.0, 1.0}  # the paper's dropout: kept outputs unscaled
    assert epoch_draws(tiny_shards, 0) == r0 and epoch_draws(tiny_shards, 1) == r1


def test_two_ranks_follow_one_rank_with_the_whole_batch(two_ranks, tiny_shards):
    single = train_fixed_batch(tiny_shards, 0, 1, 8)
    assert len(single["losses"]) == STEPS
    # DDP averages the two half-batch gradients = the whole batch's gradient
    for a, b in zip(single["losses"], two_ranks[0]["losses"]):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-5)
    assert single["losses"][-1] < single["losses"][0]  # it is learning, not a flat line


def test_sharded_evaluation_counts_each_sample_once(two_ranks, tiny_shards):
    manifest = read_manifest(tiny_shards)
    single = evaluate_sharded(tiny_shards, 0, 1)
    for split in ("holdout", "val"):
        counts = [r["evals"][split]["samples"] for r in two_ranks]
        assert counts[0] == counts[1] == manifest.splits[split].samples  # reduced totals
        assert two_ranks[0]["evals"][split]["error@1"] == pytest.approx(single[split]["error@1"], abs=1e-12)
        assert two_ranks[0]["evals"][split]["error@5"] == pytest.approx(single[split]["error@5"], abs=1e-12)


def test_torchrun_end_to_end_with_uneven_shards(tiny_shards, tmp_path):
    """6 train shards over 2 ranks x 2 workers: slots get 2, 2, 1, 1 shards; no hang."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port", str(free_port()),
           "-m", "train.cli", "--shards", str(tiny_shards), "--epochs", "2", "--steps-per-epoch", "2",
           "--batch-size", "8", "--workers", "2", "--device", "cpu", "--no-figures",
           "--logdir", str(tmp_path), "--run-name", "ddp"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "ddp"
    config = json.loads((run / "config.json").read_text())
    assert config["world_size"] == 2 and config["per_rank_batch"] == 4
    manifest = read_manifest(tiny_shards)
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["holdout"]["samples"] for m in metrics] == [manifest.splits["holdout"].samples] * 2
    results = json.loads((run / "results.json").read_text())
    assert results["samples"] == manifest.splits["val"].samples
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and not any(k.startswith("module.") for k in ckpt["model"])
    # a checkpoint from 2 ranks resumes on 1
    resumed = subprocess.run([sys.executable, "-m", "train.cli", "--shards", str(tiny_shards), "--epochs", "3",
                              "--steps-per-epoch", "2", "--batch-size", "8", "--workers", "1", "--device", "cpu",
                              "--no-figures", "--logdir", str(tmp_path), "--run-name", "one",
                              "--resume", str(run / "last.pt")], cwd=ROOT, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert torch.load(tmp_path / "one" / "last.pt", weights_only=True)["epoch"] == 2
