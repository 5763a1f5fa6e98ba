"""Mid-epoch checkpoints (train/mid_epoch.py): a run killed with SIGKILL between two epoch
ends and resumed from last.pt ends with the weights of a run that was never interrupted,
bit for bit; the loader's skip replays exactly the batches an uninterrupted epoch makes."""
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from shared.manifest import read_manifest
from train.checkpoint import content_digest, load_checkpoint
from train.config import TrainConfig
from train.loader import EPOCH_ORDER, TrainStream, iterate_train_batches

REPO = Path(__file__).parents[1]


def batches(root, workers: int, skip: int, count: int, decode: str = "worker", steps: int = 7) -> list:
    stream = TrainStream.of_train_split(read_manifest(root), root, crop=224, buffer=16, seed=7, steps=steps,
                                        batch_size=4, decode=decode)
    stream.epoch, stream.skip_batches = 1, skip
    it = iterate_train_batches(stream, workers, False)
    out = [(images.clone(), labels.clone(), flips.clone()) for images, labels, flips in itertools.islice(it, count)]
    it.close()
    return out


@pytest.mark.parametrize("workers", [0, 1, 2, 3])
def test_a_skipped_stream_continues_with_the_batches_an_unskipped_one_makes(tiny_shards, workers):
    """Batch k onwards, whatever k and however many workers (their roles rotate so that the
    loader's round robin, which starts at worker 0, hands out batch k first)."""
    whole = batches(tiny_shards, workers, 0, 7)
    for skip in (1, 2, 4):
        rest = batches(tiny_shards, workers, skip, 7 - skip)
        for (a, la, fa), (b, lb, fb) in zip(whole[skip:], rest):
            assert torch.equal(a, b) and torch.equal(la, lb) and torch.equal(fa, fb), (workers, skip)


def test_device_decode_skips_the_same_way(tiny_shards):
    whole, rest = batches(tiny_shards, 2, 0, 5, "device"), batches(tiny_shards, 2, 3, 2, "device")
    for (a, la, _), (b, lb, _) in zip(whole[3:], rest):
        assert torch.equal(a, b) and torch.equal(la, lb)


def test_a_record_from_another_epoch_order_resumes_with_a_note():
    """A mid-epoch checkpoint whose epoch was ordered by an earlier version (no epoch_order)
    resumes, saying that the rest of that epoch is drawn in this version's order."""
    from train.distributed import Dist
    from train.mid_epoch import check_resumable

    cfg = TrainConfig(shards=Path("s"))
    record = {"epoch": 3, "world": 1, "writer": {}}
    note = check_resumable(record, cfg, Dist(), "last.pt")
    assert note and "epoch 3 continues in this version's order" in note
    assert check_resumable({**record, "epoch_order": EPOCH_ORDER}, cfg, Dist(), "last.pt") is None


