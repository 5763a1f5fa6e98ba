"""Each on-disk layout -> shards whose labels match the source; nothing lost silently."""
import gzip
import io
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from PIL import Image
from typer.testing import CliRunner

from make_fixtures import (write_cifar10, write_cifar100, write_class_folders, write_kaggle, write_mnist,
                           write_tiny_imagenet)
from prep.cli import app
from prep.config import PrepConfig
from prep.detect_layout import read_source
from prep.write_shards import write_dataset
from shared.manifest import read_manifest
from shared.shards import iter_shard


def shard(src: Path, out: Path, task=None, **kw):
    cfg = PrepConfig(src=src, task=task, out=out, workers=kw.pop("workers", 2), shard_size=kw.pop("shard_size", 4), **kw)
    return write_dataset(read_source(src, task), cfg, out)


def all_samples(out: Path):
    manifest = read_manifest(out)
    return {split: [s for p in manifest.shard_paths(out, split) for s in iter_shard(p)]
            for split in manifest.splits}


def test_kaggle_every_input_accounted_for(kaggle_src, tmp_path):
    src, planted = kaggle_src
    result = CliRunner().invoke(app, ["shard", "--src", str(src), "--out", str(tmp_path / "o"),
                                      "--shard-size", "4", "--workers", "2"])
    assert result.exit_code == 3, result.output  # skips without --allow-skips
    assert "6 inputs skipped" in result.output
    manifest = read_manifest(tmp_path / "o")
    samples = all_samples(tmp_path / "o")
    n_samples = sum(len(v) for v in samples.values())
    # every file (+1 CSV row naming a missing file) is a sample or a listed skip
    assert n_samples + len(manifest.skipped) == planted["files"] + 1
    assert len(manifest.skipped) == planted["skips"]
    reasons = " ".join(s.reason for s in manifest.skipped)
    for expected in ("not a decodable image", "not in LOC_synset_mapping.txt",
                     "not listed in LOC_val_solution.csv", "file is missing", "n77777777"):
        assert expected in reasons
    assert manifest.ignored == [{"path": "ILSVRC/Data/CLS-LOC/test", "reason": "Kaggle test set has no labels"}]
    for split, items in samples.items():
        for s in items:
            assert s.label == planted["labels"][s.key], (split, s.key)
            assert manifest.classes[s.label].wnid == s.meta["class"]
            img = Image.open(io.BytesIO(s.jpg))
            assert img.size == (256, 256) and img.mode == "RGB"
    assert {s.key for s in samples["val"]} == {k for k in planted["labels"] if k.startswith("ILSVRC2012_val")}
    names = [c.name for c in manifest.classes]
    assert names.count("crane") == 2  # names are not unique; wnids are
    # CMYK, grayscale and PNG-named-JPEG all became RGB samples
    keys = {s.key for items in samples.values() for s in items}
    assert {"n01443537_cmyk", "n01443537_grey", "n01443537_png"} <= keys


def test_kaggle_shards_readable_by_webdataset_and_tar(kaggle_src, tmp_path):
    src, _ = kaggle_src
    manifest = shard(src, tmp_path, allow_skips=True)
    for split, info in manifest.splits.items():
        urls = manifest.shard_paths(tmp_path, split)
        ds = wds.WebDataset(urls, shardshuffle=False).decode("pil").to_tuple("jpg", "cls", "json")
        rows = list(ds)
        assert len(rows) == info.samples
        assert all(img.size == (256, 256) for img, _, _ in rows)
        listing = subprocess.run(["tar", "tf", urls[0]], capture_output=True, text=True, check=True).stdout
        assert listing.split()[0].endswith(".jpg")


def test_train_shards_mix_classes_and_holdout_is_stratified(tmp_path):
    src = tmp_path / "src"
    write_class_folders(src, classes=("a", "b", "c", "d"), per_class=30)
    manifest = shard(src, tmp_path / "o", shard_size=20, allow_skips=True)
    samples = all_samples(tmp_path / "o")
    assert manifest.splits["holdout"].samples == 12  # 10% of 120
    assert sorted(np.bincount([s.label for s in samples["holdout"]])) == [3, 3, 3, 3]
    first = list(iter_shard(tmp_path / "o" / "train-000000.tar"))
    assert len({s.label for s in first}) == 4
    assert manifest.ignored == [{"path": "a/notes.txt", "reason": "suffix '.txt' is not an image type"}]


def test_holdout_is_in_proportion_to_class_sizes():
    """StratifiedShuffleSplit's allocation: floor(count * n_c / N), then the largest remainders."""
    from prep.plan import split_holdout
    from prep.sources import Item
    sizes = {0: 5421, 1: 6742, 2: 5958, 3: 6131}  # four of MNIST's real train class sizes
    items = [Item(key=f"c{c}_{i}", label=c, source=f"c{c}/{i}") for c, n in sizes.items() for i in range(n)]
    total = sum(sizes.values())
    for count in (1000, 2413, 7):
        train, holdout = split_holdout(items, count, seed=3)
        assert len(holdout) == count and len(train) + count == len(items)
        got = np.bincount([it.label for it in holdout], minlength=4)
        exact = np.array([count * n / total for n in sizes.values()])
        assert np.all(np.abs(got - exact) < 1), (count, got, exact)  # floor or ceil of the exact share
        assert {it.key for it in train}.isdisjoint(it.key for it in holdout)
    # deterministic by seed; another seed draws other images (same quotas)
    again = split_holdout(items, 1000, seed=3)[1]
    other = split_holdout(items, 1000, seed=4)[1]
    first = split_holdout(items, 1000, seed=3)[1]
    assert [it.key for it in again] == [it.key for it in first]
    assert {it.key for it in other} != {it.key for it in first}


