"""A loader worker's death is reported as one, whichever error the main process met first, and
torch's SIGCHLD handler never raises once a command's body has ended (a clean clone's suite:
the out-of-memory test's run ended on a cut-off read, then a traceback from typer's exit)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset

import train.loader as loader


class Endless(IterableDataset):
    def __iter__(self):
        while True:
            yield torch.zeros(2)


@pytest.fixture
def a_worker_killed_just_after():
    """What the main process meets when a SIGKILLed worker's pipe closes before the worker can
    be waited for: `error` from the loader while the worker still counts as alive, its death
    `delay_s` later."""
    started = []

    def start(error: Exception, delay_s: float):
        real = iter(DataLoader(Endless(), batch_size=None, num_workers=1))
        next(real)  # the worker is up and registered with torch's death check
        timer = threading.Timer(delay_s, os.kill, (real._workers[0].pid, signal.SIGKILL))
        started.append((real, timer))
        timer.start()

        def batches():
            raise error
            yield  # a generator, as a loader's iterator is
        return batches()
    yield start
    for real, timer in started:
        timer.cancel()
        real._shutdown_workers()


def test_an_error_a_dying_worker_caused_names_the_death(a_worker_killed_just_after, monkeypatch):
    monkeypatch.setattr(loader, "DEATH_SETTLE_S", 5.0)
    batches = loader.batches_naming_worker_deaths(a_worker_killed_just_after(EOFError(), 0.3), workers=1)
    with pytest.raises(RuntimeError, match=r"DataLoader worker \(pid \d+\) is killed by signal: Killed") as caught:
        next(batches)
    assert isinstance(caught.value.__cause__, EOFError)


def test_an_error_without_a_death_is_raised_as_it_was(a_worker_killed_just_after, monkeypatch):
    monkeypatch.setattr(loader, "DEATH_SETTLE_S", 0.3)
    batches = loader.batches_naming_worker_deaths(a_worker_killed_just_after(ConnectionResetError(), 60), workers=1)
    with pytest.raises(ConnectionResetError):
        next(batches)


def test_torchs_worker_death_handler_ends_with_the_command_body_and_returns_with_the_next():
    program = """
import signal, subprocess, time, typer
from shared.exit_status import error_boundary

def torchs_handler(signum, frame):  # as torch's: raises wherever the main process is
    raise RuntimeError("DataLoader worker (pid 1) is killed by signal: Killed.")

try:
    with error_boundary():
        signal.signal(signal.SIGCHLD, torchs_handler)  # a DataLoader's first iterator does this
        raise EOFError("a batch cut off")
except typer.Exit as exc:
    code = exc.exit_code
subprocess.run(["true"])  # a child's exit after the body: SIGCHLD
time.sleep(0.2)
try:
    with error_boundary():
        assert signal.getsignal(signal.SIGCHLD) is torchs_handler
except typer.Exit:
    print("the next body lacked the handler")
print("exit", code)
"""
    done = subprocess.run([sys.executable, "-c", program], cwd=Path(__file__).parents[1], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "exit 1", done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "internal error EOFError" in done.stderr, done.stderr
