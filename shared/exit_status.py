"""The exit statuses both command-line tools promise (README, "Exit statuses"), and the
one error boundary every command runs in: an input or environment fault is one line on
stderr naming the file, never a Python traceback.

    0 done
    1 crashed, interrupted, or the environment failed (disk full, read-only or unwritable
      output, out of memory): fix it and run the same command again to resume
    2 refused: bad arguments or input (the message names the file); nothing was written
    3 done, but some inputs were skipped (each listed)

A bug (any other exception) is also one line, exit 1, saying how to see its traceback:
ALEXNET_DEBUG=1 re-raises it."""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import NoReturn

import typer

DONE, CRASHED, REFUSED, DONE_WITH_SKIPS = 0, 1, 2, 3
DEBUG_ENV = "ALEXNET_DEBUG"


RESUME = "run the same command again to resume"


class RunStopped(RuntimeError):
    """The run stopped before it finished (a dead worker, Ctrl-C, SIGTERM); its message says
    how to continue."""


# What stops a command politely, as Ctrl-C does: a scheduler's or `kill`'s SIGTERM, and SIGHUP --
# a closed terminal or SSH session, the commonest way a long run dies (left to the default, the
# process ends with 129: no word, no checkpoint).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main process as Ctrl-C is, so that the same clean-up
    runs and the same one line is printed (left to the default, the process ends in silence
    while a loader worker lives on)."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(signum)
        self.name = signal.Signals(signum).name


def interruption(exc: KeyboardInterrupt) -> str:
    return exc.name if isinstance(exc, Terminated) else "Ctrl-C"


def _interrupt_for(signum: int) -> KeyboardInterrupt:
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def _raise_now(signum, frame):
    raise _interrupt_for(signum)


def sigterm_as_interrupt() -> None:
    """For the main process of a command: SIGTERM and SIGHUP stop it as Ctrl-C does."""
    for signum in STOP_SIGNALS[1:]:
        signal.signal(signum, _raise_now)


_PENDING: list[int] = []  # a signal waiting for the next safe point


def _defer(signum, frame):
    if _PENDING:  # asked twice: at once
        raise _interrupt_for(signum)
    _PENDING.append(signum)


@contextmanager
def interrupts_handled_by(handler):
    """`handler` for STOP_SIGNALS while the block runs; the previous handlers after."""
    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


@contextmanager
def interrupts_at_safe_points():
    """While a training run goes: Ctrl-C and SIGTERM stop it at the next step or evaluation
    batch (`raise_if_interrupted`), never inside a checkpoint being written or a loader being
    torn down -- raised there, the exception was swallowed by a destructor and the run went on,
    or left torch's zip writer broken ("unexpected pos", an internal error); both seen in the
    SIGTERM test's timings. A second signal stops it at once."""
    try:
        with interrupts_handled_by(_defer):
            yield
    finally:
        _PENDING.clear()


def interrupt_pending() -> bool:
    """A signal is waiting for the next safe point (training saves its step there first)."""
    return bool(_PENDING)


def raise_if_interrupted() -> None:
    """A safe point: stop here if a signal came."""
    if _PENDING:
        raise _interrupt_for(_PENDING[0])


def worker_death(exc: BaseException) -> str | None:
    """What to say when torch reports a loader process that died without a Python error
    (torch's text: "DataLoader worker (pid N) is killed by signal: Killed." / "... exited
    unexpectedly"): the kernel's out-of-memory killer, a signal sent to the run's cgroup or to
    the worker, a crash in a decoder. None for any other error. A signal that reached the main
    process too wins: the worker only died first."""
    if not (isinstance(exc, RuntimeError) and str(exc).startswith("DataLoader worker (pid")):
        return None
    if _PENDING:
        return f"interrupted ({interruption(_interrupt_for(_PENDING[0]))})"
    told = str(exc).split(". ")[0].rstrip(". ")
    return (f"a loader process died: {told} (the out-of-memory killer, if 'Killed': fewer --workers or a "
            f"smaller --batch-size)")


