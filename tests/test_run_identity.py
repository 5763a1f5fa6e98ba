"""A checkpoint is trusted by its content, not its name, and a run holds its folder and its
dataset: a damaged last.pt, a last.pt of another run or dataset, a resume
that changes what the run trains, a second writer in a run folder, a dataset rewritten under a
run, advice that does not fit what is on disk, a writer thread's traceback."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from command_helpers import one_line_error, prep, train_cli
from small_run import SMALL, SMALL_FLAGS
from shared.folder_locks import DatasetReadLock, DatasetWriteLock, RunFolderLock
from train.checkpoint import LAST, content_digest, load_checkpoint
from train.config import RESUME_MAY_CHANGE, TrainConfig, flags_of
from train.dataset_folder import DatasetFiles
from train.loop import resume_advice, train
from shared.manifest import read_manifest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def two_runs(tiny_shards, tmp_path_factory):
    """Two finished one-epoch runs of tiny_shards that differ by --seed only."""
    runs = tmp_path_factory.mktemp("runs")
    for name, seed in (("a", 1), ("b", 2)):
        train(TrainConfig(shards=tiny_shards, epochs=1, steps_per_epoch=2, seed=seed, logdir=runs, run_name=name,
                          **SMALL))
    return runs


def resume_flags(shards, run: Path, *extra) -> list[str]:
    return ["--shards", shards, "--steps-per-epoch", "2", "--epochs", "2", *SMALL_FLAGS, "--resume", run / LAST,
            *extra]


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_a_flipped_byte_in_last_pt_is_refused(trained, tmp_path):
    damaged = tmp_path / "last.pt"
    data = bytearray(trained.read_bytes())
    state = load_checkpoint(trained)
    weight = state["model"]["fc6.weight"]  # the largest tensor: the file's middle is its bytes
    needle = weight.reshape(-1)[len(weight.reshape(-1)) // 2: len(weight.reshape(-1)) // 2 + 4].numpy().tobytes()
    at = data.find(needle)
    assert at > 0
    data[at] ^= 0x01
    damaged.write_bytes(bytes(data))
    assert torch.load(damaged, weights_only=True)["format"] == 3  # torch itself reads it without a word
    with pytest.raises(ValueError, match="does not match the digest"):
        load_checkpoint(damaged)


def test_the_digest_covers_tensors_values_and_keys(trained):
    state = load_checkpoint(trained)
    digest = content_digest(state)
    assert digest == state["digest"]
    changed = [
        {**state, "epoch": state["epoch"] + 1},
        {**state, "model": {**state["model"], "fc8.bias": state["model"]["fc8.bias"] + 1e-7}},
        {**state, "config": {**state["config"], "seed": 0}},
        {**state, "model": {("fc8.biaz" if k == "fc8.bias" else k): v for k, v in state["model"].items()}},
    ]
    assert all(content_digest(c) != digest for c in changed)


def test_a_resume_may_change_only_the_documented_flags(two_runs, tiny_shards, tmp_path):
    run = copy_run(two_runs / "a", tmp_path / "a")
    for flags, said in ((["--optimizer", "adam"], "--optimizer sgd in the checkpoint, adam now"),
                        (["--seed", "2"], "--seed 1 in the checkpoint, 2 now"),
                        (["--batch-size", "4"], "--batch-size 8 in the checkpoint, 4 now"),
                        (["--pca-std", "0.2"], "--pca-std 0.1 in the checkpoint, 0.2 now")):
        args = [a for a in resume_flags(tiny_shards, run) if a not in ("--batch-size", "8")] \
            if flags[0] == "--batch-size" else resume_flags(tiny_shards, run)
        one_line_error(train_cli(*args, "--seed", "1", *flags) if flags[0] != "--seed" else
                       train_cli(*args, *flags), 2, said, "may change only --epochs")
    assert "epochs" in RESUME_MAY_CHANGE and "seed" not in RESUME_MAY_CHANGE
    docs = (ROOT / "docs" / "training.md").read_text()
    assert [name for name in RESUME_MAY_CHANGE if f"`{flags_of(name)[0]}`" not in docs] == []


def test_a_last_pt_of_another_run_beside_this_runs_records_is_refused(two_runs, tiny_shards, tmp_path):
    run = copy_run(two_runs / "a", tmp_path / "a")
    shutil.copy(two_runs / "b" / LAST, run / LAST)  # seed 2's last.pt among seed 1's best.pt, config.json
    text = one_line_error(train_cli(*resume_flags(tiny_shards, run, "--seed", "2")), 2, "belongs to another run")
    assert "config.json" in text or "best.pt" in text
    (run / "config.json").unlink()
    one_line_error(train_cli(*resume_flags(tiny_shards, run, "--seed", "2")), 2, "best.pt", "another run")
    # records from before run ids (format 2): the config tells them apart
    run = copy_run(two_runs / "a", tmp_path / "old")
    shutil.copy(two_runs / "b" / LAST, run / LAST)
    record = json.loads((run / "config.json").read_text())
    del record["run_id"]
    (run / "config.json").write_text(json.dumps(record))
    one_line_error(train_cli(*resume_flags(tiny_shards, run, "--seed", "2")), 2, "config.json",
                   "--seed 1 there, 2 in last.pt")


def test_a_resume_on_another_dataset_with_the_same_classes_is_refused(two_runs, tiny_shards, tmp_path):
    other = tmp_path / "other"
    src = tiny_shards.parent / "src"
    assert prep("shard", "--src", src, "--out", other, "--shard-size", "8", "--seed", "5").exit_code == 0
    assert prep("stats", "--shards", other).exit_code == 0
    assert read_manifest(other).class_table() == read_manifest(tiny_shards).class_table()
    run = copy_run(two_runs / "a", tmp_path / "a")
    one_line_error(train_cli(*resume_flags(other, run, "--seed", "1")), 2, "another dataset")


def test_a_second_writer_of_a_run_folder_is_refused_naming_the_holder(two_runs, tiny_shards, tmp_path):
    run = copy_run(two_runs / "a", tmp_path / "a")
    with RunFolderLock(run):
        text = one_line_error(train_cli(*resume_flags(tiny_shards, run, "--seed", "1")), 2, "in use by another",
                              f"pid {os.getpid()}")
        assert not list(run.glob("*.tmp"))
        one_line_error(train_cli("evaluate", "--checkpoint", run / "best.pt", "--shards", tiny_shards,
                                 "--no-figures", "--device", "cpu"), 2, "in use by another")
    assert "--run-name" in text


def test_a_dataset_is_not_rewritten_under_a_reader_nor_read_while_written(tiny_shards, tmp_path):
    src = tiny_shards.parent / "src"
    data = tmp_path / "shards"
    assert prep("shard", "--src", src, "--out", data, "--shard-size", "8").exit_code == 0
    before = {p.name: p.read_bytes() for p in data.glob("*.tar")}
    with DatasetReadLock(data):
        one_line_error(prep("shard", "--src", src, "--out", data, "--overwrite", "--shard-size", "5"), 2,
                       "being read by a training")
        one_line_error(prep("stats", "--shards", data), 2, "being read")
    assert {p.name: p.read_bytes() for p in data.glob("*.tar")} == before
    with DatasetWriteLock(data):
        one_line_error(train_cli("--shards", data, "--fast-dev-run", *SMALL_FLAGS, "--output-dir", tmp_path / "r"),
                       2, "being written by alexnet-prep", f"pid {os.getpid()}")


def test_a_shard_changed_between_epochs_is_named(tiny_shards, tmp_path, monkeypatch):
    """Where the lock cannot reach (another machine on a shared disk), the run still notices."""
    data = copy_run(tiny_shards, tmp_path / "shards")
    import train.loop as loop

    real_epoch = loop.run_epoch

    def then_rewrite(run, epoch):
        real_epoch(run, epoch)
        shard = data / read_manifest(data).splits["train"].shards[0]
        shard.write_bytes(shard.read_bytes())  # the same bytes, written again: a new file
        os.utime(shard, ns=(1, 1))

    monkeypatch.setattr(loop, "run_epoch", then_rewrite)
    cfg = TrainConfig(shards=data, epochs=2, steps_per_epoch=1, logdir=tmp_path, run_name="r", **SMALL)
    with pytest.raises(ValueError, match=r"train-000000\.tar changed while the run was going"):
        train(cfg)
    assert load_checkpoint(tmp_path / "r" / LAST)["epoch"] == 0  # epoch 0 kept, nothing trained on the new data


def test_dataset_files_notice_size_time_and_replacement(tiny_shards, tmp_path):
    data = copy_run(tiny_shards, tmp_path / "d")
    manifest = read_manifest(data)
    files = DatasetFiles.as_found(manifest, data, None)
    files.check_unchanged()
    name = manifest.splits["holdout"].shards[0]
    (data / name).rename(data / "x")
    (data / "x").rename(data / name)  # the same file back: unchanged
    files.check_unchanged()
    os.replace(data / name, data / "y")
    shutil.copy(data / "y", data / name)  # a copy in its place: another inode
    with pytest.raises(ValueError, match=name):
        files.check_unchanged()


def test_resume_advice_fits_what_the_folder_holds(tmp_path):
    run = SimpleNamespace(folder=tmp_path)
    assert "nothing was saved" in resume_advice(run)
    (tmp_path / "best.pt").write_bytes(b"x")  # a full disk after best.pt, before last.pt
    assert f"--resume {tmp_path / 'best.pt'}" in resume_advice(run)
    (tmp_path / "last.pt").write_bytes(b"x")
    assert f"--resume {tmp_path / 'last.pt'}" in resume_advice(run)


def test_a_run_resumes_from_best_pt_when_last_pt_was_never_written(two_runs, tiny_shards, tmp_path):
    run = copy_run(two_runs / "a", tmp_path / "a")
    (run / LAST).unlink()
    cfg = TrainConfig(shards=tiny_shards, epochs=2, steps_per_epoch=2, seed=1, resume=run / "best.pt", **SMALL)
    train(replace(cfg, figures=False))
    assert load_checkpoint(run / LAST)["epoch"] == 1


def test_a_failed_event_write_is_one_error_in_the_main_thread_not_a_thread_traceback(tmp_path):
    code = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from train.run_folder import open_event_writer
w = open_event_writer({str(tmp_path)!r})
def broken(*a, **k):
    raise OSError(30, "Read-only file system", {str(tmp_path / 'events')!r})
w._get_file_writer().event_writer._async_writer._writer.write = broken
w.add_scalar("x", 1.0, 0)
try:
    import time; time.sleep(0.5); w.add_scalar("x", 2.0, 1); w.flush()
except OSError as exc:
    print("main thread:", exc)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "main thread: [Errno 30] Read-only file system" in out.stdout, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and "Exception in thread" not in out.stderr, out.stderr