def test_tiny_imagenet(tmp_path):
    planted = write_tiny_imagenet(tmp_path / "tiny")
    manifest = shard(tmp_path / "tiny", tmp_path / "o")
    assert manifest.task == "tiny-imagenet"
    assert [c.wnid for c in manifest.classes] == ["n01443537", "n02124075"]
    assert manifest.classes[0].name == "goldfish, Carassius auratus"
    samples = all_samples(tmp_path / "o")
    assert len(samples["val"]) == 4
    for items in samples.values():
        for s in items:
            assert s.label == planted["labels"][s.key]


@pytest.mark.parametrize("folder,task", [("MNIST", "mnist"), ("FashionMNIST", "fashion-mnist")])
def test_idx_gz(tmp_path, folder, task):
    data = write_mnist(tmp_path / "m", folder=folder)
    manifest = shard(tmp_path / "m", tmp_path / "o")
    assert manifest.task == task and manifest.num_classes == 10
    samples = all_samples(tmp_path / "o")
    assert len(samples["train"]) + len(samples["holdout"]) == 30 and len(samples["val"]) == 10
    images, labels = data["train"]
    for s in samples["train"]:
        i = int(s.key.split("_")[1])
        assert s.label == labels[i] and s.meta["source"].endswith(f"#{i}")
        # upscaled 28 -> 256; its mean is the source digit's to within JPEG's error: measured
        # at most 0.015 on these images, while the neighbouring record's differs by 0.32 or more
        patch = np.asarray(Image.open(io.BytesIO(s.jpg)), dtype=np.float64)
        assert abs(patch.mean() - images[i].mean()) < 0.05


def test_cifar10_and_cifar100(tmp_path):
    batches = write_cifar10(tmp_path / "c10")
    manifest = shard(tmp_path / "c10", tmp_path / "o10")
    assert manifest.task == "cifar10" and manifest.classes[9].name == "truck"
    samples = all_samples(tmp_path / "o10")
    assert sum(len(v) for v in samples.values()) == 36
    for s in samples["val"]:
        i = int(s.key.rsplit("_", 1)[1])
        assert s.label == batches["test_batch"][b"labels"][i]
        rgb = batches["test_batch"][b"data"][i].reshape(3, 32, 32).transpose(1, 2, 0)
        small = np.asarray(Image.open(io.BytesIO(s.jpg)).resize((32, 32), Image.Resampling.BOX), np.float64)
        wrong = batches["test_batch"][b"data"][i].reshape(32, 32, 3)  # the classic layout mistake
        # white-noise pixels lose much to JPEG's chroma subsampling; orientation must still match
        assert np.abs(small - rgb).mean() < 0.5 * np.abs(small - wrong).mean()
    c100 = write_cifar100(tmp_path / "c100")
    manifest = shard(tmp_path / "c100", tmp_path / "o100")
    assert manifest.task == "cifar100" and manifest.num_classes == 100
    for s in all_samples(tmp_path / "o100")["val"]:
        assert s.label == c100["test"][b"fine_labels"][int(s.key.rsplit("_", 1)[1])]


def test_class_folders_with_val(tmp_path):
    write_class_folders(tmp_path / "f", with_val=True)
    manifest = shard(tmp_path / "f", tmp_path / "o")
    assert manifest.layout == "class-folders" and [c.name for c in manifest.classes] == ["cat", "dog"]
    samples = all_samples(tmp_path / "o")
    assert len(samples["val"]) == 4
    for items in samples.values():
        for s in items:
            assert manifest.classes[s.label].name == s.meta["source"].split("/")[1]


