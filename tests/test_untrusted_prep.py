"""Datasets from strangers, crashes and overlapping runs (prep): each test reproduces an
attack or a fault on generated data and shows what the toolkit does instead."""
import io
import os
import pickle
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from make_fixtures import jpeg_bytes, random_image, write_cifar10, write_class_folders, write_kaggle
from prep.forms.cifar import read_cifar_pickle
from prep.cli import app
from prep.config import PrepConfig
from prep.detect_layout import detect_task, read_source
from shared.folder_locks import DatasetWriteLock
from prep.write_shards import write_dataset
from shared.manifest import Manifest, SplitInfo, read_manifest

MARKER = "pwned-marker"


class Payload:
    """Unpickling this would create MARKER in the current folder."""

    def __reduce__(self):
        return (exec, (f"open({MARKER!r}, 'w').write('code ran')",))


def shard(src: Path, out: Path, **kw) -> Manifest:
    cfg = PrepConfig(src=src, out=out, workers=kw.pop("workers", 1), shard_size=kw.pop("shard_size", 4),
                     allow_skips=True, **kw)
    return write_dataset(read_source(src, cfg.task), cfg, out)


# ---- 1. pickles -------------------------------------------------------------------------
def test_crafted_cifar_pickle_does_not_run_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_cifar10(tmp_path / "c")
    meta = tmp_path / "c" / "cifar-10-batches-py" / "batches.meta"
    meta.write_bytes(pickle.dumps({b"label_names": [b"a"] * 10, b"x": Payload()}))
    read_cifar_pickle.cache_clear()
    for task in ("cifar10", None):  # forced and auto-detected
        result = CliRunner().invoke(app, ["shard", "--src", str(tmp_path / "c")] + (["--task", task] if task else []))
        assert result.exit_code == 2, result.output
        assert "batches.meta" in result.output and "refused global builtins.exec" in result.output
    assert not (tmp_path / MARKER).exists()


def test_cifar_pickle_with_other_values_refused(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}))
    with pytest.raises(ValueError, match="array of float32, expected uint8"):
        read_cifar_pickle(path)
    path.write_bytes(pickle.dumps({b"data": np.array([object()], dtype=object)}))
    read_cifar_pickle.cache_clear()
    with pytest.raises(ValueError, match="data_batch_1"):
        read_cifar_pickle(path)


def test_stray_meta_file_is_not_cifar100(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "folders"
    write_class_folders(src)
    (src / "meta").write_bytes(pickle.dumps(Payload()))
    assert detect_task(src) == "folder"
    manifest = shard(src, tmp_path / "o")
    assert {"path": "meta", "reason": "not inside a class folder"} in manifest.ignored
    assert not (tmp_path / MARKER).exists()


# ---- 2. shard names -----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pipe:touch X; cat train-000000.tar", "../../etc/passwd",
                                  "train-000000.tar; touch X #", "val-000000.tar", "train-000001.tar",
                                  "train-000000.tar\n"])
def test_manifest_with_foreign_shard_names_refused(tiny_shards, tmp_path, name):
    copy = tmp_path / "d"
    shutil.copytree(tiny_shards, copy)
    text = (copy / "manifest.json").read_text().replace('"train-000000.tar"', __import__("json").dumps(name), 1)
    (copy / "manifest.json").write_text(text)
    with pytest.raises(ValueError, match="shard name .* expected 'train-000000.tar'"):
        read_manifest(copy)


def test_names_in_pipe_templates_are_shell_quoted():
    m = Manifest("t", "l", 256, [], {"train": SplitInfo(["a b; touch X #"], [1], [1], ["0" * 64])}, {}, {})
    assert m.shard_paths("/d", "train", "pipe:cat /s/{name}") == ["pipe:cat /s/'a b; touch X #'"]
    assert m.shard_paths("/d", "train", "https://h/{name}") == ["https://h/a b; touch X #"]


# ---- 3. one writer per output folder --------------------------------------------------------
def test_second_run_into_a_locked_folder_fails_at_once(kaggle_src, tmp_path):
    src, _ = kaggle_src
    out = tmp_path / "o"
    with DatasetWriteLock(out):
        result = CliRunner().invoke(app, ["shard", "--src", str(src), "--out", str(out), "--workers", "1"])
    assert result.exit_code == 2
    assert "being written by another alexnet-prep run (pid" in result.output
    assert not list(out.glob("*.tar")) and not (out / "manifest.json").exists()
    assert shard(src, out) is not None  # the lock went with its holder


# ---- 4. done means verified; alexnet-prep verify --------------------------------------------
def cut_at_member_boundary(path: Path, keep_members: int) -> None:
    import tarfile

    with tarfile.open(path) as tar:
        members = tar.getmembers()
    end = members[keep_members].offset
    with open(path, "r+b") as f:
        f.truncate(end)


