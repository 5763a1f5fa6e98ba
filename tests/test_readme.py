"""The README's commands work: the blocks marked to run (generated data) are run as they are,
and every flag of every alexnet-prep / alexnet-train line in it exists on that command (the
blocks that need ImageNet cannot run here, but a stale flag in them is caught)."""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from prep.cli import app as prep_app
from train.cli import app as train_app

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARK = "<!-- runs in tests/test_readme.py -->"
FENCE = re.compile(r"```bash\n(.*?)```", re.S)


def marked_blocks() -> list[str]:
    text = README.read_text()
    return [FENCE.match(text, i + len(MARK) + 1).group(1) for i in [m.start() for m in re.finditer(re.escape(MARK),
                                                                                                     text)]]


def command_lines() -> list[list[str]]:
    """Every alexnet-* command in the README's shell blocks, continuation lines joined."""
    lines = []
    for block in FENCE.findall(README.read_text()):
        for line in re.split(r"\n|&&", block.replace("\\\n", " ")):
            line = line.split("  #")[0].strip()
            words = shlex.split(line.replace("$", ""))
            if words and words[0] in ("alexnet-prep", "alexnet-train"):
                lines.append(words)
            elif "train.cli" in words:  # torchrun ... -m train.cli ARGS: the ARGS are alexnet-train's
                lines.append(["alexnet-train", *words[words.index("train.cli") + 1:]])
    return lines


def options_of(words: list[str]) -> tuple[set[str], str]:
    """The options the command named by `words` accepts, and its name."""
    group = typer.main.get_command(prep_app if words[0] == "alexnet-prep" else train_app)
    rest = words[1:]
    command = group.commands.get(rest[0]) if rest and rest[0] in group.commands else None
    target = command or group
    return {opt for p in target.params for opt in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])}, \
        f"{words[0]} {command.name if command else ''}"


def test_every_flag_in_the_readme_exists():
    lines = command_lines()
    assert len(lines) >= 15
    unknown = []
    for words in lines:
        accepted, name = options_of(words)
        unknown += [f"{name}: {w}" for w in words if w.startswith("-") and w.split("=")[0] not in accepted]
    assert not unknown, unknown


def test_the_readme_is_short():
    assert len(README.read_text().splitlines()) <= 220


@pytest.mark.slow
def test_the_marked_blocks_run_as_written(tmp_path):
    blocks = marked_blocks()
    assert blocks, f"no block marked {MARK!r}"
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", "PYTHONPATH": str(ROOT)}
    for block in blocks:
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "Traceback" not in result.stderr


def test_the_forms_table_is_the_registrys():
    from prep.forms import FORMS, markdown_table

    text = README.read_text()
    marker = text.index("<!-- forms table: python -m prep.forms")
    shown = text[text.index("\n", marker) + 1:].split("\n\n")[0]
    assert shown == markdown_table()
    assert len(shown.splitlines()) == 2 + len(FORMS)