def test_wrong_src_errors_name_layouts(tmp_path):
    runner = CliRunner()
    missing = runner.invoke(app, ["shard", "--src", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no such folder" in missing.output
    (tmp_path / "empty").mkdir()
    empty = runner.invoke(app, ["shard", "--src", str(tmp_path / "empty")])
    assert empty.exit_code == 2
    for layout in ("LOC_synset_mapping.txt", "wnids.txt", "cifar-10-batches-py", "class"):
        assert layout in empty.output
    bad_task = runner.invoke(app, ["shard", "--src", str(tmp_path / "empty"), "--task", "svhn"])
    assert "expected one of" in bad_task.output


def test_complete_output_not_overwritten(tmp_path):
    write_class_folders(tmp_path / "f")
    args = ["shard", "--src", str(tmp_path / "f"), "--out", str(tmp_path / "o"), "--allow-skips"]
    assert CliRunner().invoke(app, args).exit_code == 0
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert CliRunner().invoke(app, args + ["--overwrite"]).exit_code == 0
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["splits"]["train"]["samples"] == 9


@pytest.mark.parametrize("naming,flat", [("dotted", True), ("dotted-gz", True), ("upper", False)])
def test_idx_under_other_copies_names(tmp_path, naming, flat):
    """PyPI's MNIST packages and many zips: `train-images.idx3-ubyte`, upper case, flat folders.
    Same records, same shards as torchvision's names."""
    write_mnist(tmp_path / "tv")
    src = tmp_path / "mnist-from-pypi"  # flat files say which dataset they are by the folder's name
    write_mnist(src, naming=naming, flat=flat)
    reference = shard(tmp_path / "tv", tmp_path / "o-tv")
    manifest = shard(src, tmp_path / "o")
    assert manifest.task == "mnist" and manifest.layout == "idx"
    assert {k: v.samples for k, v in manifest.splits.items()} == {k: v.samples for k, v in reference.splits.items()}
    def records(out):  # the json's `source` names the file read, which differs
        return {split: [(s.key, s.label, s.jpg) for s in items] for split, items in all_samples(out).items()}
    assert records(tmp_path / "o") == records(tmp_path / "o-tv")


def test_idx_copies_side_by_side_read_once(tmp_path):
    """torchvision keeps the .gz beside the file it extracted: one is read, the other is an
    ignored entry naming it."""
    write_mnist(tmp_path / "m")
    raw = tmp_path / "m" / "MNIST" / "raw"
    for gz in list(raw.glob("*.gz")):
        (raw / gz.stem).write_bytes(gzip.decompress(gz.read_bytes()))
    manifest = shard(tmp_path / "m", tmp_path / "o")
    assert sum(s.samples for s in manifest.splits.values()) == 40
    assert {s.meta["source"].split("#")[0] for s in all_samples(tmp_path / "o")["train"]} == \
        {"MNIST/raw/train-images-idx3-ubyte"}
    copies = [e for e in manifest.ignored if e["path"].endswith(".gz")]
    assert len(copies) == 4 and all(e["reason"].startswith("another copy of ") for e in copies)


def test_no_idx_file_matches_lists_the_names_looked_for(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "train-imgs.bin").write_bytes(b"x")
    result = CliRunner().invoke(app, ["shard", "--src", str(tmp_path / "m"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "train-images-idx3-ubyte" in result.output and "train-images.idx3-ubyte" in result.output


@pytest.mark.parametrize("task,cls", [("mnist", "MNIST"), ("cifar10", "CIFAR10")])
def test_offline_download_is_a_refusal_naming_urls(tmp_path, monkeypatch, task, cls):
    """No network (here: a port nothing listens on): exit 2 naming the URLs and where the files
    go, no traceback, and --src as it was (absent stays absent, empty stays empty)."""
    import torchvision.datasets as tvd
    dead = "http://127.0.0.1:9/"
    if task == "mnist":
        monkeypatch.setattr(tvd.MNIST, "mirrors", [dead])
    else:
        monkeypatch.setattr(tvd.CIFAR10, "url", dead + "cifar-10-python.tar.gz")
    for src in (tmp_path / "absent", tmp_path / "empty"):
        if src.name == "empty":
            src.mkdir()
        result = CliRunner().invoke(app, ["shard", "--src", str(src), "--task", task, "--out", str(tmp_path / "o")])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output and dead in result.output
        assert str(src / cls) in result.output or str(src / "cifar-10-batches-py") in result.output
        assert (not src.exists()) if src.name == "absent" else list(src.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # no staging folder left, no --out


def plant_hidden(root: Path) -> list[str]:
    """A .DS_Store in every folder (as macOS's Finder leaves them), one hidden folder at the top."""
    folders = [root] + [p for p in root.rglob("*") if p.is_dir()]
    for folder in folders:
        (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return sorted([(f / ".DS_Store").relative_to(root).as_posix() for f in folders] + [".git"])


@pytest.mark.parametrize("layout", ["kaggle", "tiny", "mnist", "cifar10", "folders"])
def test_a_hidden_entry_is_hidden_wherever_it_is(tmp_path, layout):
    src = tmp_path / "src"
    {"kaggle": lambda: write_kaggle(src), "tiny": lambda: write_tiny_imagenet(src), "mnist": lambda: write_mnist(src),
     "cifar10": lambda: write_cifar10(src), "folders": lambda: write_class_folders(src, with_val=True)}[layout]()
    planted = plant_hidden(src)
    manifest = shard(src, tmp_path / "o", allow_skips=True)
    reasons = {e["path"]: e["reason"] for e in manifest.ignored}
    folders_left_out = [p for p, why in reasons.items() if why != "hidden" and (src / p).is_dir()]
    for path in planted:  # listed as hidden, or inside a folder left out as a whole (Kaggle's test/)
        inside = any(path.startswith(folder + "/") for folder in folders_left_out)
        assert reasons.get(path) == ("hidden" if not inside else None), path
    assert [p for p, why in reasons.items() if why == "hidden"] == [p for p in reasons if p in planted]
    assert not [s for s in manifest.skipped if "/." in "/" + s.path]
