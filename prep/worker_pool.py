"""Worker processes for `shard` and `stats`, where a dead worker or Ctrl-C stops the run.

- A worker killed mid-job (OOM, kill -9) breaks a ProcessPoolExecutor, and the run fails at
  once with a message: multiprocessing.Pool waits forever for the result that never comes
  (prep hung at 70%; `stats` made no progress for 89 s). Killed while sending its result, it
  hangs the executor too: the main process also looks for dead workers itself.
- On Linux each worker dies with the main process (PR_SET_PDEATHSIG), so a killed run leaves
  no orphans writing into the folder.
- Ctrl-C or SIGTERM: workers ignore SIGINT (a terminal sends it to the whole group); the main
  process kills them and stops at once, saying so, with exit status 1 (resumable). Before,
  the pool's shutdown waited for every queued shard: Ctrl-C wrote almost all of them.
"""
from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterable

from shared.exit_status import RunStopped, die_with_parent, interrupts_handled_by


POLL_S = 1.0  # how often the main process looks for a dead worker the pool has not noticed


class PrepInterrupted(RunStopped):
    """The run stopped before it finished; running the same command again resumes it."""


class _Stop(BaseException):
    """Raised in the main process by SIGINT, SIGTERM or SIGHUP (BaseException: nothing swallows it)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.name = signal.Signals(signum).name


def _raise_stop(signum, frame):
    raise _Stop(signum)


def stop_on_signals():
    """SIGINT, SIGTERM and SIGHUP become `_Stop` in the main process while the block runs."""
    return interrupts_handled_by(_raise_stop)


def worker_init(parent: int) -> None:
    """Pool initializer: ignore SIGINT and SIGHUP, which a terminal sends to the whole group (the
    main process decides), die with the main process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent(parent)


def run_jobs(fn: Callable, jobs: Iterable, workers: int, on_result: Callable, what: str, resume: str) -> None:
    """`on_result(fn(job))` for every job (in completion order), in `workers` processes
    (forked: they inherit the imported modules; nothing here holds threads or CUDA) or in
    this one. `jobs` may be a lazy iterable: at most 2 x workers are taken ahead of the
    results (a streamed archive's runs of images stay bounded in memory). `what` names the
    work in messages, `resume` says how to continue."""
    with stop_on_signals():
        try:
            if workers <= 1:
                for job in jobs:
                    on_result(fn(job))
                return
            _run_in_pool(fn, jobs, workers, on_result, what, resume)
        except _Stop as stop:  # the pool's workers are gone already (_abandon)
            raise PrepInterrupted(f"interrupted ({stop.name}) while {what}; {resume}") from None


def _run_in_pool(fn, jobs, workers, on_result, what, resume) -> None:
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                               initializer=worker_init, initargs=(os.getpid(),))
    try:
        jobs = iter(jobs)
        pending = {pool.submit(fn, job) for job in itertools.islice(jobs, 2 * workers)}
        while pending:
            done, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
            if not done and _a_worker_died(pool):
                raise BrokenProcessPool("a worker died while sending its result")
            pending |= {pool.submit(fn, job) for job in itertools.islice(jobs, len(done))}
            for future in done:
                on_result(future.result())
    except BrokenProcessPool:
        _abandon(pool)
        raise PrepInterrupted(f"a worker process died (killed, or out of memory?) while {what}; {resume}") from None
    except BaseException:  # an error from a job, or _Stop: the other jobs are not waited for
        _abandon(pool)
        raise
    pool.shutdown(wait=True)


def _a_worker_died(pool: ProcessPoolExecutor) -> bool:
    """A worker killed while writing its result leaves half a message in the result pipe: the
    pool's manager thread then waits in recv() for the rest, never sees the death, and no future
    ever completes (reproduced with 200 MB results and kill -9; `stats` hung so in a fresh clone's
    test run). Workers live as long as the pool here, so any exit is a death."""
    return any(process.exitcode is not None for process in (pool._processes or {}).values())  # noqa: SLF001


def _abandon(pool: ProcessPoolExecutor) -> None:
    """Stop at once: no queued job is started, the pool's own workers are killed (never other
    children of this process, a library's or a test's)."""
    workers = list((pool._processes or {}).values())  # noqa: SLF001 (no public way to reach them)
    results = pool._result_queue  # noqa: SLF001 (shutdown() drops it; needed below)
    pool.shutdown(wait=False, cancel_futures=True)
    for process in workers:
        process.kill()
    for process in workers:
        process.join(timeout=5)
    # A worker killed while writing its result leaves half a message in the result pipe, and the
    # pool's manager thread waits in recv() for the rest for ever; interpreter exit joins that
    # thread, so the command never ended (reproduced with 200 MB results: every exit hung; the
    # test suite's exit watchdog caught the same wait after the tests). With the workers
    # dead, this process holds the pipe's last write end (multiprocessing's pipes are not
    # inherited across exec): closing it turns the wait into EOF, and the thread ends.
    if results is not None:
        results._writer.close()  # noqa: SLF001
