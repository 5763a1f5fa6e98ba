"""Issue 21's environment faults: the disk fills, the output is read-only or a file stands where a
folder goes, a shard is cut or replaced while a run reads it. Each is one line naming the file,
with the documented exit status, and leaves no partial file or a resume that works."""
import errno
import os
import shutil

import numpy as np

from command_helpers import one_line_error, prep, train_cli
from make_fixtures import cut_mid_member, write_class_folders
from shared.manifest import read_manifest
from shared.shards import AtomicShardWriter, iter_shard
from small_run import SMALL_FLAGS


# ---- 14. the environment fails: disk full, read-only, a file where a folder goes --------------
def no_space(after: int):
    """A write that fails with ENOSPC after `after` successful calls."""
    calls = {"n": 0}

    def fail_later(original):
        def write(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] > after:
                raise OSError(errno.ENOSPC, "No space left on device", "/fake/disk")
            return original(*args, **kwargs)
        return write
    return fail_later


def test_disk_full_while_sharding_then_resume(tmp_path, monkeypatch):
    import shared.shards

    write_class_folders(tmp_path / "src", per_class=12)
    clean = tmp_path / "clean"
    prep("shard", "--src", tmp_path / "src", "--out", clean, "--shard-size", "4", "--workers", "1", "--allow-skips")
    out = tmp_path / "o"
    monkeypatch.setattr(shared.shards.AtomicShardWriter, "_add", no_space(20)(shared.shards.AtomicShardWriter._add))
    result = prep("shard", "--src", tmp_path / "src", "--out", out, "--shard-size", "4", "--workers", "1")
    one_line_error(result, 1, "No space left on device", "run the same command again")
    assert not list(out.glob("*.tmp")) and not (out / "manifest.json").exists()
    monkeypatch.undo()
    assert prep("shard", "--src", tmp_path / "src", "--out", out, "--shard-size", "4", "--workers", "1",
                "--allow-skips").exit_code == 0
    assert {p.name: p.read_bytes() for p in out.glob("*.tar")} == {p.name: p.read_bytes() for p in clean.glob("*.tar")}


def test_disk_full_while_writing_stats_leaves_no_partial_file(tiny_shards, tmp_path, monkeypatch):
    root = shutil.copytree(tiny_shards, tmp_path / "d")
    (root / "stats.json").unlink()
    (root / "mean_image.npy").unlink()

    def half_then_full(f, array, allow_pickle=False):
        f.write(b"\x93NUMPY" + bytes(1000))
        raise OSError(errno.ENOSPC, "No space left on device", str(root / "mean_image.npy.tmp"))
    monkeypatch.setattr(np, "save", half_then_full)
    one_line_error(prep("stats", "--shards", root, "--workers", "1"), 1, "No space left on device")
    assert not list(root.glob("*.tmp")) and not (root / "stats.json").exists() \
        and not (root / "mean_image.npy").exists()


class FillingFile:
    """A file on a disk with `room` bytes left: a write past it raises ENOSPC, as the kernel's."""

    def __init__(self, f, room: int):
        self.f, self.room = f, room

    def write(self, data) -> int:
        n = len(memoryview(data).cast("B"))
        if n > self.room:
            raise OSError(errno.ENOSPC, "No space left on device", self.f.name)
        self.room -= n
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_disk_full_at_a_checkpoint_advises_a_file_that_exists(tiny_shards, tmp_path, monkeypatch):
    """The disk fills while epoch 1's checkpoint is written (epoch 0's best.pt and last.pt
    fit): the file's write fails as the kernel's does, wherever the bytes come from (torch.save
    writing into the file turned that error into "unexpected pos …", an internal error)."""
    import builtins

    import shared.json_files

    opened = {"n": 0}

    def open_on_a_filling_disk(path, mode="r", *args, **kwargs):
        f = builtins.open(path, mode, *args, **kwargs)
        if str(path).endswith(".pt.tmp"):
            opened["n"] += 1
            return FillingFile(f, 10**12 if opened["n"] <= 2 else 10**6)
        return f

    monkeypatch.setattr(shared.json_files, "open", open_on_a_filling_disk, raising=False)
    result = train_cli("--shards", tiny_shards, "--epochs", "2", "--steps-per-epoch", "1", "--logdir", tmp_path / "r",
                       "--run-name", "x", *SMALL_FLAGS)
    text = one_line_error(result, 1, "No space left on device")
    run = tmp_path / "r" / "x"
    assert not list(run.glob("*.tmp"))
    if (run / "last.pt").is_file():
        assert f"--resume {run / 'last.pt'}" in text
    else:
        assert "no epoch was completed" in text


