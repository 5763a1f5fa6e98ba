"""The wheel holds the whole tree: every module and data file of prep/, train/ and shared/, and
both commands (a wheel built from a hand-kept package list lacked prep/forms/)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("prep", "train", "shared")
DATA_SUFFIXES = (".txt", ".json")


def tree_files() -> set[str]:
    tracked = subprocess.run(["git", "ls-files", *PACKAGES], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    return {name for name in tracked if name.endswith((".py", *DATA_SUFFIXES))}


@pytest.mark.slow
def test_the_wheel_holds_every_module_and_data_file_and_both_commands(tmp_path):
    src = tmp_path / "src"
    for name in ["pyproject.toml", "README.md", *tree_files()]:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                          str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    wheel, = (tmp_path / "dist").glob("alexnet_repro-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry_points = next(z.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    shipped = {n for n in names if n.split("/")[0] in PACKAGES}
    assert shipped == tree_files(), (sorted(tree_files() - shipped), sorted(shipped - tree_files()))
    assert "alexnet-prep = prep.cli:app" in entry_points and "alexnet-train = train.cli:main" in entry_points
