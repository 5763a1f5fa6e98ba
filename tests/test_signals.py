"""Stopping a training run: Ctrl-C, SIGTERM (to the process or its group, as terminals,
`timeout` and schedulers send them) and a loader worker killed by the kernel each end the run
with one line, exit 1, a last.pt that `--resume` continues, and no process left behind; a
signal waits for a safe point (never inside a checkpoint being written)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import train.loop as loop
from command_helpers import children, one_line_error, train_cli
from shared.exit_status import Terminated, interrupts_at_safe_points, raise_if_interrupted
from small_run import SMALL_FLAGS


def test_ctrl_c_in_training_advises_a_command_that_works(tiny_shards, tmp_path, monkeypatch):
    real = loop.run_epoch

    def then_interrupt(run, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        real(run, epoch)
    monkeypatch.setattr(loop, "run_epoch", then_interrupt)
    args = ["--shards", tiny_shards, "--epochs", "2", "--steps-per-epoch", "1", "--logdir", tmp_path,
            "--run-name", "r", *SMALL_FLAGS]
    text = one_line_error(train_cli(*args), 1, "interrupted (Ctrl-C)", "--resume")
    assert str(tmp_path / "r" / "last.pt") in text
    monkeypatch.setattr(loop, "run_epoch", real)
    result = train_cli(*args, "--resume", tmp_path / "r" / "last.pt")
    assert result.exit_code == 0, result.output


@pytest.fixture
def start_training(tiny_shards: Path, tmp_path: Path):
    """Starts alexnet-train in its own process group, as a shell runs a command; whatever the
    test's outcome, the group is gone after it (a failed assertion had left a run training on
    through the rest of CI's suite)."""
    started = []

    def start(*extra: str, worker_init_delay_s: float = 0.0) -> subprocess.Popen:
        args = ["--shards", str(tiny_shards), "--logdir", str(tmp_path), "--run-name", "r", *map(str, SMALL_FLAGS),
                *extra]
        # the delay widens the moment between a loader worker's fork and its init function
        program = (f"import sys, time, runpy, train.loader as loader; init = loader._loader_worker_init; "
                   f"loader._loader_worker_init = lambda *a: (time.sleep({worker_init_delay_s}), init(*a)); "
                   f"sys.argv = ['alexnet-train', *{args!r}]; runpy.run_module('train.cli', run_name='__main__')")
        proc = subprocess.Popen([sys.executable, "-c", program],
                                cwd=Path(__file__).parents[1], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        started.append(proc)
        return proc
    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def process_groups(pids: list[int]) -> set[str]:
    groups = set()
    for pid in pids:
        try:
            groups.add(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2])
        except FileNotFoundError:  # ended meanwhile
            continue
    return groups


def workers_in_their_own_group(run: int, deadline: float) -> list[int]:
    """The run's loader workers once each has left the run's process group, so that a signal to
    the group misses them. A worker joins its own group in its init function, a moment after the
    fork: sampled in that moment (a new epoch's loader starting), it is still in the run's group
    (seen in CI; the next test covers a signal sent then)."""
    while True:
        workers = children(run)
        if workers and str(run) not in process_groups(workers):
            return workers
        assert time.time() < deadline, f"workers {workers} still in the run's group {process_groups(workers)}"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("signum,to", [("SIGTERM", "process"), ("SIGTERM", "group"), ("SIGINT", "group"),
                                       ("SIGHUP", "group")])
def test_a_signal_stops_training_with_one_line_and_no_worker_left(start_training, tmp_path, signum, to):
    """'group': what Ctrl-C in a terminal, a closed terminal or SSH session (SIGHUP), `timeout` and
    `kill -- -PGID` do. SIGHUP used to end the run with 129, no word and no checkpoint. The loader workers
    were in the group and died first: the run ended as an internal error (seen under `timeout`
    in bench/gpu_session.sh)."""
    proc = start_training("--epochs", "50")
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp_path / "r" / "last.pt").exists():
        time.sleep(0.5)
    workers = workers_in_their_own_group(proc.pid, deadline=time.time() + 30)
    sig = getattr(signal, signum)
    os.killpg(proc.pid, sig) if to == "group" else proc.send_signal(sig)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 1, output[-2000:]
    said = "Ctrl-C" if signum == "SIGINT" else signum
    assert f"interrupted ({said})" in output and "--resume" in output, output[-2000:]
    assert "Traceback" not in output and "internal error" not in output, output[-2000:]
    time.sleep(1)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]


@pytest.mark.slow
def test_a_signal_to_the_group_before_a_worker_has_left_it_stops_the_run_the_same_way(start_training, tmp_path):
    """The moment between a worker's fork and its init function, widened to seconds: the worker
    is still in the run's group, and torch's worker handler dies of a SIGTERM its parent did not
    send. The main process got the signal too: the worker-death rule reports the interruption."""
    proc = start_training("--epochs", "50", worker_init_delay_s=5)
    deadline = time.time() + 180
    while not ((tmp_path / "r" / "last.pt").exists()  # epoch 1's loader: a run with a checkpoint to resume
               and children(proc.pid) and process_groups(children(proc.pid)) == {str(proc.pid)}):
        assert time.time() < deadline and proc.poll() is None, "no worker appeared"
        time.sleep(0.05)
    workers = children(proc.pid)
    os.killpg(proc.pid, signal.SIGTERM)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 1, output[-2000:]
    assert "interrupted (SIGTERM)" in output and "--resume" in output, output[-2000:]
    assert "Traceback" not in output and "internal error" not in output, output[-2000:]
    assert (tmp_path / "r" / "last.pt").is_file()
    time.sleep(1)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]


@pytest.mark.slow
def test_a_killed_loader_worker_is_one_line_not_an_internal_error(start_training):
    """The kernel's out-of-memory killer picks the largest process: often a loader worker."""
    proc = start_training("--epochs", "1", "--steps-per-epoch", "1000")
    deadline = time.time() + 120
    while time.time() < deadline and not children(proc.pid):
        time.sleep(0.2)
    time.sleep(3)  # the worker is serving batches
    os.kill(children(proc.pid)[0], signal.SIGKILL)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 1, output[-2000:]
    assert "a loader process died" in output and "Killed" in output and "out-of-memory" in output, output[-2000:]
    assert "Traceback" not in output and "internal error" not in output, output[-2000:]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_signals_during_training_wait_for_a_safe_point_and_a_second_one_does_not(signum):
    """Raised anywhere, the interrupt landed in a destructor (swallowed: the run went on) or in
    torch.save (a broken zip writer, an internal error); deferred, it stops the next step."""
    with interrupts_at_safe_points():
        os.kill(os.getpid(), signum)  # lands here, during "a checkpoint save": nothing raised
        with pytest.raises(Terminated) as caught:
            raise_if_interrupted()
        assert caught.value.name == signal.Signals(signum).name
        with pytest.raises(Terminated):
            os.kill(os.getpid(), signum)  # asked twice: at once
    raise_if_interrupted()  # outside a run nothing is pending
    with interrupts_at_safe_points():
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(KeyboardInterrupt) as caught:
            raise_if_interrupted()
        assert not isinstance(caught.value, Terminated)
