"""--src ARCHIVE: the downloads read in place give the shards the extracted trees give, and a
hostile archive cannot reach outside itself."""
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from make_fixtures import write_cifar10, write_class_folders, write_tiny_imagenet
from prep.archives import _OPEN
from prep.config import PrepConfig
from prep.detect_layout import read_source
from prep.write_shards import write_dataset
from shared.manifest import read_manifest
from shared.shards import iter_shard


def zip_tree(folder: Path, dest: Path, compression=zipfile.ZIP_DEFLATED, prefix: str = "") -> Path:
    with zipfile.ZipFile(dest, "w", compression) as zf:
        for path in sorted(folder.rglob("*")):
            arc = prefix + path.relative_to(folder).as_posix()
            zf.write(path, arc + ("/" if path.is_dir() else ""))
    return dest


def shard(src: Path, out: Path, **kw):
    _OPEN.clear()  # each run lists its archive afresh, as a new process would
    cfg = PrepConfig(src=src, out=out, workers=kw.pop("workers", 2), shard_size=4, allow_skips=True, **kw)
    return write_dataset(read_source(src, None), cfg, out)


def shards_and_listing(out: Path) -> tuple[dict, list, list]:
    m = read_manifest(out)
    tars = {p.name: p.read_bytes() for p in sorted(out.glob("*.tar"))}
    return tars, [(s.path, s.split, s.reason) for s in m.skipped], m.ignored


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_kaggle_zip_equals_the_extracted_tree(kaggle_src, tmp_path, compression):
    src, _ = kaggle_src
    archive = zip_tree(src, tmp_path / "imagenet-object-localization-challenge.zip", compression)
    tree, from_zip = shard(src, tmp_path / "tree"), shard(archive, tmp_path / "zip")
    assert from_zip.task == tree.task and from_zip.splits == tree.splits
    assert shards_and_listing(tmp_path / "zip") == shards_and_listing(tmp_path / "tree")


def test_tiny_imagenet_zip_with_its_top_folder(tmp_path):
    src = tmp_path / "tiny-imagenet-200"
    write_tiny_imagenet(src)
    archive = zip_tree(src, tmp_path / "tiny-imagenet-200.zip", prefix="tiny-imagenet-200/")
    shard(src, tmp_path / "tree")
    assert shard(archive, tmp_path / "zip").task == "tiny-imagenet"
    assert shards_and_listing(tmp_path / "zip") == shards_and_listing(tmp_path / "tree")


def test_cifar_tar_gz_equals_the_extracted_folder(tmp_path):
    write_cifar10(tmp_path / "x")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "x" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    shard(tmp_path / "x" / "cifar-10-batches-py", tmp_path / "tree")
    assert shard(archive, tmp_path / "tgz").task == "cifar10"
    assert shards_and_listing(tmp_path / "tgz") == shards_and_listing(tmp_path / "tree")


def test_parts_from_a_zip_merge_to_the_single_run(kaggle_src, tmp_path):
    src, _ = kaggle_src
    archive = zip_tree(src, tmp_path / "k.zip")
    shard(archive, tmp_path / "whole")
    merged = tmp_path / "merged"
    for k in (1, 2):
        assert shard(archive, tmp_path / f"p{k}", part=f"{k}/2") is None
        shutil.copytree(tmp_path / f"p{k}", merged, dirs_exist_ok=True)
    shard(archive, merged)
    assert shards_and_listing(merged) == shards_and_listing(tmp_path / "whole")


def test_hostile_members_are_skips_never_read(tmp_path):
    src = tmp_path / "myset"
    write_class_folders(src)
    (tmp_path / "secret.jpg").write_bytes((src / "cat" / "0000.jpg").read_bytes())  # outside the archive
    archive = zip_tree(src, tmp_path / "myset.zip", prefix="myset/")
    with zipfile.ZipFile(archive, "a", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("myset/cat/../../secret.jpg", b"x")  # climbs out
        zf.writestr("/etc/cat.jpg", b"x")  # absolute
        zf.writestr("myset/dog/0000.jpg", b"a second member of the same name")
        zf.writestr("myset/dog/bomb.jpg", b"\0" * (50 << 20))  # 50 MB of zeros, ~50 KB deflated
    manifest = shard(archive, tmp_path / "o")
    reasons = {s.path: s.reason for s in manifest.skipped}
    assert "unsafe member name" in reasons["myset/cat/../../secret.jpg"]
    assert "unsafe member name" in reasons["/etc/cat.jpg"]
    assert "appears more than once" in reasons["myset/dog/0000.jpg"]
    assert "over" in reasons["myset/dog/bomb.jpg"] and "not read" in reasons["myset/dog/bomb.jpg"]
    assert manifest.task == "myset"
    sources = {s.meta["source"] for split in manifest.splits for p in manifest.shard_paths(tmp_path / "o", split)
               for s in iter_shard(p)}
    assert len(sources) == 9 and all(src.startswith(("cat/", "dog/")) for src in sources)  # 10 images, one ambiguous


@pytest.mark.slow
def test_kill_9_then_rerun_from_a_zip_is_byte_identical(tmp_path):
    from make_fixtures import random_image
    import numpy as np

    src = tmp_path / "src"
    rng = np.random.default_rng(0)
    for c in range(3):
        (src / f"c{c}").mkdir(parents=True)
        for n in range(120):
            random_image(rng, 400, 320).save(src / f"c{c}" / f"{n}.jpg", quality=95)
    archive = zip_tree(src, tmp_path / "src.zip")
    cmd = [sys.executable, "-m", "prep", "shard", "--src", str(archive), "--shard-size", "4", "--workers", "2"]
    subprocess.run(cmd + ["--out", str(tmp_path / "ref")], check=True, capture_output=True)
    out = tmp_path / "killed"
    proc = subprocess.Popen(cmd + ["--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while len(list(out.glob("train-*.tar"))) < 5 and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists(), "run finished before the kill; grow the fixture"
    subprocess.run(cmd + ["--out", str(out)], check=True, capture_output=True)
    assert shards_and_listing(out) == shards_and_listing(tmp_path / "ref")
