"""Wrong inputs to training and evaluation are errors naming the file, before the first
step where possible: labels, counts, cut shards, statistics, class order, checkpoints."""
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from shared.manifest import read_manifest
from shared.shards import Sample, AtomicShardWriter, file_sha256, iter_shard
from train.checkpoint import check_best_matches, load_checkpoint
from train.cli import app
from train.config import TrainConfig
from train.dataset_folder import load_dataset
from train.loop import train
from small_run import SMALL



def copy_dataset(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_manifest(root: Path, edit) -> None:
    d = json.loads((root / "manifest.json").read_text())
    edit(d)
    (root / "manifest.json").write_text(json.dumps(d))


def rewrite_shard_consistently(root: Path, name: str, label: int) -> None:
    """A stranger's dataset that is self-consistent (sizes, checksums) but carries `label`."""
    samples = list(iter_shard(root / name))
    (root / name).unlink()
    with AtomicShardWriter(root / name) as w:
        for s in samples:
            w.write(Sample(s.key, s.jpg, label, s.meta))

    def fix(d):
        info = d["splits"]["train"]
        i = info["shards"].index(name)
        info["shard_bytes"][i], info["shard_sha256"][i] = (root / name).stat().st_size, file_sha256(root / name)
    edit_manifest(root, fix)


def fast_dev(shards: Path, tmp_path: Path, **kw):
    return train(TrainConfig(shards=shards, fast_dev_run=True, logdir=tmp_path / "runs", **{**SMALL, **kw}))


# ---- 9. labels and counts ----------------------------------------------------------------------
@pytest.mark.parametrize("label,message", [(999, "class index 999 outside 0..2")])
def test_label_outside_the_classes_names_shard_and_key(tiny_shards, tmp_path, label, message):
    root = copy_dataset(tiny_shards, tmp_path / "d")
    for name in read_manifest(root).splits["train"].shards:
        rewrite_shard_consistently(root, name, label)
    with pytest.raises(ValueError, match=rf"train-0000\d\d.tar: sample '[^']+': {message}"):
        fast_dev(root, tmp_path)


def test_shard_cut_at_a_member_boundary_refused_before_the_first_step(tiny_shards, tmp_path):
    import tarfile

    root = copy_dataset(tiny_shards, tmp_path / "d")
    path = root / "train-000001.tar"
    with tarfile.open(path) as tar:
        cut = tar.getmembers()[3].offset
    with open(path, "r+b") as f:
        f.truncate(cut)
    with pytest.raises(ValueError, match=r"train-000001.tar: [\d,]+ bytes, manifest says"):
        fast_dev(root, tmp_path)
    assert not (tmp_path / "runs").exists()  # refused before a run folder was made


def test_manifest_counts_checked_against_the_shards(tiny_shards, tmp_path):
    root = copy_dataset(tiny_shards, tmp_path / "d")
    edit_manifest(root, lambda d: d["splits"]["train"]["shard_samples"].__setitem__(0, 80))
    with pytest.raises(ValueError, match="train-000000.tar: 8 samples, manifest says 80"):
        fast_dev(root, tmp_path)
    root2 = copy_dataset(tiny_shards, tmp_path / "d2")
    edit_manifest(root2, lambda d: d["splits"]["holdout"]["shard_samples"].__setitem__(0, 3))
    with pytest.raises(ValueError, match="holdout-000000.tar: \\d+ samples, manifest says 3"):
        fast_dev(root2, tmp_path)  # under --fast-dev-run too


def test_checksums_checked_on_request(tiny_shards, tmp_path):
    root = copy_dataset(tiny_shards, tmp_path / "d")
    data = bytearray((root / "val-000000.tar").read_bytes())
    data[1500] ^= 1
    (root / "val-000000.tar").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="val-000000.tar: sha256 differs"):
        fast_dev(root, tmp_path, verify_checksums=True)


# ---- 10. statistics ----------------------------------------------------------------------------
@pytest.mark.parametrize("field,value,message", [("mean_rgb", [float("nan"), 1.0, 2.0], "mean_rgb"),
                                                  ("std_rgb", [0.0, 1.0, 1.0], "std_rgb"),
                                                  ("eigenvalues", [5.0, -3.0, 1.0], "eigenvalues")])
def test_invalid_statistics_refused_on_load(tiny_shards, tmp_path, field, value, message):
    root = copy_dataset(tiny_shards, tmp_path / "d")
    stats = json.loads((root / "stats.json").read_text())
    stats[field] = value
    (root / "stats.json").write_text(json.dumps(stats))
    with pytest.raises(ValueError, match=f"stats.json: invalid statistics: {message}"):
        load_dataset(root)


