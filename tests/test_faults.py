"""Issue 21's round of hostile inputs and faults: one test per numbered point, each failing on
the code before the fix. Generated data only; every CLI outcome checked for its exit status
and for the absence of a Python traceback."""
import errno
import gzip
import json
import os
import pickle
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner, Result

from make_fixtures import (jpeg_bytes, random_image, write_class_folders, write_kaggle, write_mnist,
                           write_tiny_imagenet)
from prep.cli import app as prep_app
from prep.config import PrepConfig
from prep.detect_layout import read_source
from prep.sources import Item, ensure_unique_keys
from prep.write_shards import write_dataset
from shared.manifest import read_manifest
from shared.shards import AtomicShardWriter, Sample, file_sha256, iter_shard
from train.cli import app as train_app
from small_run import SMALL_FLAGS


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


def shard_folder(src: Path, out: Path, **kw):
    cfg = PrepConfig(src=src, out=out, allow_skips=True, workers=1, **kw)
    return write_dataset(read_source(src, cfg.task), cfg, out)


def copy_dataset(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ---- 1. a dataset folder named like a command -------------------------------------------------
def test_shards_folder_named_pipe_runs_nothing(tiny_shards, tmp_path, monkeypatch):
    from train.loader import read_tar_samples

    monkeypatch.chdir(tmp_path)
    folder = Path("pipe:touch PWNED; cat x")
    shutil.copytree(tiny_shards, tmp_path / folder)
    urls = read_manifest(folder).shard_paths(folder, "train")
    samples = list(read_tar_samples(urls))
    assert len(samples) == read_manifest(folder).splits["train"].samples
    assert not (tmp_path / "PWNED").exists()


# ---- 2, 13. idx files: dims, dtype, counts, damage --------------------------------------------
def idx(array: np.ndarray, dtype_code: int = 0x08) -> bytes:
    return struct.pack(">BBBB", 0, 0, dtype_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) \
        + array.astype(np.uint8).tobytes()


IDX_FAULTS = {
    "images 2-D (N, 784)": (lambda im, lb: (idx(im.reshape(len(im), -1)), idx(lb)), "2-D array"),
    "images 4-D": (lambda im, lb: (idx(im[:, None]), idx(lb)), "4-D array"),
    "labels file where the images belong": (lambda im, lb: (idx(lb), idx(lb)), "1-D array (labels)"),
    "header cut short": (lambda im, lb: (idx(im)[:9], idx(lb)), "header cut short"),
    "zero images": (lambda im, lb: (idx(im[:0]), idx(lb[:0])), "expected"),
    "data cut short": (lambda im, lb: (idx(im)[:-5], idx(lb)), "bytes, expected"),
    "int32 data": (lambda im, lb: (idx(im, 0x0C), idx(lb)), "data type 0x0c"),
    "counts differ": (lambda im, lb: (idx(im), idx(lb[:-1])), "30 images but"),
}


@pytest.mark.parametrize("fault", sorted(IDX_FAULTS))
def test_idx_files_validated_before_reading(tmp_path, fault):
    data = write_mnist(tmp_path / "m")
    raw = tmp_path / "m" / "MNIST" / "raw"
    images, labels = data["train"]
    make, message = IDX_FAULTS[fault]
    image_bytes, label_bytes = make(images, labels)
    (raw / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(image_bytes))
    (raw / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(label_bytes))
    one_line_error(prep("shard", "--src", tmp_path / "m", "--out", tmp_path / "o"), 2, message, "idx")
    assert not (tmp_path / "o").exists()


def test_damaged_gzip_is_one_line(tmp_path):
    write_mnist(tmp_path / "m")
    gz = tmp_path / "m" / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    data = bytearray(gz.read_bytes())
    data[len(data) // 2:len(data) // 2 + 40] = b"\xff" * 40
    gz.write_bytes(bytes(data))
    one_line_error(prep("shard", "--src", tmp_path / "m", "--out", tmp_path / "o"), 2, "train-images-idx3-ubyte.gz")


# ---- 3. labels files: missing images, two labels for one image -------------------------------
def test_tiny_imagenet_val_listed_but_missing_and_two_labels(tmp_path):
    write_tiny_imagenet(tmp_path / "t")
    notes = tmp_path / "t" / "val" / "val_annotations.txt"
    lines = notes.read_text().splitlines()
    lines.append("val_99.JPEG\tn01443537\t0\t0\t1\t1")  # no such file
    lines.append(lines[0].replace("n02124075", "n01443537"))  # val_0 again, another class
    notes.write_text("\n".join(lines) + "\n")
    manifest = shard_folder(tmp_path / "t", tmp_path / "o")
    reasons = {s.path: s.reason for s in manifest.skipped}
    assert reasons["val/images/val_99.JPEG"] == "listed in val/val_annotations.txt but the file is missing"
    assert "2 different labels: n02124075, n01443537" in reasons["val/images/val_0.JPEG"]
    assert "val_0" not in {s.key for p in manifest.shard_paths(tmp_path / "o", "val") for s in iter_shard(p)}


def test_kaggle_image_with_two_labels_is_a_skip_naming_both(tmp_path):
    write_kaggle(tmp_path / "k")
    solution = tmp_path / "k" / "LOC_val_solution.csv"
    solution.write_text(solution.read_text() + "ILSVRC2012_val_00000001,n01484850 0 0 1 1\n")
    manifest = shard_folder(tmp_path / "k", tmp_path / "o")
    reason = {s.path: s.reason for s in manifest.skipped}["ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_00000001.JPEG"]
    assert "n01440764" in reason and "n01484850" in reason


# ---- 4. keys unique by construction; verify checks them across the dataset --------------------
def test_colliding_names_get_distinct_keys(tmp_path):
    src = tmp_path / "src"
    rng = np.random.default_rng(0)
    for name in ("a/1.jpg", "a/1.png", "a/1-dup1.jpg", "a/x y.jpg", "a/x_y.jpg", "b/0.jpg", "b/1.jpg", "b/2.jpg",
                 "b/3.jpg", "b/4.jpg"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        random_image(rng, 40, 40).save(src / name)
    manifest = shard_folder(src, tmp_path / "o", holdout=1)
    keys = [s.key for split in manifest.splits for p in manifest.shard_paths(tmp_path / "o", split)
            for s in iter_shard(p)]
    assert len(keys) == 10 and len(set(keys)) == 10
    assert {"a_1", "a_1-dup1", "a_1-dup2", "a_x_y", "a_x_y-dup1"} <= set(keys)


def test_generated_keys_never_take_a_later_files_own_key():
    # Listing order puts `1-dup1.jpg` before `1.jpg` within a folder, so only a later split (or
    # another listing order) has the file whose own key is `k-dup1` come after the collision.
    item = lambda key, source: Item(key, 0, source)
    keyed = ensure_unique_keys({"train": [item("k", "a/k.jpg"), item("k", "a/k.png")],
                                "val": [item("k-dup1", "v/k-dup1.jpg")]})
    assert [i.key for i in keyed["train"]] == ["k", "k-dup2"]
    assert [i.key for i in keyed["val"]] == ["k-dup1"]  # its own name, not `k-dup1-dup1`


def test_verify_finds_a_key_repeated_across_shards(tiny_shards, tmp_path):
    root = copy_dataset(tiny_shards, tmp_path / "d")
    manifest = read_manifest(root)
    first, second = manifest.splits["train"].shards[:2]
    taken = next(iter_shard(root / first)).key
    samples = list(iter_shard(root / second))
    (root / second).unlink()
    with AtomicShardWriter(root / second) as w:
        for i, s in enumerate(samples):
            w.write(Sample(taken if i == 0 else s.key, s.jpg, s.label, s.meta))
    d = json.loads((root / "manifest.json").read_text())
    d["splits"]["train"]["shard_bytes"][1] = (root / second).stat().st_size
    d["splits"]["train"]["shard_sha256"][1] = file_sha256(root / second)
    (root / "manifest.json").write_text(json.dumps(d))
    text = one_line_error(prep("verify", "--shards", root), 1, f"sample key '{taken}' appears in {first}")
    assert second in text


# ---- 5. stray files at the top do not change the layout ---------------------------------------
@pytest.mark.parametrize("as_zip", [False, True])
def test_stray_top_level_files_beside_the_dataset_folder(tmp_path, as_zip):
    write_class_folders(tmp_path / "tree" / "data", classes=("cat", "dog", "emu"), per_class=10)
    (tmp_path / "tree" / "README.txt").write_text("how this dataset was made")
    (tmp_path / "tree" / "LICENSE").write_text("CC-BY")
    src = tmp_path / "tree"
    if as_zip:
        src = tmp_path / "myset.zip"
        with zipfile.ZipFile(src, "w") as zf:
            for p in sorted((tmp_path / "tree").rglob("*")):
                if p.is_file():
                    zf.write(p, p.relative_to(tmp_path / "tree").as_posix())
    manifest = shard_folder(src, tmp_path / "o")
    assert [c.name for c in manifest.classes] == ["cat", "dog", "emu"]
    ignored = {e["path"]: e["reason"] for e in manifest.ignored}
    assert "README.txt" in ignored and "LICENSE" in ignored


# ---- 6. --out inside --src --------------------------------------------------------------------
def test_out_inside_src_is_refused(tmp_path, monkeypatch):
    write_class_folders(tmp_path / "src")
    one_line_error(prep("shard", "--src", tmp_path / "src", "--out", tmp_path / "src" / "shards"), 2,
                   "inside", "which this command reads")
    monkeypatch.chdir(tmp_path / "src")  # the default out, shards/<task>, is inside --src too
    one_line_error(prep("shard", "--src", "."), 2, "inside", "which this command reads")
    assert sorted(p.name for p in (tmp_path / "src").iterdir()) == ["cat", "dog"]


# ---- 7, 15. every number in range, checked before anything runs ------------------------------
BAD_TRAIN_NUMBERS = [("--learn-rate", "inf"), ("--learn-rate", "1e30"), ("--learn-rate", "nan"),
                     ("--weight-decay", "inf"), ("--pca-std", "1e300"), ("--momentum", "1.5"),
                     ("--batch-size", "0"), ("--epochs", "-1"), ("--workers", "-2"), ("--shuffle-buffer", "0"),
                     ("--eval-batch-size", "0"), ("--bias-lr-mult", "-1"), ("--dropout", "1"),
                     ("--lr-min-delta", "inf"), ("--device", "foo"), ("--seed", "-1")]


@pytest.mark.parametrize("flag,value", BAD_TRAIN_NUMBERS)
def test_train_numbers_out_of_range_refused_before_the_run(tiny_shards, tmp_path, flag, value):
    result = train_cli("--shards", tiny_shards, "--fast-dev-run", "--logdir", tmp_path / "runs", *SMALL_FLAGS, flag,
                       value)
    one_line_error(result, 2, flag)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args", [["--batch-size", "-1"], ["--batch-size", "0"], ["--views", "0"],
                                  ["--views", "5"]])
def test_predict_numbers_out_of_range(trained, tiny_shards, args):
    image = next((tiny_shards.parent / "src").rglob("*.JPEG"))
    one_line_error(train_cli("predict", "--checkpoint", trained, *args, image), 2)


@pytest.mark.parametrize("args", [["stats", "--workers", "0"], ["verify", "--workers", "0"],
                                  ["synth", "--out", "x", "--classes", "0"], ["shard", "--src", ".", "--size", "100000"],
                                  ["shard", "--src", ".", "--shard-size", "0"], ["shard", "--src", ".", "--seed", "-3"]])
def test_prep_numbers_out_of_range(tmp_path, args, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_line_error(prep(*args), 2)


# ---- 8. CIFAR pickles whose structure explodes --------------------------------------------------
def dag_pickle(levels: int) -> bytes:
    value = [1]
    for _ in range(levels):
        value = [value, value]  # each list twice in the next: 2^levels paths, `levels` objects
    return pickle.dumps({b"label_names": value}, protocol=2)


def nested_pickle(depth: int) -> bytes:
    """{b"label_names": [[[...]]]} `depth` lists deep, written opcode by opcode: EMPTY_LIST
    `depth` times, then APPEND each into the one below, SETITEM, STOP."""
    return b"\x80\x04}C\x0blabel_names" + b"]" * depth + b"a" * (depth - 1) + b"s."


@pytest.mark.parametrize("payload", ["dag", "deep"])
def test_cifar_pickle_structure_is_bounded(tmp_path, payload):
    import time
    from prep.forms.cifar import read_cifar_pickle

    path = tmp_path / "batches.meta"
    path.write_bytes(dag_pickle(60) if payload == "dag" else nested_pickle(5000))
    start = time.perf_counter()
    with pytest.raises(ValueError, match="deeper than|not a CIFAR"):
        read_cifar_pickle(path)
    assert time.perf_counter() - start < 5


# ---- 9, 10: Ctrl-C and a dead stats worker are in tests/test_prep_determinism.py -------------

# ---- 11. predict reads regular files only -----------------------------------------------------
def test_predict_names_a_fifo_and_does_not_block(trained, tiny_shards, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    shutil.copy(next((tiny_shards.parent / "src").rglob("*.JPEG")), folder / "a.JPEG")
    os.mkfifo(folder / "pipe.jpg")
    os.mkfifo(tmp_path / "given.jpg")
    result = train_cli("predict", "--checkpoint", trained, "--views", "1", folder, tmp_path / "given.jpg")
    text = one_line_error(result, 3, "a.JPEG")
    assert f"{folder / 'pipe.jpg'}: ValueError: not a regular file (a FIFO)" in text
    assert f"{tmp_path / 'given.jpg'}: ValueError: not a regular file (a FIFO)" in text


# ---- 12. damaged archive members are skips; tar.gz members obey the bomb limits ---------------
def damaged_zip(path: Path) -> dict[str, str]:
    """A class-folder zip with three good images per class and members damaged each way a
    real download can be (returns stem -> words of the expected reason)."""
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for c in ("a", "b"):
            for i in range(3):
                zf.writestr(f"set/{c}/{i}.jpg", jpeg_bytes(random_image(rng, 40, 40)))
        zf.writestr("set/a/badcrc.jpg", jpeg_bytes(random_image(rng, 40, 40)), compress_type=zipfile.ZIP_STORED)
        for name in ("badinflate", "encrypted", "deflate64", "renamed"):
            zf.writestr(f"set/a/{name}.jpg", jpeg_bytes(random_image(rng, 40, 40)))
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        local = {i.filename: i.header_offset for i in zf.infolist()}
        central_start = zf.start_dir
    central = {}
    at = data.find(b"PK\x01\x02", central_start)
    while at != -1:
        name_len = struct.unpack("<H", data[at + 28:at + 30])[0]
        central[data[at + 46:at + 46 + name_len].decode()] = at
        at = data.find(b"PK\x01\x02", at + 4)

    def data_start(name):
        head = local[name]
        name_len, extra_len = struct.unpack("<HH", data[head + 26:head + 30])
        return head + 30 + name_len + extra_len

    data[data_start("set/a/badcrc.jpg") + 100] ^= 0xFF  # stored bytes changed: the CRC no longer matches
    data[data_start("set/a/badinflate.jpg"):data_start("set/a/badinflate.jpg") + 8] = b"\xff" * 8
    data[central["set/a/encrypted.jpg"] + 8] |= 0x01  # the "encrypted" flag bit
    struct.pack_into("<H", data, central["set/a/deflate64.jpg"] + 10, 9)  # method 9: deflate64
    head = local["set/a/renamed.jpg"]
    data[head + 30:head + 30 + len("set/a/renamed.jpg")] = b"set/a/RENAMED.jpg"  # local name differs
    path.write_bytes(bytes(data))
    return {"badcrc": "Bad CRC-32", "badinflate": "error", "encrypted": "encrypted",
            "deflate64": "compression method", "renamed": "differ"}


def test_damaged_zip_members_are_skips(tmp_path):
    expected = damaged_zip(tmp_path / "set.zip")
    manifest = shard_folder(tmp_path / "set.zip", tmp_path / "o", holdout=1)
    assert manifest.splits["train"].samples + manifest.splits["holdout"].samples == 6
    reasons = {Path(s.path).stem: s.reason for s in manifest.skipped}
    for stem, words in expected.items():
        assert stem in reasons and "damaged archive member" in reasons[stem] and words in reasons[stem], \
            (stem, reasons.get(stem))


def test_tar_gz_bomb_member_is_not_read_into_memory(tmp_path):
    import io
    import subprocess
    import sys
    import tarfile

    archive = tmp_path / "myset.tar.gz"
    rng = np.random.default_rng(0)
    with tarfile.open(archive, "w:gz") as tar:
        for c in ("a", "b"):
            for i in range(3):
                data = jpeg_bytes(random_image(rng, 40, 40))
                info = tarfile.TarInfo(f"myset/{c}/{i}.jpg")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        for n in range(2):
            info = tarfile.TarInfo(f"myset/a/zeros{n}.jpg")
            info.size = 1 << 30  # 1 GiB of zeros: ~1 MB of gzip
            tar.addfile(info, _Zeros(info.size))
    code = ("import sys; from prep.detect_layout import read_source; "  # VmHWM: ru_maxrss keeps pytest's, from fork
            "s = read_source(sys.argv[1], None); "
            "print([int(l.split()[1]) // 1024 for l in open('/proc/self/status') if l.startswith('VmHWM')][0]); "
            "print(sorted(x.path for x in s.skipped))")
    out = subprocess.run([sys.executable, "-c", code, str(archive)], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[1]).stdout.splitlines()
    assert int(out[0]) < 400, f"peak RSS {out[0]} MB"  # before: 2.16 GB for the two members
    assert "myset/a/zeros0.jpg" in out[1] and "myset/a/zeros1.jpg" in out[1]


class _Zeros:
    def __init__(self, size):
        self.left = size

    def read(self, n=-1):
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return bytes(n)


# ---- 13. structurally wrong files: one line naming file and field ------------------------------
MANIFEST_EDITS = {
    "classes a dict": (lambda d: d.__setitem__("classes", {"0": "a"}), "'classes' is dict"),
    "splits a list": (lambda d: d.__setitem__("splits", [1, 2]), "'splits' is list"),
    "patch_size 100000": (lambda d: d.__setitem__("patch_size", 100000), "patch_size 100000"),
    "patch_size text": (lambda d: d.__setitem__("patch_size", "eighty"), "'patch_size' is str"),
    "a class name a number": (lambda d: d["classes"][0].__setitem__("name", 7), "classes[0].'name'"),
    "samples as text": (lambda d: d["splits"]["train"].__setitem__("shard_samples", ["8"] * 6), "shard_samples[0]"),
    "a list": (lambda d: d.clear(), "'task' missing"),
}


@pytest.mark.parametrize("fault", sorted(MANIFEST_EDITS))
def test_malformed_manifest_is_one_line(tiny_shards, tmp_path, fault):
    root = copy_dataset(tiny_shards, tmp_path / "d")
    d = json.loads((root / "manifest.json").read_text())
    edit, words = MANIFEST_EDITS[fault]
    d["format"] = d["format"]
    edit(d)
    if fault == "a list":
        d = [d]
        words = "holds a list"
    (root / "manifest.json").write_text(json.dumps(d))
    for result in (train_cli("--shards", root, "--fast-dev-run", "--logdir", tmp_path / "runs", *SMALL_FLAGS),
                   prep("stats", "--shards", root), prep("verify", "--shards", root)):
        one_line_error(result, 2, "manifest.json", words)  # one fault, one exit status in every command (issue 29)


MEAN_IMAGES = {
    "structured dtype": lambda p: np.save(p, np.zeros((32, 32, 3), dtype=[("a", "<f8")])),
    "strings": lambda p: np.save(p, np.array([["x"] * 3] * 2)),
    "10^10 values claimed": lambda p: p.write_bytes(_npy_header("<f8", (100000, 100000))),
    "float32": lambda p: np.save(p, np.zeros((32, 32, 3), np.float32)),
    "cut short": lambda p: p.write_bytes(p.read_bytes()[:-100]),
}


def _npy_header(dtype: str, shape: tuple) -> bytes:
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


@pytest.mark.parametrize("fault", sorted(MEAN_IMAGES))
def test_malformed_mean_image_is_refused_without_allocating(tiny_shards, tmp_path, fault):
    root = copy_dataset(tiny_shards, tmp_path / "d")
    MEAN_IMAGES[fault](root / "mean_image.npy")
    result = train_cli("--shards", root, "--fast-dev-run", "--logdir", tmp_path / "runs", *SMALL_FLAGS)
    one_line_error(result, 2, "mean_image.npy")
    one_line_error(prep("verify", "--shards", root), 1, "mean_image.npy")


def crafted(state: dict, change) -> dict:
    state = {**state, "model": dict(state["model"]), "normalization": dict(state["normalization"]),
             "architecture": dict(state["architecture"]), "classes": [list(c) for c in state["classes"]]}
    change(state)
    return state


CHECKPOINT_EDITS = {
    "architecture changed": (lambda s: s["architecture"].__setitem__("towers", "one"), "model's tensors"),
    "crop changed": (lambda s: s["architecture"].__setitem__("crop", 160), "normalization"),
    "architecture unknown value": (lambda s: s["architecture"].__setitem__("lrn", "fancy"), "architecture"),
    "empty normalisation": (lambda s: s.__setitem__("normalization", {}), "normalization"),
    "an extra class": (lambda s: (s["classes"].append([3, None, "extra"]), s.__setitem__("num_classes", 4)),
                       "model's tensors"),
    "patch_size eighty": (lambda s: s.__setitem__("patch_size", "eighty"), "patch_size"),
    "patch_size 60000": (lambda s: s.__setitem__("patch_size", 60000), "patch_size 60000"),
    "no model": (lambda s: s.pop("model"), "'model'"),
    "nan weights": (lambda s: s["model"].__setitem__("fc8.bias", torch.full_like(s["model"]["fc8.bias"], np.nan)),
                    "non-finite"),
    "config epochs text": (lambda s: s.__setitem__("config", {**s["config"], "epochs": "ninety"}), "config"),
    "classes out of order": (lambda s: s["classes"].reverse(), "classes[0]"),
    "wall_s text": (lambda s: s.__setitem__("metrics_row", {**s["metrics_row"], "wall_s": "ten"}), "wall_s"),
    "wall_s nan": (lambda s: s.__setitem__("metrics_row", {**s["metrics_row"], "wall_s": float("nan")}), "wall_s"),
}


@pytest.mark.parametrize("fault", sorted(CHECKPOINT_EDITS))
def test_crafted_checkpoints_refused_in_evaluate_and_predict(trained, tiny_shards, tmp_path, fault):
    edit, words = CHECKPOINT_EDITS[fault]
    state = crafted(torch.load(trained, weights_only=True), edit)
    path = tmp_path / "crafted.pt"
    torch.save(state, path)
    image = next((tiny_shards.parent / "src").rglob("*.JPEG"))
    one_line_error(train_cli("predict", "--checkpoint", path, image), 2, "crafted.pt", words)
    one_line_error(train_cli("evaluate", "--checkpoint", path, "--shards", tiny_shards, "--out", tmp_path / "e",
                             "--device", "cpu", "--workers", "0", "--no-figures"), 2, "crafted.pt", words)


# ---- 14. the environment fails: disk full, read-only, a file where a folder goes --------------
def no_space(after: int):
    """A write that fails with ENOSPC after `after` successful calls."""
    calls = {"n": 0}

    def fail_later(original):
        def write(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] > after:
                raise OSError(errno.ENOSPC, "No space left on device", "/fake/disk")
            return original(*args, **kwargs)
        return write
    return fail_later


def test_disk_full_while_sharding_then_resume(tmp_path, monkeypatch):
    import shared.shards

    write_class_folders(tmp_path / "src", per_class=12)
    clean = tmp_path / "clean"
    prep("shard", "--src", tmp_path / "src", "--out", clean, "--shard-size", "4", "--workers", "1", "--allow-skips")
    out = tmp_path / "o"
    monkeypatch.setattr(shared.shards.AtomicShardWriter, "_add", no_space(20)(shared.shards.AtomicShardWriter._add))
    result = prep("shard", "--src", tmp_path / "src", "--out", out, "--shard-size", "4", "--workers", "1")
    one_line_error(result, 1, "No space left on device", "run the same command again")
    assert not list(out.glob("*.tmp")) and not (out / "manifest.json").exists()
    monkeypatch.undo()
    assert prep("shard", "--src", tmp_path / "src", "--out", out, "--shard-size", "4", "--workers", "1",
                "--allow-skips").exit_code == 0
    assert {p.name: p.read_bytes() for p in out.glob("*.tar")} == {p.name: p.read_bytes() for p in clean.glob("*.tar")}


def test_disk_full_while_writing_stats_leaves_no_partial_file(tiny_shards, tmp_path, monkeypatch):
    root = copy_dataset(tiny_shards, tmp_path / "d")
    (root / "stats.json").unlink()
    (root / "mean_image.npy").unlink()

    def half_then_full(f, array, allow_pickle=False):
        f.write(b"\x93NUMPY" + bytes(1000))
        raise OSError(errno.ENOSPC, "No space left on device", str(root / "mean_image.npy.tmp"))
    monkeypatch.setattr(np, "save", half_then_full)
    one_line_error(prep("stats", "--shards", root, "--workers", "1"), 1, "No space left on device")
    assert not list(root.glob("*.tmp")) and not (root / "stats.json").exists() \
        and not (root / "mean_image.npy").exists()


def test_disk_full_at_a_checkpoint_advises_a_file_that_exists(tiny_shards, tmp_path, monkeypatch):
    import train.checkpoint

    saves = no_space(1)  # epoch 0's save succeeds (best.pt, then a copy), epoch 1's fails
    monkeypatch.setattr(train.checkpoint.torch, "save", saves(torch.save))
    result = train_cli("--shards", tiny_shards, "--epochs", "2", "--steps-per-epoch", "1", "--logdir", tmp_path / "r",
                       "--run-name", "x", *SMALL_FLAGS)
    text = one_line_error(result, 1, "No space left on device")
    run = tmp_path / "r" / "x"
    assert not list(run.glob("*.tmp"))
    if (run / "last.pt").is_file():
        assert f"--resume {run / 'last.pt'}" in text
    else:
        assert "no epoch was completed" in text


def test_read_only_output_is_one_line(tmp_path, monkeypatch):
    write_class_folders(tmp_path / "src")
    real_open = os.open

    def read_only(path, *args, **kwargs):
        if str(path).endswith(".lock"):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr(os, "open", read_only)
    one_line_error(prep("shard", "--src", tmp_path / "src", "--out", tmp_path / "o", "--workers", "1"), 1,
                   "Read-only file system", ".lock")


def test_logdir_a_file_and_evaluate_out_a_file(tiny_shards, trained, tmp_path):
    (tmp_path / "afile").write_text("x")
    one_line_error(train_cli("--shards", tiny_shards, "--fast-dev-run", "--logdir", tmp_path / "afile", *SMALL_FLAGS), 2,
                   "a file, not a folder")
    one_line_error(train_cli("evaluate", "--checkpoint", trained, "--shards", tiny_shards, "--out",
                             tmp_path / "afile", "--device", "cpu"), 2, "a file, not a folder")


# ---- 16. shards that change under a run ---------------------------------------------------------
def cut_mid_member(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2 + 100])


def test_train_shard_cut_during_an_epoch_names_it(tiny_shards, tmp_path, monkeypatch):
    import train.dataset_folder

    root = copy_dataset(tiny_shards, tmp_path / "d")
    real = train.dataset_folder.check_shards
    monkeypatch.setattr(train.dataset_folder, "check_shards", lambda *a, **k: None)  # as if cut after the start-up check
    for name in read_manifest(root).splits["train"].shards:
        cut_mid_member(root / name)
    result = train_cli("--shards", root, "--fast-dev-run", "--logdir", tmp_path / "runs", *SMALL_FLAGS)
    text = one_line_error(result, 2, "train-0000", "alexnet-prep verify")
    assert "Original Traceback" not in text and "DataLoader worker" not in text
    monkeypatch.setattr(train.dataset_folder, "check_shards", real)


def test_stats_on_a_cut_or_replaced_shard_names_it(tiny_shards, tmp_path):
    root = copy_dataset(tiny_shards, tmp_path / "d")
    cut_mid_member(root / "train-000001.tar")
    one_line_error(prep("stats", "--shards", root, "--workers", "1"), 2, "train-000001.tar", "alexnet-prep verify")
    root = copy_dataset(tiny_shards, tmp_path / "e")
    size = (root / "train-000002.tar").stat().st_size
    (root / "train-000002.tar").write_bytes(bytes(range(256)) * (size // 256) + bytes(size % 256))
    one_line_error(prep("stats", "--shards", root, "--workers", "2"), 2, "train-000002.tar", "alexnet-prep verify")


def test_holdout_shard_replaced_during_training_is_caught_before_evaluating(tiny_shards, tmp_path, monkeypatch):
    import train.loop

    root = copy_dataset(tiny_shards, tmp_path / "d")
    real = train.loop.train_one_epoch
    holdout = root / read_manifest(root).splits["holdout"].shards[0]

    def then_replace(*args, **kwargs):
        out = real(*args, **kwargs)
        samples = list(iter_shard(holdout))[:-1]
        holdout.unlink()
        with AtomicShardWriter(holdout) as w:
            for s in samples:
                w.write(s)
        return out
    monkeypatch.setattr(train.loop, "train_one_epoch", then_replace)
    result = train_cli("--shards", root, "--epochs", "1", "--steps-per-epoch", "1", "--logdir", tmp_path / "runs",
                       *SMALL_FLAGS)
    one_line_error(result, 2, holdout.name, "manifest says")


# ---- 17. a file name that is not UTF-8 ----------------------------------------------------------
def test_non_utf8_file_name_is_a_named_skip(tmp_path):
    write_class_folders(tmp_path / "src", per_class=10)
    with open(os.fsencode(tmp_path / "src" / "cat") + b"/\xff.jpg", "wb") as f:
        f.write(jpeg_bytes(random_image(np.random.default_rng(0), 40, 40)))
    result = prep("shard", "--src", tmp_path / "src", "--out", tmp_path / "o", "--workers", "1")
    one_line_error(result, 3, "skipped")
    manifest = read_manifest(tmp_path / "o")
    assert [(s.path, s.reason) for s in manifest.skipped] == [("cat/\\xff.jpg", "its name is not valid UTF-8 "
                                                                                "(rename it to read it)")]


# ---- no command prints a Python traceback for an input or environment fault ------------------
@pytest.fixture(scope="module")
def fault_table(tiny_shards, trained, tmp_path_factory) -> list[tuple[str, list[str], int]]:
    """(name, command, documented exit status) for real subprocesses."""
    base = tmp_path_factory.mktemp("faults")
    (base / "notes.txt").write_text("x")
    (base / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip")
    mnist = base / "mnist"
    data = write_mnist(mnist)
    (mnist / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(idx(data["train"][0].reshape(30, -1))))
    cut = copy_dataset(tiny_shards, base / "cut")
    cut_mid_member(cut / "train-000000.tar")
    bad_manifest = copy_dataset(tiny_shards, base / "badmanifest")
    d = json.loads((bad_manifest / "manifest.json").read_text())
    d["splits"] = []
    (bad_manifest / "manifest.json").write_text(json.dumps(d))
    state = torch.load(trained, weights_only=True)
    torch.save({**state, "patch_size": 60000}, base / "huge.pt")
    (base / "garbage.pt").write_bytes(b"\x00garbage" * 100)
    os.mkfifo(base / "fifo.jpg")
    write_class_folders(base / "src")
    prep_cmd, train_cmd = ["-m", "prep"], ["-m", "train.cli"]
    return [
        ("shard: no such --src", prep_cmd + ["shard", "--src", str(base / "nope")], 2),
        ("shard: --src a text file", prep_cmd + ["shard", "--src", str(base / "notes.txt")], 2),
        ("shard: a broken zip", prep_cmd + ["shard", "--src", str(base / "broken.zip")], 2),
        ("shard: 2-D MNIST images", prep_cmd + ["shard", "--src", str(mnist), "--out", str(base / "o1")], 2),
        ("shard: --out inside --src", prep_cmd + ["shard", "--src", str(base / "src"), "--out",
                                                  str(base / "src" / "out")], 2),
        ("shard: --size 100000", prep_cmd + ["shard", "--src", str(base / "src"), "--size", "100000"], 2),
        ("stats: no dataset", prep_cmd + ["stats", "--shards", str(base / "nope")], 2),
        ("stats: a cut shard", prep_cmd + ["stats", "--shards", str(cut), "--workers", "1"], 2),
        ("verify: a malformed manifest", prep_cmd + ["verify", "--shards", str(bad_manifest)], 2),
        ("synth: --classes 99", prep_cmd + ["synth", "--out", str(base / "s"), "--classes", "99"], 2),
        ("train: no dataset", train_cmd + ["--shards", str(base / "nope"), *SMALL_FLAGS], 2),
        ("train: a malformed manifest", train_cmd + ["--shards", str(bad_manifest), *SMALL_FLAGS], 2),
        ("train: --learn-rate inf", train_cmd + ["--shards", str(tiny_shards), "--learn-rate", "inf", *SMALL_FLAGS], 2),
        ("train: --device foo", train_cmd + ["--shards", str(tiny_shards), *SMALL_FLAGS, "--device", "foo"], 2),
        ("train: --logdir a file", train_cmd + ["--shards", str(tiny_shards), "--fast-dev-run", "--logdir",
                                                str(base / "notes.txt"), *SMALL_FLAGS], 2),
        ("train: --resume a missing file", train_cmd + ["--shards", str(tiny_shards), "--resume",
                                                        str(base / "nope.pt"), *SMALL_FLAGS], 2),
        ("evaluate: a garbage checkpoint", train_cmd + ["evaluate", "--checkpoint", str(base / "garbage.pt"),
                                                        "--shards", str(tiny_shards)], 2),
        ("predict: patch size 60000", train_cmd + ["predict", "--checkpoint", str(base / "huge.pt"),
                                                   str(base / "notes.txt")], 2),
        ("predict: a FIFO", train_cmd + ["predict", "--checkpoint", str(trained), "--views", "1",
                                         str(base / "fifo.jpg")], 3),
        ("predict: --batch-size -1", train_cmd + ["predict", "--checkpoint", str(trained), "--batch-size", "-1",
                                                  str(base / "notes.txt")], 2),
        ("table: a folder without results", train_cmd + ["table", str(base)], 2),
    ]


@pytest.mark.slow
def test_no_fault_prints_a_traceback(fault_table):
    import subprocess
    import sys

    from concurrent.futures import ThreadPoolExecutor

    def run(args):
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120,
                              cwd=Path(__file__).parents[1], stdin=subprocess.DEVNULL)

    # Two at a time: each entry is its own process and reads its own inputs; most of each one's
    # time is Python and torch starting (the table took 51 s one by one on 2 cores).
    with ThreadPoolExecutor(2) as pool:
        procs = list(pool.map(run, [args for _, args, _ in fault_table]))
    failures = []
    for (name, args, status), proc in zip(fault_table, procs):
        output = proc.stdout + proc.stderr
        said = "error" in output.lower() or "problems" in output  # verify lists problems
        if "Traceback" in output or proc.returncode != status or not said:
            failures.append(f"{name}: exit {proc.returncode} (documented {status}): {output[-600:]}")
    assert not failures, "\n\n".join(failures)