def alexnet_train(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "train.cli", *args], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finished(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    return out


def stop_at_mid_epoch_save(proc: subprocess.Popen, last: Path, epoch: int) -> dict:
    """Stops `proc` (SIGSTOP) at its first mid-epoch save of `epoch` and returns that save's
    record: each new last.pt is read with the run stopped, so the record read is still the
    newest save when the caller kills it (read while it ran, a step or the epoch's end could
    come between the read and the kill)."""
    deadline = time.monotonic() + 300
    seen = None
    while time.monotonic() < deadline and proc.poll() is None:
        if last.is_file() and last.stat().st_mtime_ns != seen:
            proc.send_signal(signal.SIGSTOP)
            seen = last.stat().st_mtime_ns  # written by rename: always a whole file
            record = torch.load(last, map_location="cpu", weights_only=True).get("in_epoch")
            if record is not None and record["epoch"] == epoch:
                return record
            proc.send_signal(signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError(f"no mid-epoch checkpoint of epoch {epoch} appeared; exit {proc.poll()}")


def two_epochs(tiny_shards: Path, logdir: Path, steps: int, workers: int) -> list[str]:
    """alexnet-train flags of the resume tests: 2 epochs of `steps` steps, batch 6, the CPU."""
    return ["--shards", str(tiny_shards), "--epochs", "2", "--steps-per-epoch", str(steps), "--batch-size", "6",
            "--workers", str(workers), "--eval-batch-size", "16", "--shuffle-buffer", "16", "--no-figures",
            "--device", "cpu", "--logdir", str(logdir)]


def assert_same_weights(a: dict, b: dict) -> None:
    """Two checkpoints hold the same model and momentum, bit for bit."""
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for s1, s2 in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(s1["velocity"], s2["velocity"])


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(tiny_shards, tmp_path):
    common = two_epochs(tiny_shards, tmp_path, steps=4, workers=2)
    straight = alexnet_train(*common, "--run-name", "straight", "--checkpoint-every", "0")
    finished(straight)
    # a save at every step (0.00001 min); killed once epoch 1 has one, then resumed from it
    killed = alexnet_train(*common, "--run-name", "killed", "--checkpoint-every", "0.00001")
    last = tmp_path / "killed" / "last.pt"
    record = stop_at_mid_epoch_save(killed, last, epoch=1)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    state = load_checkpoint(last)
    assert state["epoch"] == 0 and state["in_epoch"]["epoch"] == 1 and 1 <= state["in_epoch"]["step"] <= 3, record
    before_kill = state["in_epoch"]["seconds"]
    assert before_kill > 0
    # 1000 s more before the kill than the resumed process can take itself: a resume that drops the
    # killed process's seconds shows, however the two processes' step times compare
    state["in_epoch"]["seconds"] = before_kill + 1000.0
    state["digest"] = content_digest(state)
    torch.save(state, last)
    out = finished(alexnet_train(*common, "--run-name", "killed", "--checkpoint-every", "0.00001",
                                 "--resume", str(last)))
    assert f"epoch 1: continuing at step {state['in_epoch']['step']} of 4" in out
    a, b = load_checkpoint(tmp_path / "straight" / "last.pt"), load_checkpoint(last)
    assert a["epoch"] == b["epoch"] == 1 and "in_epoch" not in b
    assert_same_weights(a, b)
    rows = [[json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
            for name in ("straight", "killed")]
    assert [r["train"]["loss"] for r in rows[0]] == [r["train"]["loss"] for r in rows[1]]  # the same epoch losses
    assert [r["holdout"] for r in rows[0]] == [r["holdout"] for r in rows[1]]
    ends = [json.loads((tmp_path / name / "results.json").read_text()) for name in ("straight", "killed")]
    assert ends[0]["metrics"] == ends[1]["metrics"]
    # the time trained before the kill still counts: epoch 1's seconds include the killed process's
    # steps, the run's total adds epoch 0's, and results.json gives that total, not the last process's
    assert rows[1][1]["train"]["seconds"] >= before_kill + 1000.0
    assert rows[1][1]["wall_s"] >= rows[1][0]["wall_s"] + rows[1][1]["train"]["seconds"] - 0.1
    assert ends[1]["train_wall_s"] == rows[1][1]["wall_s"]


def test_a_signal_saves_the_step_before_the_run_stops(monkeypatch):
    """Single process: a pending Ctrl-C/SIGTERM makes the next step boundary a save, however
    long the interval, the epoch's last step included (its end's save comes after a holdout
    evaluation the signal stops); none with saves off."""
    import shared.exit_status as exit_status
    from train.distributed import Dist
    from train.mid_epoch import EpochProgress, MidEpochSaver

    saved = []
    saver = MidEpochSaver(60.0, 10, Dist(), torch.device("cpu"), lambda done, ranks: saved.append(done.step))
    off = MidEpochSaver(0.0, 10, Dist(), torch.device("cpu"), lambda done, ranks: saved.append(-1))
    lighting = torch.Generator()
    saver(1, lambda: EpochProgress(1), lighting)
    assert saved == []  # an hour has not passed
    monkeypatch.setattr(exit_status, "_PENDING", [signal.SIGTERM])
    saver(2, lambda: EpochProgress(2), lighting)
    saver(10, lambda: EpochProgress(10), lighting)
    off(3, lambda: EpochProgress(3), lighting)
    assert saved == [2, 10]


@pytest.mark.slow
@pytest.mark.parametrize("awaited", [2, 3, "holdout"])
def test_a_signal_while_a_batch_is_awaited_loses_no_step(tiny_shards, tmp_path, monkeypatch, awaited):
    """The signal comes while epoch 1's batch `awaited` is being fetched (where a loaded machine's
    main process waits most; batch 3 is the epoch's last), or as its holdout evaluation starts:
    the run stops with every step it trained saved, and the resumed run ends with the
    uninterrupted run's weights."""
    import shared.exit_status as exit_status
    import train.loop as loop
    from shared.exit_status import RunStopped
    from tests.small_run import SMALL

    def run(name: str, **more):
        cfg = TrainConfig(shards=tiny_shards, epochs=2, steps_per_epoch=3, checkpoint_every=60.0, logdir=tmp_path,
                          run_name=name, **{**SMALL, "workers": 0}, **more)
        return loop.train(cfg)

    run("straight")
    real = loop.iterate_train_batches

    def signalled_while_fetching(stream, *args, **kwargs):
        for i, batch in enumerate(real(stream, *args, **kwargs)):
            yield batch
            if stream.epoch == 1 and i + 2 == awaited:  # fetching batch `awaited` (1-based) now
                exit_status._PENDING.append(signal.SIGTERM)

    real_evaluate, holdouts = loop.evaluate, []

    def signalled_in_the_holdout(*args, desc, **kwargs):
        holdouts.append(desc)
        if holdouts.count("holdout") == 2:  # epoch 1's
            exit_status._PENDING.append(signal.SIGTERM)
        return real_evaluate(*args, desc=desc, **kwargs)

    if awaited == "holdout":
        monkeypatch.setattr(loop, "evaluate", signalled_in_the_holdout)
    else:
        monkeypatch.setattr(loop, "iterate_train_batches", signalled_while_fetching)
    with pytest.raises(RunStopped, match="interrupted"):
        run("stopped")
    exit_status._PENDING.clear()
    monkeypatch.setattr(loop, "iterate_train_batches", real)
    monkeypatch.setattr(loop, "evaluate", real_evaluate)
    last = tmp_path / "stopped" / "last.pt"
    assert load_checkpoint(last)["in_epoch"]["step"] == (3 if awaited == "holdout" else awaited)
    run("stopped", resume=last)
    a, b = load_checkpoint(tmp_path / "straight" / "last.pt"), load_checkpoint(last)
    assert a["epoch"] == b["epoch"] == 1
    assert_same_weights(a, b)


@pytest.mark.slow
def test_sigterm_mid_epoch_keeps_every_step_done(tiny_shards, tmp_path):
    """SIGTERM in epoch 1 with a save due only in an hour: last.pt holds the steps done, and
    the resumed run ends with the uninterrupted run's weights."""
    common = two_epochs(tiny_shards, tmp_path, steps=30, workers=1) + ["--checkpoint-every", "60"]
    finished(alexnet_train(*common, "--run-name", "straight"))
    run = alexnet_train(*common, "--run-name", "stopped")
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(lambda: run.stdout.read(1), "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + 300
    while not re.search(r"epoch 1: .*\| ([2-9]|1\d)/30", "".join(seen)):  # the progress bar: 2 steps done
        assert time.monotonic() < deadline and run.poll() is None, "".join(seen)[-2000:]
        time.sleep(0.02)
    run.send_signal(signal.SIGTERM)
    run.wait(timeout=300)
    reader.join(timeout=30)
    out = "".join(seen)
    assert run.returncode == 1 and "interrupted (SIGTERM)" in out, out[-2000:]
    last = tmp_path / "stopped" / "last.pt"
    state = load_checkpoint(last)
    assert state["epoch"] == 0 and 2 <= state["in_epoch"]["step"] < 30, state.get("in_epoch", {}).get("step")
    finished(alexnet_train(*common, "--run-name", "stopped", "--resume", str(last)))
    a, b = load_checkpoint(tmp_path / "straight" / "last.pt"), load_checkpoint(last)
    assert a["epoch"] == b["epoch"] == 1
    assert_same_weights(a, b)