def tree(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def test_truncated_shard_recorded_as_done_is_rewritten(kaggle_src, tmp_path):
    src, _ = kaggle_src
    shard(src, tmp_path / "ref")
    out = tmp_path / "o"
    shard(src, out)
    cut_at_member_boundary(out / "train-000000.tar", 6)  # 2 of 4 samples left, record still says 4
    (out / "manifest.json").unlink()
    shard(src, out)
    assert tree(out) == tree(tmp_path / "ref")


def test_verify_names_truncated_and_flipped_shards(kaggle_src, tmp_path):
    src, _ = kaggle_src
    out = tmp_path / "o"
    shard(src, out)
    ok = CliRunner().invoke(app, ["verify", "--shards", str(out)])
    assert ok.exit_code == 0 and "intact" in ok.output
    cut_at_member_boundary(out / "train-000001.tar", 3)
    data = bytearray((out / "val-000000.tar").read_bytes())
    data[2000] ^= 0x01  # inside the first JPEG: same size, same members
    (out / "val-000000.tar").write_bytes(bytes(data))
    bad = CliRunner().invoke(app, ["verify", "--shards", str(out)])
    assert bad.exit_code == 1
    assert "train-000001.tar: " in bad.output and "bytes, manifest says" in bad.output
    assert "val-000000.tar: sha256 differs" in bad.output
    assert "train-000000.tar" not in bad.output


# ---- 6. memory bombs ------------------------------------------------------------------------
def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height over a few bytes of pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + \
        chunk(b"IEND", b"")


def test_huge_images_skipped_from_the_header(tmp_path):
    src = tmp_path / "src"
    write_class_folders(src)
    (src / "cat" / "bomb.png").write_bytes(png_header_only(13_300, 13_300))
    manifest = shard(src, tmp_path / "o")
    reasons = {s.path: s.reason for s in manifest.skipped}
    assert "exceeds --max-pixels 100 Mpx" in reasons["cat/bomb.png"]
    small = shard(src, tmp_path / "o2", max_pixels=1000)  # the flag decides
    assert all("exceeds --max-pixels" in s.reason for s in small.skipped if s.path.endswith(".jpg"))


# ---- 7. corrupt-but-complete JPEGs -------------------------------------------------------------
def damaged_jpegs() -> dict[str, bytes]:
    """Damage libjpeg reports as warnings. (Flipped bits it cannot see -- most flips inside
    the entropy-coded data -- stay samples: out of scope, README "Trust and failure".)"""
    good = jpeg_bytes(random_image(np.random.default_rng(9), 300, 260))
    sof, sos = good.index(b"\xff\xc0"), good.index(b"\xff\xda")
    big = bytearray(good)
    big[sof + 5:sof + 9] = struct.pack(">HH", 12000, 12000)  # header claims 12000 x 12000
    flipped = bytearray(good)
    middle = (sos + len(good)) // 2
    flipped[middle:middle + 4] = b"\xff\xd3\xff\xd5"  # flips that make stray restart markers
    return {"big_header": bytes(big), "cut_with_end": good[: int(len(good) * 0.4)] + b"\xff\xd9",
            "flipped": bytes(flipped)}


def test_corrupt_but_complete_jpegs_are_skips(tmp_path):
    src = tmp_path / "src"
    write_class_folders(src)
    for name, data in damaged_jpegs().items():
        (src / "dog" / f"{name}.jpg").write_bytes(data)
    manifest = shard(src, tmp_path / "o", max_pixels=10**9)
    reasons = {s.path: s.reason for s in manifest.skipped}
    assert "Corrupt JPEG data: premature end of data segment" in reasons["dog/cut_with_end.jpg"]
    assert "premature end of data segment" in reasons["dog/big_header.jpg"]
    assert "Corrupt JPEG data" in reasons["dog/flipped.jpg"]  # premature end: the markers cut the scan
    assert shard(src, tmp_path / "o2").skipped  # default limit: the 144 Mpx header is refused first


def test_pillow_alone_would_have_accepted_them():
    """Why the strict decoder: Pillow turns each of these into an image, exit 0."""
    for data in damaged_jpegs().values():
        img = Image.open(io.BytesIO(data))
        if img.size[0] * img.size[1] < 10**8:
            img.load()
            assert img.size[0] > 0


# ---- 8. every path listed -------------------------------------------------------------------------
LABEL_FILES = {"LOC_synset_mapping.txt", "LOC_val_solution.csv"}  # read for the class list and val labels


def covered(path: str, manifest: Manifest, sources: set[str]) -> bool:
    listed = {s.path for s in manifest.skipped} | {i["path"] for i in manifest.ignored}
    return path in sources | LABEL_FILES or any(path == p or path.startswith(p + "/") for p in listed)


def every_file(root: Path) -> list[str]:
    """Every entry that is not a real folder (folders are covered by what they hold; empty
    ones must be listed themselves)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):  # links are listed, never followed
        here = Path(dirpath)
        out += [(here / n).relative_to(root).as_posix() for n in filenames]
        out += [(here / n).relative_to(root).as_posix() for n in dirnames
                if (here / n).is_symlink() or not any((here / n).iterdir())]
    return out


def shard_sources(out: Path) -> set[str]:
    import json
    import tarfile

    sources = set()
    for tar_path in out.glob("*.tar"):
        with tarfile.open(tar_path) as tar:
            for m in tar:
                if m.name.endswith(".json"):
                    sources.add(json.loads(tar.extractfile(m).read())["source"])
    return sources


def awkward_kaggle(root: Path) -> None:
    write_kaggle(root)
    base = root / "ILSVRC" / "Data" / "CLS-LOC"
    wnid = "n01440764"
    (base / "train" / wnid / "extra").mkdir()
    (base / "train" / wnid / "extra" / "nested.JPEG").write_bytes(jpeg_bytes(random_image(np.random.default_rng(1), 64, 64)))
    (base / "val" / "ILSVRC2012_val_00000001.png").write_bytes(b"not used")  # beside the .JPEG
    (base / "train" / "not_a_wnid_empty").mkdir()
    (base / "train" / "n01484850").rename(base / "train" / "n01484850_moved")
    (base / "train" / "n01484850").mkdir()  # an empty class folder of the mapping
    os.symlink("..", base / "train" / wnid / "loop")  # a symlink loop
    os.symlink("/etc/passwd", base / "train" / wnid / "outside.JPEG")
    (base / "train" / wnid / ".DS_Store").write_bytes(b"")
    (root / "ILSVRC" / "Annotations").mkdir()
    (root / "LOC_train_solution.csv").write_text("ImageId,PredictionString\n")


def test_every_path_is_a_sample_a_skip_or_ignored(tmp_path):
    src = tmp_path / "src"
    awkward_kaggle(src)
    manifest = shard(src, tmp_path / "o")
    sources = shard_sources(tmp_path / "o")
    missing = [p for p in every_file(src) if not covered(p, manifest, sources)]
    assert not missing
    reasons = {s.path: s.reason for s in manifest.skipped} | {i["path"]: i["reason"] for i in manifest.ignored}
    base = "ILSVRC/Data/CLS-LOC/"
    assert "subfolder" in reasons[base + "train/n01440764/extra/nested.JPEG"]
    assert "same image id as ILSVRC2012_val_00000001.JPEG" in reasons[base + "val/ILSVRC2012_val_00000001.png"]
    assert reasons[base + "train/not_a_wnid_empty"] == "empty folder"
    assert "has no training images" in reasons[base + "train/n01484850"]
    assert reasons[base + "train/n01440764/loop"] == "symlink loop"
    assert "outside --src" in reasons[base + "train/n01440764/outside.JPEG"]
    assert reasons[base + "train/n01440764/.DS_Store"] == "hidden"
    assert "not part of the classification data" in reasons["ILSVRC/Annotations"]


def test_unreadable_class_folder_is_a_skip(tmp_path, monkeypatch):
    """Simulated (root reads every folder): scandir refused for one class folder."""
    src = tmp_path / "src"
    write_kaggle(src)
    blocked = (src / "ILSVRC/Data/CLS-LOC/train/n01443537").resolve()
    real = os.scandir

    def scandir(path):
        if Path(path) == blocked:
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    manifest = shard(src, tmp_path / "o")
    assert any(s.path == "ILSVRC/Data/CLS-LOC/train/n01443537" and "unreadable folder (Permission denied)" in s.reason
               for s in manifest.skipped)


@pytest.mark.skipif(os.geteuid() == 0, reason="running as root: chmod 000 does not stop root from reading "
                                               "(the simulated test above covers the logic)")
def test_unreadable_class_folder_for_real(tmp_path):
    src = tmp_path / "src"
    write_kaggle(src)
    folder = src / "ILSVRC/Data/CLS-LOC/train/n01443537"
    folder.chmod(0)
    try:
        manifest = shard(src, tmp_path / "o")
    finally:
        folder.chmod(0o755)
    assert any("unreadable folder" in s.reason for s in manifest.skipped)


def test_symlinks_in_class_folders_layout(tmp_path):
    src = tmp_path / "src"
    write_class_folders(src)
    os.symlink("..", src / "cat" / "up")
    os.symlink("../dog", src / "cat" / "dogs")
    os.symlink("self", src / "cat" / "self")
    manifest = shard(src, tmp_path / "o")
    reasons = {s.path: s.reason for s in manifest.skipped}
    assert reasons["cat/up"] == reasons["cat/self"] == "symlink loop"
    assert "not followed" in reasons["cat/dogs"]
    assert manifest.splits["train"].samples + manifest.splits["holdout"].samples == 10  # nothing counted twice


def dying_worker(job):
    os._exit(9)  # as a worker killed by the OOM killer


def test_exit_status_crash_is_not_skips(tmp_path, monkeypatch):
    """3 = finished with skips; 1 = crashed (here: a worker dies)."""
    src = tmp_path / "src"
    write_class_folders(src)
    (src / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    skips = CliRunner().invoke(app, ["shard", "--src", str(src), "--out", str(tmp_path / "a"), "--workers", "1"])
    assert skips.exit_code == 3
    import prep.write_shards as ws

    monkeypatch.setattr(ws, "write_one_shard", dying_worker)
    crashed = CliRunner().invoke(app, ["shard", "--src", str(src), "--out", str(tmp_path / "b"), "--workers", "2"])
    assert crashed.exit_code == 1 and "a worker process died" in crashed.output
