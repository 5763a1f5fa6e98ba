"""Issue 21's round of hostile inputs: one test per numbered point, each failing on the code
before the fix. Generated data only; every CLI outcome checked for its exit status and for the
absence of a Python traceback. Its environment faults (points 14 and 16) are in
tests/test_environment_faults.py, the table of faults run as real processes in
tests/test_no_traceback.py."""
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

from command_helpers import one_line_error, prep, train_cli
from make_fixtures import (idx_bytes, jpeg_bytes, random_image, write_class_folders, write_kaggle, write_mnist,
                           write_tiny_imagenet)
from prep.config import PrepConfig
from prep.detect_layout import read_source
from prep.sources import Item, ensure_unique_keys
from prep.write_shards import write_dataset
from shared.manifest import read_manifest
from shared.shards import AtomicShardWriter, Sample, file_sha256, iter_shard
from small_run import SMALL_FLAGS


def shard_folder(src: Path, out: Path, **kw):
    cfg = PrepConfig(src=src, out=out, allow_skips=True, workers=1, **kw)
    return write_dataset(read_source(src, cfg.task), cfg, out)


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
IDX_FAULTS = {
    "images 2-D (N, 784)": (lambda im, lb: (idx_bytes(im.reshape(len(im), -1)), idx_bytes(lb)), "2-D array"),
    "images 4-D": (lambda im, lb: (idx_bytes(im[:, None]), idx_bytes(lb)), "4-D array"),
    "labels file where the images belong": (lambda im, lb: (idx_bytes(lb), idx_bytes(lb)), "1-D array (labels)"),
    "header cut short": (lambda im, lb: (idx_bytes(im)[:9], idx_bytes(lb)), "header cut short"),
    "zero images": (lambda im, lb: (idx_bytes(im[:0]), idx_bytes(lb[:0])), "expected"),
    "data cut short": (lambda im, lb: (idx_bytes(im)[:-5], idx_bytes(lb)), "bytes, expected"),
    "int32 data": (lambda im, lb: (idx_bytes(im, 0x0C), idx_bytes(lb)), "data type 0x0c"),
    "counts differ": (lambda im, lb: (idx_bytes(im), idx_bytes(lb[:-1])), "30 images but"),
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
    root = shutil.copytree(tiny_shards, tmp_path / "d")
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
    root = shutil.copytree(tiny_shards, tmp_path / "d")
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
    root = shutil.copytree(tiny_shards, tmp_path / "d")
    MEAN_IMAGES[fault](root / "mean_image.npy")
    result = train_cli("--shards", root, "--fast-dev-run", "--logdir", tmp_path / "runs", *SMALL_FLAGS)
    one_line_error(result, 2, "mean_image.npy")
    one_line_error(prep("verify", "--shards", root), 1, "mean_image.npy")


def crafted(state: dict, change) -> dict:
    """A checkpoint edited by someone who also recomputes its digest: the fields' own checks must
    refuse it (the digest catches damage, not intent)."""
    from train.checkpoint import content_digest

    state = {**state, "model": dict(state["model"]), "normalization": dict(state["normalization"]),
             "architecture": dict(state["architecture"]), "classes": [list(c) for c in state["classes"]]}
    change(state)
    state["digest"] = content_digest(state)
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


# ---- 14, 16: the environment fails, shards change under a run: tests/test_environment_faults.py

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
