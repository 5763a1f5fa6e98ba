"""Every command, run as a user runs it (a real process), on a table of input and environment
faults: each ends with its documented exit status and says why, never with a Python traceback."""
import gzip
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from make_fixtures import cut_mid_member, idx_bytes, write_class_folders, write_mnist
from small_run import SMALL_FLAGS
from train.checkpoint import content_digest


@pytest.fixture(scope="module")
def fault_table(tiny_shards, trained, tmp_path_factory) -> list[tuple[str, list[str], int]]:
    """(name, command, documented exit status) for real subprocesses."""
    base = tmp_path_factory.mktemp("faults")
    (base / "notes.txt").write_text("x")
    (base / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip")
    mnist = base / "mnist"
    data = write_mnist(mnist)
    (mnist / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(data["train"][0].reshape(30, -1))))
    cut = shutil.copytree(tiny_shards, base / "cut")
    cut_mid_member(cut / "train-000000.tar")
    bad_manifest = shutil.copytree(tiny_shards, base / "badmanifest")
    d = json.loads((bad_manifest / "manifest.json").read_text())
    d["splits"] = []
    (bad_manifest / "manifest.json").write_text(json.dumps(d))
    state = torch.load(trained, weights_only=True)
    huge = {**state, "patch_size": 60000}
    huge["digest"] = content_digest(huge)  # crafted with its digest: the patch size check must refuse it
    torch.save(huge, base / "huge.pt")
    (base / "garbage.pt").write_bytes(b"\x00garbage" * 100)
    os.mkfifo(base / "fifo.jpg")
    write_class_folders(base / "src")
    prep_cmd, train_cmd = ["-m", "prep"], ["-m", "train.cli"]
    return [
        ("shard: no such --src", prep_cmd + ["shard", "--src", str(base / "nope")], 2),
        ("shard: --src a text file", prep_cmd + ["shard", "--src", str(base / "notes.txt")], 2),
        ("shard: a broken zip", prep_cmd + ["shard", "--src", str(base / "broken.zip")], 2),
        ("shard: 2-D MNIST images", prep_cmd + ["shard", "--src", str(mnist), "--out", str(base / "o1")], 2),
        ("shard: --out inside --src", prep_cmd + ["shard", "--src", str(base / "src"), "--out",
                                                  str(base / "src" / "out")], 2),
        ("shard: --size 100000", prep_cmd + ["shard", "--src", str(base / "src"), "--size", "100000"], 2),
        ("stats: no dataset", prep_cmd + ["stats", "--shards", str(base / "nope")], 2),
        ("stats: a cut shard", prep_cmd + ["stats", "--shards", str(cut), "--workers", "1"], 2),
        ("verify: a malformed manifest", prep_cmd + ["verify", "--shards", str(bad_manifest)], 2),
        ("synth: --classes 99", prep_cmd + ["synth", "--out", str(base / "s"), "--classes", "99"], 2),
        ("train: no dataset", train_cmd + ["--shards", str(base / "nope"), *SMALL_FLAGS], 2),
        ("train: a malformed manifest", train_cmd + ["--shards", str(bad_manifest), *SMALL_FLAGS], 2),
        ("train: --learn-rate inf", train_cmd + ["--shards", str(tiny_shards), "--learn-rate", "inf", *SMALL_FLAGS], 2),
        ("train: --device foo", train_cmd + ["--shards", str(tiny_shards), *SMALL_FLAGS, "--device", "foo"], 2),
        ("train: --logdir a file", train_cmd + ["--shards", str(tiny_shards), "--fast-dev-run", "--logdir",
                                                str(base / "notes.txt"), *SMALL_FLAGS], 2),
        ("train: --resume a missing file", train_cmd + ["--shards", str(tiny_shards), "--resume",
                                                        str(base / "nope.pt"), *SMALL_FLAGS], 2),
        ("evaluate: a garbage checkpoint", train_cmd + ["evaluate", "--checkpoint", str(base / "garbage.pt"),
                                                        "--shards", str(tiny_shards)], 2),
        ("predict: patch size 60000", train_cmd + ["predict", "--checkpoint", str(base / "huge.pt"),
                                                   str(base / "notes.txt")], 2),
        ("predict: a FIFO", train_cmd + ["predict", "--checkpoint", str(trained), "--views", "1",
                                         str(base / "fifo.jpg")], 3),
        ("predict: --batch-size -1", train_cmd + ["predict", "--checkpoint", str(trained), "--batch-size", "-1",
                                                  str(base / "notes.txt")], 2),
        ("table: a folder without results", train_cmd + ["table", str(base)], 2),
    ]


@pytest.mark.slow
def test_no_fault_prints_a_traceback(fault_table):
    def run(args):
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120,
                              cwd=Path(__file__).parents[1], stdin=subprocess.DEVNULL)

    # Two at a time: each entry is its own process and reads its own inputs; most of each one's
    # time is Python and torch starting (the table took 51 s one by one on 2 cores).
    with ThreadPoolExecutor(2) as pool:
        procs = list(pool.map(run, [args for _, args, _ in fault_table]))
    failures = []
    for (name, args, status), proc in zip(fault_table, procs):
        output = proc.stdout + proc.stderr
        said = "error" in output.lower() or "problems" in output  # verify lists problems
        if "Traceback" in output or proc.returncode != status or not said:
            failures.append(f"{name}: exit {proc.returncode} (documented {status}): {output[-600:]}")
    assert not failures, "\n\n".join(failures)