def test_evaluate_with_nan_statistics_exits_with_an_error(tiny_shards, trained, tmp_path):
    root = copy_dataset(tiny_shards, tmp_path / "d")
    text = (root / "stats.json").read_text()
    stats = json.loads(text)
    stats["mean_rgb"][0] = float("nan")
    (root / "stats.json").write_text(json.dumps(stats))
    result = CliRunner().invoke(app, ["evaluate", "--checkpoint", str(trained), "--shards", str(root),
                                      "--out", str(tmp_path / "e"), "--no-figures", "--device", "cpu"])
    assert result.exit_code == 2 and "invalid statistics" in result.output
    assert not (tmp_path / "e" / "results.json").exists()


# ---- 11. class order ---------------------------------------------------------------------------
def test_checkpoint_refuses_a_dataset_with_another_class_order(tiny_shards, trained, tmp_path):
    root = copy_dataset(tiny_shards, tmp_path / "d")

    def swap(d):
        a, b = d["classes"][0], d["classes"][1]
        a["wnid"], b["wnid"], a["name"], b["name"] = b["wnid"], a["wnid"], b["name"], a["name"]
    edit_manifest(root, swap)
    result = CliRunner().invoke(app, ["evaluate", "--checkpoint", str(trained), "--shards", str(root),
                                      "--out", str(tmp_path / "e"), "--no-figures", "--device", "cpu"])
    assert result.exit_code == 2
    assert "class list differs from the checkpoint's in 2 places" in result.output
    assert "index 0: checkpoint" in result.output


# ---- 12. checkpoints ---------------------------------------------------------------------------
def test_damaged_checkpoints_are_one_line_errors(trained, tmp_path):
    truncated = tmp_path / "t.pt"
    truncated.write_bytes((trained.parent / "last.pt").read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"t.pt: not a readable checkpoint \(truncated or corrupt"):
        load_checkpoint(truncated)
    empty = tmp_path / "e.pt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"e.pt: empty file \(0 bytes\)"):
        load_checkpoint(empty)
    result = CliRunner().invoke(app, ["evaluate", "--checkpoint", str(empty), "--shards", str(trained.parent),
                                      "--device", "cpu"])
    assert result.exit_code == 2 and "empty file" in result.output


class Payload:
    def __reduce__(self):
        return (exec, ("open('pwned-checkpoint', 'w').write('x')",))


def test_checkpoint_with_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"arch": "alexnet-krizhevsky-2012", "x": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="refused"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned-checkpoint").exists()


def test_best_written_before_last_and_checked_on_resume(trained, tmp_path):
    from train.checkpoint import _save

    state = load_checkpoint(trained)
    last = {**state, "epoch": 4, "best_epoch": 3, "best_error": 0.2}
    run = tmp_path
    _save(run / "best.pt", {**state, "epoch": 3, "best_error": 0.2})
    assert check_best_matches(run, last, run / "last.pt") == (0.2, 3)
    _save(run / "best.pt", {**state, "epoch": 5, "best_error": 0.1})  # killed between best.pt and last.pt
    assert check_best_matches(run, last, run / "last.pt") == (0.1, 5)
    _save(run / "best.pt", {**state, "epoch": 1, "best_error": 0.3})  # the old order's stale best.pt
    with pytest.raises(ValueError, match="best.pt is stale"):
        check_best_matches(run, last, run / "last.pt")


@pytest.mark.slow
def test_resume_cleans_partial_writes_and_duplicate_rows(tiny_shards, tmp_path):
    base = TrainConfig(shards=tiny_shards, steps_per_epoch=1, logdir=tmp_path, run_name="r", **SMALL)
    train(replace(base, epochs=1))
    run = tmp_path / "r"
    (run / "last.pt.tmp").write_bytes(b"half a checkpoint")  # a kill during the next save
    with open(run / "metrics.jsonl", "a") as f:  # rows a killed epoch left behind
        f.write(json.dumps({"epoch": 0, "dup": True}) + "\n" + json.dumps({"epoch": 1}) + "\n{\"epo")
    train(replace(base, epochs=2, run_name=None, resume=run / "last.pt"))  # continues in place
    assert not (run / "last.pt.tmp").exists()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1] and "train" in rows[1] and not rows[0].get("dup")
    assert load_checkpoint(run / "last.pt")["epoch"] == 1


def test_incomplete_imagenet_val_reported_loudly(tiny_shards, trained, tmp_path):
    """A dataset named imagenet whose val holds fewer than ILSVRC-2012's 50,000 images (skips
    in prep): a warning, "complete": false in results.json, "(incomplete)" in the table."""
    root = copy_dataset(tiny_shards, tmp_path / "d")
    edit_manifest(root, lambda d: d.__setitem__("task", "imagenet"))
    state = torch.load(trained, weights_only=True)
    result = CliRunner().invoke(app, ["evaluate", "--checkpoint", str(trained), "--shards", str(root),
                                      "--out", str(tmp_path / "e"), "--no-figures", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "WARNING: imagenet val holds 12 of the official 50,000 images (49,988 missing" in result.output
    results = json.loads((tmp_path / "e" / "results.json").read_text())
    assert results["complete"] is False and results["shortfall"]["missing"] == 49_988
    assert "12 (incomplete)" in result.output
    assert state["classes"]  # the checkpoint's class list matched the renamed dataset's
