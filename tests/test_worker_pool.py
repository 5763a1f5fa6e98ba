"""prep's worker pool stops at once and the command then ends (prep/worker_pool.py)."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_a_pool_stopped_while_results_are_in_flight_lets_the_process_exit():
    """A job's error stops the pool while the other workers write large results (as shards'
    record lists are): the worker killed mid-write left half a message in the result pipe, the
    pool's manager thread waited for the rest, and interpreter exit joined it for ever."""
    script = textwrap.dedent("""
        import sys
        sys.path.insert(0, sys.argv[1])
        from prep.worker_pool import run_jobs

        def big(i):
            return bytes(100_000_000)

        def first_fails(result):
            raise ValueError("a job's result is refused")

        try:
            run_jobs(big, range(6), 2, first_fails, "testing", "again")
        except ValueError:
            print("stopped", flush=True)
    """)
    done = subprocess.run([sys.executable, "-c", script, str(ROOT)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "stopped" in done.stdout, done.stderr[-2000:]


def test_the_process_exits_within_seconds_after_a_stopped_pool():
    script = textwrap.dedent("""
        import multiprocessing, sys, time
        from concurrent.futures import ProcessPoolExecutor
        sys.path.insert(0, sys.argv[1])
        from prep.worker_pool import _abandon

        def big(i):
            return bytes(100_000_000)

        pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork"))
        futures = [pool.submit(big, i) for i in range(4)]
        time.sleep(0.3)  # both workers are writing their results
        _abandon(pool)
    """)
    try:
        subprocess.run([sys.executable, "-c", script, str(ROOT)], timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("the process did not exit after _abandon: the pool's manager thread still waits")


def test_a_worker_killed_while_sending_its_result_stops_the_run():
    """kill -9 (or the OOM killer) while a worker writes its result: the pool's manager thread
    waited in recv() for the rest of the message and never marked the pool broken; no future
    completed and `stats` hung (seen in a fresh clone's test run)."""
    script = textwrap.dedent("""
        import os, signal, sys, threading, time
        sys.path.insert(0, sys.argv[1])
        from prep.worker_pool import run_jobs

        def big(i):
            return bytes(100_000_000)

        def kill_a_worker():
            time.sleep(0.3)  # both workers are writing their results
            me = os.getpid()
            os.kill(int(open(f"/proc/{me}/task/{me}/children").read().split()[0]), signal.SIGKILL)

        threading.Thread(target=kill_a_worker, daemon=True).start()
        try:
            run_jobs(big, range(8), 2, lambda result: None, "testing", "again")
        except Exception as exc:
            print(exc, flush=True)
    """)
    try:
        done = subprocess.run([sys.executable, "-c", script, str(ROOT)], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("run_jobs never noticed the dead worker")
    assert "a worker process died" in done.stdout, done.stdout + done.stderr[-2000:]
