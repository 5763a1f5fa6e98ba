"""A test session ends when its tests have ended.

CI once printed `408 passed` after 13 min and then ran out its 90 min: the pytest process did
not exit (make reported its recipe `Terminated`), while the same checkout exited at once on this
machine. What a session leaves behind at its end (threads that interpreter exit joins, processes
that multiprocessing's exit handler joins) is printed when the tests are done; if the process is
still alive GRACE_S later, the stacks of every thread are printed, the processes it started are
killed (one would hold CI's output pipe open) and it exits with the tests' own status: a hang in
teardown becomes a diagnosis in the log, never a lost CI run."""
import faulthandler
import os
import signal
import sys
import threading
import time
from pathlib import Path

GRACE_S = 60


def descendants() -> dict[int, str]:
    """pid -> cmdline of this process's live descendants (from /proc: no psutil dependency)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):  # the process ended while we looked
            continue
    found, frontier = {}, {os.getpid()}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier and pid not in found}
        for pid in frontier:
            try:
                found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                found[pid] = "?"
    return found


def leftovers() -> list[str]:
    threads = [f"thread {t.name}" for t in threading.enumerate()
               if t is not threading.main_thread() and t.is_alive() and not t.daemon]
    return threads + [f"process {pid} {cmd.strip()[:200]}" for pid, cmd in descendants().items()]


def arm(exit_status: int) -> None:
    left = leftovers()
    if left:
        print("\nexit watchdog: left at the end of the session (joined at exit):\n  " + "\n  ".join(left),
              file=sys.__stderr__, flush=True)

    def fire() -> None:
        time.sleep(GRACE_S)
        print(f"\nexit watchdog: pytest still alive {GRACE_S} s after its last test; stacks, then exit "
              f"{exit_status}:", file=sys.__stderr__, flush=True)
        faulthandler.dump_traceback(file=sys.__stderr__, all_threads=True)
        print("  " + "\n  ".join(leftovers() or ["(no threads or children left)"]), file=sys.__stderr__, flush=True)
        for pid in descendants():  # a leftover process would hold CI's output pipe open
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        os._exit(exit_status)

    threading.Thread(target=fire, name="exit-watchdog", daemon=True).start()
    # a hang below Python (a library's destructor after daemon threads stop): stacks, exit 1
    faulthandler.dump_traceback_later(3 * GRACE_S, exit=True, file=sys.__stderr__)