def die_with_parent(parent: int) -> None:
    """In a worker process: be killed when the main process dies, however it dies (Linux's
    PR_SET_PDEATHSIG), so that a killed run leaves no worker behind."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def package_version() -> str:
    """Both tools' --version: the installed package's version."""
    from importlib import metadata

    try:
        return metadata.version("alexnet-repro")
    except metadata.PackageNotFoundError:
        return "unknown (not installed: run from a checkout)"


def _option_table(command) -> dict:
    """Each option name of a (typer) command -> its parameter."""
    return {o: p for p in command.params if getattr(p, "param_type_name", "") == "option"
            for o in (*p.opts, *p.secondary_opts)}


def repeated_option(command, args: list[str]) -> str | None:
    """"--lr 0.1 and --learn-rate 0.2" where `args` give one option two values, through two of its
    names or one name twice (the parser keeps the last without a word). Subcommands' options
    are read after their name; options that may repeat (`figure1 --seed`) are not counted."""
    seen: dict[str, tuple[str, str]] = {}  # option -> (value, as given)
    table, i = _option_table(command), 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return None
        subcommands = getattr(command, "commands", None) or {}
        if arg in subcommands:
            command, seen, table, i = subcommands[arg], {}, _option_table(subcommands[arg]), i + 1
            continue
        name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name not in table and not arg.startswith("--") and arg[:2] in table:  # -j2
            name, eq, inline = arg[:2], "=", arg[2:]
        param, i = table.get(name), i + 1
        if param is None or param.multiple or param.count:
            continue
        if param.is_flag:
            value, shown = name, name  # --figures and --no-figures: two values
        else:
            if not eq:
                inline, i = (args[i] if i < len(args) else ""), i + 1
            value, shown = inline, f"{name} {inline}"
        first = seen.setdefault(param.name, (value, shown))
        if first[0] != value:
            return f"{first[1]} and {shown}"
    return None


def one_value_per_option_group():
    """The command group class both tools use: an option given two values is refused (exit 2)
    before anything runs, as any other bad flag is."""
    from typer.core import TyperGroup

    class OneValuePerOption(TyperGroup):
        def parse_args(self, ctx, args):
            clash = repeated_option(self, list(args))
            if clash is not None:
                raise typer.BadParameter(f"{clash}: one option, two values; give it once", ctx=ctx)
            return super().parse_args(ctx, args)

    return OneValuePerOption


def fail(message: str, code: int = REFUSED) -> NoReturn:
    """One red line on stderr, then exit with `code` (2: refused, nothing written)."""
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


def worker_cause(exc: BaseException) -> str:
    """The message of `exc` without a worker's traceback: torch's DataLoader re-raises a
    worker's exception with that traceback inside the message ("Caught ValueError in DataLoader
    worker process 0. Original Traceback ..."); the cause is its last `ValueError: ...` line."""
    text = str(exc)
    if "Traceback (most recent call last)" not in text:
        return text
    lines = text.splitlines()
    prefix = f"{type(exc).__name__}: "
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith(prefix):
            return "\n".join([lines[i][len(prefix):]] + lines[i + 1:])
    return lines[-1]


def describe_os_error(exc: OSError) -> str:
    """"<file>: <what the system said>" -- the file first, as every other message here."""
    where = exc.filename if exc.filename is not None else "?"
    if getattr(exc, "filename2", None):
        where = f"{where} -> {exc.filename2}"
    return f"{where}: {exc.strerror or exc}"


_BODY_SIGCHLD: list = []  # the SIGCHLD handler a command's body installed (torch's DataLoader: once a process)


@contextmanager
def child_signals_inside_the_body():
    """SIGCHLD handlers installed by the body (torch's raises its worker-death error wherever
    the main process is) stop with it: a worker's death that arrived after the body had ended on
    another error was a traceback from typer's own exit code (the out-of-memory test, once). The
    next body gets the handler back, since torch installs it only once a process."""
    if not hasattr(signal, "SIGCHLD") or threading.current_thread() is not threading.main_thread():
        yield
        return
    outside = signal.getsignal(signal.SIGCHLD)
    if _BODY_SIGCHLD and outside is not None:
        signal.signal(signal.SIGCHLD, _BODY_SIGCHLD[0])
    try:
        yield
    finally:
        inside = signal.getsignal(signal.SIGCHLD)
        if outside is not None and inside is not outside:
            _BODY_SIGCHLD[:] = [inside]
            signal.signal(signal.SIGCHLD, outside)


@contextmanager
def error_boundary(resume: str = RESUME):
    """Wrap a command's body: every failure becomes one line and a documented exit status.
    `resume` says how to continue after an interruption or an environment fault, where the
    same command would not (a training run continues with --resume)."""
    try:
        with child_signals_inside_the_body():
            yield
    except (typer.Exit, typer.Abort, SystemExit):
        raise
    except (FileNotFoundError, FileExistsError, ValueError) as exc:  # bad arguments or input: refused
        if os.environ.get(DEBUG_ENV):
            raise
        fail(worker_cause(exc), REFUSED)
    except RunStopped as exc:
        fail(str(exc), CRASHED)
    except KeyboardInterrupt as exc:
        fail(f"interrupted ({interruption(exc)}); {resume}", CRASHED)
    except MemoryError:
        fail("out of memory; free memory (fewer --workers, a smaller --batch-size) and run the command again",
             CRASHED)
    except OSError as exc:  # the environment: disk full, read-only, permission, a file where a folder goes
        if os.environ.get(DEBUG_ENV):
            raise
        fail(f"{describe_os_error(exc)}; fix that, then {resume} (completed work is kept)", CRASHED)
    except Exception as exc:  # a bug: still one line, and the way to see more
        if os.environ.get(DEBUG_ENV):
            raise
        if (died := worker_death(exc)) is not None:  # not a bug: a loader process was killed
            fail(f"{died}; {resume}", CRASHED)
        typer.secho(f"error: internal error {type(exc).__name__}: {worker_cause(exc)}"[:2000], fg="red", err=True)
        typer.secho(f"(set {DEBUG_ENV}=1 to see the traceback)", err=True)
        sys.stderr.flush()
        raise typer.Exit(CRASHED)
