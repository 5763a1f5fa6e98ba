"""Both CLIs expose every config field as a flag with help, and prep never imports torch."""
import re
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


# ---- issue 29: the command line a practitioner expects -------------------------------------------
def run_cli(tool: str, *args: str) -> subprocess.CompletedProcess:
    code = (f"import sys\nfrom {tool}.cli import {'main' if tool == 'train' else 'app'} as entry\nsys.argv = "
            f"['alexnet-{tool}', *{list(map(str, args))!r}]\ntry:\n    entry()\nexcept SystemExit as e:\n"
            f"    print('exit', e.code, 'torch' in sys.modules)\n    raise")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "COLUMNS": "160"})


def test_help_is_grouped_in_panels_with_ranges_and_every_field_in_one_panel():
    from prep.cli import PANELS as PREP_PANELS
    from train.config import PANELS

    for panels, cls in ((PANELS, TrainConfig), (PREP_PANELS, PrepConfig)):
        placed = [name for names in panels.values() for name in names]
        assert sorted(placed) == sorted(f.name for f in fields(cls))  # each field once
    train_help = run_cli("train", "--help").stdout
    for title in list(PANELS) + ["Commands"]:
        assert title in train_help, title
    assert train_help.index("evaluate") < train_help.index("Data")  # the subcommands come first
    assert "Range: 1..100,000" in train_help and "[default: 90]" in train_help
    shard_help = run_cli("prep", "shard", "--help").stdout
    for title in PREP_PANELS:
        assert title in shard_help, title
    assert "Range: 1..100" in shard_help


def test_version_on_both_tools():
    for tool in ("train", "prep"):
        result = run_cli(tool, "--version")
        assert result.returncode == 0 and result.stdout.startswith(f"alexnet-{tool} "), result.stdout + result.stderr


def test_the_names_torchvision_and_timm_use_are_aliases():
    train = options(typer.main.get_command(train_app))
    for alias, field in (("--lr", "--learn-rate"), ("-b", "--batch-size"), ("-j", "--workers"),
                         ("--wd", "--weight-decay"), ("--output-dir", "--logdir")):
        assert alias in train and train[alias] == train[field], alias
    commands = typer.main.get_command(train_app).commands
    for command in ("evaluate", "figure1"):
        flags = options(commands[command])
        assert "--output-dir" in flags and "--out" in flags, command
    assert "--batch-size" in options(commands["evaluate"])
    shard = options(typer.main.get_command(prep_app).commands["shard"])
    assert {"--output-dir", "--out", "-j", "--form", "--task"} <= set(shard)


def test_predict_views_is_a_choice_of_one_or_ten(tmp_path):
    from typer.testing import CliRunner

    result = CliRunner().invoke(train_app, ["predict", "--checkpoint", str(tmp_path / "x.pt"), "--views", "5",
                                            str(tmp_path)])
    assert result.exit_code == 2 and "'1', '10'" in result.output


def test_training_options_given_to_a_subcommand_are_refused(tmp_path):
    from typer.testing import CliRunner

    result = CliRunner().invoke(train_app, ["--epochs", "3", "table", str(tmp_path)])
    assert result.exit_code == 2 and "--epochs" in result.output and "table" in result.output


def test_a_raw_dataset_given_as_shards_is_named_before_torch_loads(tmp_path):
    write_class_folders(tmp_path / "raw")
    result = run_cli("train", "--shards", str(tmp_path / "raw"))
    assert "exit 2 False" in result.stdout, result.stdout + result.stderr  # refused, torch never imported
    assert f"alexnet-prep shard --src {tmp_path / 'raw'}" in result.stderr
    result = run_cli("train", "--shards", str(tmp_path / "nothing"))
    assert "exit 2 False" in result.stdout and "no such dataset folder" in result.stderr


def test_stats_and_verify_without_a_dataset_refuse(tmp_path):
    for command in ("stats", "verify"):
        result = subprocess.run([sys.executable, "-m", "prep", command], cwd=tmp_path, capture_output=True,
                                text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
        assert result.returncode == 2 and "pass --shards DIR" in result.stderr, (command, result.stderr)


def test_one_option_given_two_values_is_refused_whatever_its_names():
    """click keeps the last value without a word: `--lr 0.1 --learn-rate 0.2` trained at 0.2."""
    from typer.testing import CliRunner

    cases = [(train_app, ["--shards", "s", "--lr", "0.1", "--learn-rate", "0.2"], "--lr 0.1 and --learn-rate 0.2"),
             (train_app, ["--shards", "s", "--epochs=3", "--epochs", "4"], "--epochs=3"),
             (train_app, ["--shards", "s", "--figures", "--no-figures"], "--figures and --no-figures"),
             (train_app, ["evaluate", "--checkpoint", "a", "--checkpoint", "b", "--shards", "s"], "--checkpoint a"),
             (prep_app, ["shard", "--src", "s", "-j2", "--workers", "3"], "-j 2 and --workers 3")]
    for app, args, said in cases:
        result = CliRunner().invoke(app, args)
        text = " ".join(re.sub("[│╭╮╰╯─]", " ", result.output).split())  # the error box wraps its lines
        assert result.exit_code == 2 and said.split("=")[0] in text and "give it once" in text, (args, text)
    # the same value twice is one value; a repeatable option repeats
    result = CliRunner().invoke(train_app, ["--epochs", "3", "--epochs", "3", "table", "x"])
    assert "give it once" not in result.output
    result = CliRunner().invoke(train_app, ["figure1", "--seed", "1", "--seed", "2", "--shards", "/nonexistent"])
    assert "give it once" not in result.output


def test_a_run_name_is_one_folder_inside_the_output_dir(tmp_path):
    """`--run-name ../escape` wrote the run beside --output-dir with exit 0."""
    from typer.testing import CliRunner

    for name in ("../escape", "a/b", "..", ".", ""):
        result = CliRunner().invoke(train_app, ["--shards", str(tmp_path), "--output-dir", str(tmp_path / "runs"),
                                                "--run-name", name])
        assert result.exit_code == 2 and "--run-name" in result.output and "one folder name" in result.output, \
            (name, result.output)
    assert not (tmp_path / "escape").exists() and not (tmp_path / "runs").exists()
