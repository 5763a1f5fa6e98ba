"""Byte-identical output across worker counts, after kill -9 + resume, and across --part merges."""
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from command_helpers import children
from make_fixtures import random_image
from prep.config import PrepConfig
from prep.detect_layout import read_source
from prep.write_shards import INFO_DIR, write_dataset


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file of a dataset folder but the lock (which names the process that held it)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock"}


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


@pytest.fixture(scope="module")
def slow_src(tmp_path_factory) -> Path:
    """360 largish JPEGs: a few seconds of work for 2 workers."""
    src = tmp_path_factory.mktemp("slow") / "src"
    rng = np.random.default_rng(0)
    for c in range(3):
        (src / f"c{c}").mkdir(parents=True)
        for n in range(120):
            random_image(rng, 400, 320).save(src / f"c{c}" / f"{n}.jpg", quality=95)
    return src


def prep_cmd(src: Path, out: Path, workers: int) -> list[str]:
    return [sys.executable, "-m", "prep", "shard", "--src", str(src), "--shard-size", "4", "--workers",
            str(workers), "--out", str(out)]


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


def start_and_wait_for_shards(cmd: list[str], out: Path, shards: int) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while len(list(out.glob("train-*.tar"))) < shards and time.time() < deadline:
        time.sleep(0.01)
    return proc


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc to find the pool workers")
def test_kill_9_of_the_main_process_then_rerun_is_byte_identical(slow_src, tmp_path):
    """kill -9 of the main process alone: its pool workers die with it (nothing keeps writing
    into the folder), and the same command finishes the job, byte-identical."""
    subprocess.run(prep_cmd(slow_src, tmp_path / "ref", 2), check=True, capture_output=True)
    out = tmp_path / "killed"
    proc = start_and_wait_for_shards(prep_cmd(slow_src, out, 2), out, 5)
    workers = children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert workers and not (out / "manifest.json").exists(), "run finished before the kill; grow the fixture"
    deadline = time.time() + 10
    while any(alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(alive(w) for w in workers), "orphaned pool workers still running"
    subprocess.run(prep_cmd(slow_src, out, 2), check=True, capture_output=True)
    assert tree_bytes(out) == tree_bytes(tmp_path / "ref")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc to find the pool workers")
def test_a_killed_worker_is_an_error_then_resumable(slow_src, tmp_path):
    subprocess.run(prep_cmd(slow_src, tmp_path / "ref", 2), check=True, capture_output=True)
    out = tmp_path / "o"
    proc = start_and_wait_for_shards(prep_cmd(slow_src, out, 2), out, 3)
    os.kill(children(proc.pid)[0], signal.SIGKILL)
    _, stderr = proc.communicate(timeout=60)  # an error within seconds, not a hang
    assert proc.returncode == 1 and b"a worker process died" in stderr
    subprocess.run(prep_cmd(slow_src, out, 2), check=True, capture_output=True)
    assert tree_bytes(out) == tree_bytes(tmp_path / "ref")


def test_ctrl_c_stops_promptly_says_so_and_resumes(slow_src, tmp_path):
    """SIGINT to the whole group (a terminal's Ctrl-C) or to the main process alone: the run
    stops within seconds, not after writing every queued shard; exit 1 with a line saying so;
    the same command then finishes byte-identical to an uninterrupted run."""
    subprocess.run(prep_cmd(slow_src, tmp_path / "ref", 2), check=True, capture_output=True)
    total = len(list((tmp_path / "ref").glob("*.tar")))
    for target in ("group", "main"):
        out = tmp_path / target
        proc = subprocess.Popen(prep_cmd(slow_src, out, 2), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        deadline = time.time() + 60
        while len(list(out.glob("train-*.tar"))) < 3 and time.time() < deadline:
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGINT) if target == "group" else os.kill(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
        written = len(list(out.glob("*.tar")))
        assert proc.returncode == 1 and b"interrupted (SIGINT)" in stderr and b"Traceback" not in stderr
        assert written < total // 2, f"{written} of {total} shards written after Ctrl-C"
        subprocess.run(prep_cmd(slow_src, out, 2), check=True, capture_output=True)
        assert tree_bytes(out) == tree_bytes(tmp_path / "ref")


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc to find the pool workers")
def test_sigint_to_the_workers_alone_changes_nothing(slow_src, tmp_path):
    """Only the main process decides to stop: a SIGINT that reaches the pool workers and not
    the main process (`pkill -INT python`, a stray `kill`) neither fails a job nor kills a
    worker; the run finishes byte-identical to an undisturbed one."""
    subprocess.run(prep_cmd(slow_src, tmp_path / "ref", 2), check=True, capture_output=True)
    out = tmp_path / "o"
    proc = start_and_wait_for_shards(prep_cmd(slow_src, out, 2), out, 3)
    workers = children(proc.pid)
    for _ in range(3):  # busy and idle moments both
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):  # a worker that died is the failure below
                os.kill(pid, signal.SIGINT)
        time.sleep(0.2)
    _, stderr = proc.communicate(timeout=120)
    assert workers and proc.returncode == 0, stderr.decode(errors="replace")[-2000:]
    assert b"Traceback" not in stderr
    assert tree_bytes(out) == tree_bytes(tmp_path / "ref")


@pytest.fixture(scope="module")
def many_patches(tmp_path_factory) -> Path:
    """A dataset folder of 24,000 train patches (a few seconds of `stats` on 2 workers), made
    by writing shards of repeated patches directly (prepping that many images would take minutes)."""
    from shared.manifest import ClassInfo, Manifest, SplitInfo, write_manifest
    from shared.patch import encode_jpeg
    from shared.shards import AtomicShardWriter, Sample, file_sha256

    root = tmp_path_factory.mktemp("many")
    rng = np.random.default_rng(0)
    jpgs = [encode_jpeg(random_image(rng, 256, 256), 90) for _ in range(8)]
    names, counts = [], []
    for index in range(48):
        name = f"train-{index:06d}.tar"
        with AtomicShardWriter(root / name) as writer:
            for n in range(500):
                writer.write(Sample(f"s{index}_{n}", jpgs[n % 8], n % 2, {}))
        names.append(name)
        counts.append(500)
    train = SplitInfo(names, counts, [(root / n).stat().st_size for n in names], [file_sha256(root / n) for n in names])
    write_manifest(Manifest("many", "class-folders", 256, [ClassInfo(0, None, "a"), ClassInfo(1, None, "b")],
                            {"train": train}, {}, {}), root)
    return root


def stats_cmd(root: Path) -> list[str]:
    return [sys.executable, "-m", "prep", "stats", "--shards", str(root), "--workers", "2"]


def wait_for_workers(proc: subprocess.Popen, count: int) -> list[int]:
    deadline = time.time() + 30
    while len(children(proc.pid)) < count and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(0.3)  # the workers are at work
    return children(proc.pid)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc to find the pool workers")
def test_a_killed_stats_worker_is_an_error_not_a_hang(many_patches):
    proc = subprocess.Popen(stats_cmd(many_patches), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    workers = wait_for_workers(proc, 2)
    assert workers, "stats finished before its workers could be found"
    os.kill(workers[0], signal.SIGKILL)
    _, stderr = proc.communicate(timeout=30)  # before: no progress for 89 s and counting
    assert proc.returncode == 1 and b"a worker process died" in stderr and b"Traceback" not in stderr
    assert not (many_patches / "stats.json").exists() and not (many_patches / "mean_image.npy").exists()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc to find the pool workers")
def test_ctrl_c_stops_stats_promptly(many_patches):
    start = time.time()
    proc = subprocess.Popen(stats_cmd(many_patches), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    workers = wait_for_workers(proc, 2)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 1 and b"interrupted (SIGINT)" in stderr and b"Traceback" not in stderr
    assert not (many_patches / "stats.json").exists()
    assert workers and not any(alive(pid) for pid in workers)
    assert time.time() - start < 20
