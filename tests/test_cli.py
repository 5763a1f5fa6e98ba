"""Both CLIs expose every config field as a flag with help, and prep never imports torch."""
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import typer

from make_fixtures import write_class_folders
from prep.cli import app as prep_app
from prep.config import PrepConfig
from train.cli import app as train_app
from train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def options(command) -> dict[str, str]:
    return {opt: (param.help or "") for param in command.params for opt in getattr(param, "opts", [])}


def test_every_train_config_field_is_a_flag_with_help():
    flags = options(typer.main.get_command(train_app))
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        assert flag in flags, flag
        assert len(flags[flag]) > 10, flag


def test_every_prep_config_field_is_a_flag_with_help():
    flags = options(typer.main.get_command(prep_app).commands["shard"])
    for f in fields(PrepConfig):
        flag = "--" + f.name.replace("_", "-")
        assert flag in flags, flag
        assert len(flags[flag]) > 10, flag


def modules_after(code: str) -> set[str]:
    probe = code + "\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}).stdout
    return set(out.split())


def test_prep_runs_without_torch(tmp_path):
    write_class_folders(tmp_path / "src")
    run = (f"from prep.cli import app\ntry:\n    app(['shard', '--src', '{tmp_path / 'src'}', '--out', "
           f"'{tmp_path / 'o'}', '--workers', '1'])\nexcept SystemExit:\n    pass")
    loaded = modules_after(run)
    assert "prep.write_shards" in loaded and (tmp_path / "o" / "manifest.json").is_file()
    assert "torch" not in loaded and "webdataset" not in loaded


def test_help_imports_no_torch():
    for module in ("prep.cli", "train.cli"):
        loaded = modules_after(f"from {module} import app\ntry:\n    app(['--help'])\nexcept SystemExit:\n    pass")
        assert "torch" not in loaded, module
