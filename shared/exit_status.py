"""The exit statuses both command-line tools promise (README, "Trust and failure"), and the
one way they report a refusal."""
from __future__ import annotations

from typing import NoReturn

import typer

DONE, CRASHED, REFUSED, DONE_WITH_SKIPS = 0, 1, 2, 3


def fail(message: str, code: int = REFUSED) -> NoReturn:
    """One red line on stderr, then exit with `code` (2: refused, nothing written)."""
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)
