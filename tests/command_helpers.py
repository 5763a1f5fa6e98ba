"""How the tests run a command and read what it left: alexnet-prep and alexnet-train in
process (typer's runner), the one-line error every input or environment fault must be, and a
running command's child processes."""
from pathlib import Path

from typer.testing import CliRunner, Result

from prep.cli import app as prep_app
from train.cli import app as train_app


def prep(*args) -> Result:
    return CliRunner().invoke(prep_app, [str(a) for a in args])


def train_cli(*args) -> Result:
    return CliRunner().invoke(train_app, [str(a) for a in args])


def one_line_error(result, status: int, *words: str) -> str:
    """The command failed with `status`, said why in words that include `words`, no traceback."""
    text = result.output
    assert result.exit_code == status, text[-2000:]
    assert "Traceback" not in text and not isinstance(result.exception, (AssertionError, TypeError)), text[-2000:]
    for word in words:
        assert word in text, (word, text[-2000:])
    return text


def children(pid: int) -> list[int]:
    """`pid`'s child processes, as listed by each of its threads; a thread that ended between
    the listing and the read is passed over (its children pass to a thread still listed: a
    suite run once failed on a loader's thread that had just ended)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found
