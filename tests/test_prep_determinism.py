"""Byte-identical output across worker counts, after kill -9 + resume, and across --part merges."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from make_fixtures import random_image
from prep.config import PrepConfig
from prep.detect_layout import read_source
from prep.write_shards import INFO_DIR, write_dataset


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def run(src, out, **kw):
    cfg = PrepConfig(src=src, out=out, shard_size=kw.pop("shard_size", 3), allow_skips=True, **kw)
    return write_dataset(read_source(src, None), cfg, out)


def test_identical_across_worker_counts(kaggle_src, tmp_path):
    src, _ = kaggle_src
    run(src, tmp_path / "w1", workers=1)
    run(src, tmp_path / "w2", workers=2)
    a, b = tree_bytes(tmp_path / "w1"), tree_bytes(tmp_path / "w2")
    assert a.keys() == b.keys() and any(k.endswith(".tar") for k in a)
    assert a == b


def test_parts_merge_to_the_single_run(kaggle_src, tmp_path):
    src, _ = kaggle_src
    run(src, tmp_path / "whole", workers=2)
    for k in (1, 2):
        assert run(src, tmp_path / f"part{k}", workers=1, part=f"{k}/2") is None  # no manifest yet
    merged = tmp_path / "merged"
    for k in (1, 2):
        shutil.copytree(tmp_path / f"part{k}", merged, dirs_exist_ok=True)
    assert run(src, merged, workers=1) is not None
    assert tree_bytes(merged) == tree_bytes(tmp_path / "whole")


def test_resume_after_partial_run_and_stale_files(kaggle_src, tmp_path):
    src, _ = kaggle_src
    run(src, tmp_path / "ref", workers=1)
    out = tmp_path / "resumed"
    run(src, out, workers=1, part="1/3")
    (out / "train-000001.tar.tmp").write_bytes(b"half a shard")  # as a killed worker leaves it
    (out / INFO_DIR / "train-000000.tar.json").unlink()  # shard present, record lost: redo it
    run(src, out, workers=2)
    assert tree_bytes(out) == tree_bytes(tmp_path / "ref")


def test_changed_parameters_refuse_to_resume(kaggle_src, tmp_path):
    src, _ = kaggle_src
    run(src, tmp_path / "o", workers=1, part="1/2")
    with pytest.raises(ValueError, match="different inputs or parameters.*quality"):
        run(src, tmp_path / "o", workers=1, quality=70)


@pytest.mark.slow
def test_kill_9_then_rerun_is_byte_identical(tmp_path):
    src = tmp_path / "src"
    rng = np.random.default_rng(0)
    for c in range(3):
        (src / f"c{c}").mkdir(parents=True)
        for n in range(120):
            random_image(rng, 400, 320).save(src / f"c{c}" / f"{n}.jpg", quality=95)
    cmd = [sys.executable, "-m", "prep", "shard", "--src", str(src), "--shard-size", "4", "--workers", "1"]
    subprocess.run(cmd + ["--out", str(tmp_path / "ref")], check=True, capture_output=True)
    out = tmp_path / "killed"
    proc = subprocess.Popen(cmd + ["--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while len(list(out.glob("train-*.tar"))) < 5 and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists(), "run finished before the kill; grow the fixture"
    subprocess.run(cmd + ["--out", str(out)], check=True, capture_output=True)
    assert tree_bytes(out) == tree_bytes(tmp_path / "ref")