def test_read_only_output_is_one_line(tmp_path, monkeypatch):
    write_class_folders(tmp_path / "src")
    real_open = os.open

    def read_only(path, *args, **kwargs):
        if str(path).endswith(".lock"):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr(os, "open", read_only)
    one_line_error(prep("shard", "--src", tmp_path / "src", "--out", tmp_path / "o", "--workers", "1"), 1,
                   "Read-only file system", ".lock")


def test_logdir_a_file_and_evaluate_out_a_file(tiny_shards, trained, tmp_path):
    (tmp_path / "afile").write_text("x")
    one_line_error(train_cli("--shards", tiny_shards, "--fast-dev-run", "--logdir", tmp_path / "afile", *SMALL_FLAGS), 2,
                   "a file, not a folder")
    one_line_error(train_cli("evaluate", "--checkpoint", trained, "--shards", tiny_shards, "--out",
                             tmp_path / "afile", "--device", "cpu"), 2, "a file, not a folder")


# ---- 16. shards that change under a run ---------------------------------------------------------
def test_train_shard_cut_during_an_epoch_names_it(tiny_shards, tmp_path, monkeypatch):
    import train.dataset_folder

    root = shutil.copytree(tiny_shards, tmp_path / "d")
    real = train.dataset_folder.check_shards
    monkeypatch.setattr(train.dataset_folder, "check_shards", lambda *a, **k: None)  # as if cut after the start-up check
    for name in read_manifest(root).splits["train"].shards:
        cut_mid_member(root / name)
    result = train_cli("--shards", root, "--fast-dev-run", "--logdir", tmp_path / "runs", *SMALL_FLAGS)
    text = one_line_error(result, 2, "train-0000", "alexnet-prep verify")
    assert "Original Traceback" not in text and "DataLoader worker" not in text
    monkeypatch.setattr(train.dataset_folder, "check_shards", real)


def test_stats_on_a_cut_or_replaced_shard_names_it(tiny_shards, tmp_path):
    root = shutil.copytree(tiny_shards, tmp_path / "d")
    cut_mid_member(root / "train-000001.tar")
    one_line_error(prep("stats", "--shards", root, "--workers", "1"), 2, "train-000001.tar", "alexnet-prep verify")
    root = shutil.copytree(tiny_shards, tmp_path / "e")
    size = (root / "train-000002.tar").stat().st_size
    (root / "train-000002.tar").write_bytes(bytes(range(256)) * (size // 256) + bytes(size % 256))
    one_line_error(prep("stats", "--shards", root, "--workers", "2"), 2, "train-000002.tar", "alexnet-prep verify")


def test_holdout_shard_replaced_during_training_is_caught_before_evaluating(tiny_shards, tmp_path, monkeypatch):
    import train.loop

    root = shutil.copytree(tiny_shards, tmp_path / "d")
    real = train.loop.train_one_epoch
    holdout = root / read_manifest(root).splits["holdout"].shards[0]

    def then_replace(*args, **kwargs):
        out = real(*args, **kwargs)
        samples = list(iter_shard(holdout))[:-1]
        holdout.unlink()
        with AtomicShardWriter(holdout) as w:
            for s in samples:
                w.write(s)
        return out
    monkeypatch.setattr(train.loop, "train_one_epoch", then_replace)
    result = train_cli("--shards", root, "--epochs", "1", "--steps-per-epoch", "1", "--logdir", tmp_path / "runs",
                       *SMALL_FLAGS)
    one_line_error(result, 2, holdout.name, "manifest says")
