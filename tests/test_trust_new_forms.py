"""Issue 30's round of hostile inputs, aimed at the forms added since issue 21 (image-net.org's
archives and devkit, torchvision's folders, Hugging Face's parts, ImageNetV2, ReaL,
--predictions, --part merges, `table`): one section per numbered point, each test failing on
the code before the fix. Generated data only; every CLI outcome is checked for its exit
status and for the absence of a Python traceback (command_helpers.one_line_error)."""
import gzip
import hashlib
import json
import os
import shutil
import stat
import tarfile
from pathlib import Path

import numpy as np
import pytest

from command_helpers import one_line_error, prep, train_cli
from imagenet_forms import (make_images, table, val_name, write_devkit, write_huggingface, write_imagenetv2,
                            write_kaggle, write_official, write_real_json, write_reference_folders, write_tar)
from make_fixtures import random_image, write_class_folders, write_mnist
from prep.config import PrepConfig
from prep.detect_layout import read_source
from prep.write_shards import write_dataset
from shared.manifest import read_manifest
from shared.shards import iter_shard
from small_run import SMALL_FLAGS


def shard(src: Path, out: Path, **kw):
    cfg = PrepConfig(src=src, out=out, allow_skips=True, workers=1, **kw)
    return write_dataset(read_source(src, cfg.task), cfg, out)


def samples(out: Path) -> dict[str, list]:
    manifest = read_manifest(out)
    return {split: [(s.key, s.label) for p in manifest.shard_paths(out, split) for s in iter_shard(p)]
            for split in manifest.splits}


def fingerprint(path: Path) -> tuple:
    """What a file is now: its kind and, for a regular file, its bytes' sha256."""
    mode = os.stat(path).st_mode
    return (stat.S_IFMT(mode), hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(mode) else None)


# ---- 1. nothing an output flag names is ever an input or a non-file -----------------------------
def victims(trained: Path, shards: Path, base: Path) -> dict[str, Path]:
    base.mkdir(exist_ok=True)
    real = base / "real.json"
    real.write_text("[]")
    (base / "link.pt").unlink(missing_ok=True)
    (base / "link.pt").symlink_to(trained)
    for name, target in (("hard.pt", trained), ("manifest-link.json", shards / "manifest.json"),
                         ("real-link.json", real)):
        if not (base / name).exists():
            os.link(target, base / name)
    if not (base / "fifo").exists():
        os.mkfifo(base / "fifo")
    return {"checkpoint": trained, "last.pt beside it": trained.parent / "last.pt", "a symlink to it":
            base / "link.pt", "a hard link to it": base / "hard.pt", "the ReaL file": real,
            "the manifest": shards / "manifest.json", "a shard": shards / "train-000000.tar", "a new name in the "
            "dataset folder": shards / "predictions.jsonl", "a device": Path("/dev/null"), "a FIFO": base / "fifo",
            "a folder": base, "a hard link to the manifest, outside the dataset": base / "manifest-link.json",
            "a hard link to the ReaL file": base / "real-link.json"}


@pytest.mark.parametrize("victim", ["checkpoint", "last.pt beside it", "a symlink to it", "a hard link to it",
                                    "the ReaL file", "the manifest", "a shard", "a new name in the dataset folder",
                                    "a device", "a FIFO", "a folder",
                                    "a hard link to the manifest, outside the dataset",
                                    "a hard link to the ReaL file"])
def test_predictions_never_replace_an_input_or_a_non_file(trained, tiny_shards, tmp_path, victim):
    target = victims(trained, tiny_shards, tmp_path / "v")[victim]
    existed = target.exists()
    before = fingerprint(target) if existed and not stat.S_ISFIFO(os.stat(target).st_mode) else None
    extra = ["--real-labels", tmp_path / "v" / "real.json"] if "ReaL" in victim else []
    result = train_cli("evaluate", "--checkpoint", trained, "--shards", tiny_shards, "--no-figures", "--device",
                       "cpu", *extra, "--predictions", target)
    one_line_error(result, 2, "--predictions")
    assert target.exists() == existed
    if before is not None:
        assert fingerprint(target) == before


def test_predictions_may_be_a_new_file_beside_the_run_or_replace_an_old_one(trained, tiny_shards, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained.parent, run)
    target = run / "predictions.jsonl"
    for attempt in range(2):  # a new name, then the same file again
        result = train_cli("evaluate", "--checkpoint", run / "best.pt", "--shards", tiny_shards, "--no-figures",
                           "--device", "cpu", "--predictions", target)
        assert result.exit_code == 0, result.output
        lines = target.read_text().splitlines()
        assert len(lines) == read_manifest(tiny_shards).splits["val"].samples


def test_every_output_folder_flag_refuses_an_input_folder(trained, tiny_shards, tmp_path):
    inside = tiny_shards / "out"
    one_line_error(train_cli("evaluate", "--checkpoint", trained, "--shards", tiny_shards, "--out", inside), 2,
                   "--out", "which this command reads")
    one_line_error(train_cli("--shards", tiny_shards, "--fast-dev-run", "--logdir", inside, *SMALL_FLAGS), 2, "--logdir")
    one_line_error(train_cli("figure1", "--shards", tiny_shards, "--out", inside, "--quick"), 2, "--out")
    assert not inside.exists()
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    write_class_folders(tmp_path / "src", per_class=6)
    one_line_error(prep("shard", "--src", tmp_path / "src", "--out", notes), 2, "--out", "not a folder")
    one_line_error(prep("synth", "--out", notes), 2, "--out", "not a folder")
    one_line_error(train_cli("evaluate", "--checkpoint", trained, "--shards", tiny_shards, "--out", notes), 2,
                   "--out")
    assert notes.read_text() == "keep me"


# ---- 2. a dataset is one dataset: --part merges check who they merge ------------------------------
def parts_src(root: Path, per_class: int = 8) -> Path:
    write_class_folders(root, classes=("cat", "dog", "emu"), per_class=per_class)
    return root


def merge_part(src: Path, out: Path, other_src: Path, other: list[str], tmp: Path) -> None:
    """Part 1/2 as asked, part 2/2 made with `other` flags (or from `other_src`), its shards and
    records copied in as a user merging parts would (the plan file aside)."""
    assert prep("shard", "--src", src, "--out", out, "--part", "1/2", "--shard-size", "4", "--workers",
                "1").exit_code == 0
    foreign = tmp / "foreign"
    result = prep("shard", "--src", other_src, "--out", foreign, "--part", "2/2", "--shard-size", "4", "--workers",
                  "1", *other)
    assert result.exit_code == 0, result.output
    for path in foreign.glob("*.tar"):
        shutil.copy(path, out / path.name)
    for path in (foreign / ".shard-info").glob("*.tar.json"):
        shutil.copy(path, out / ".shard-info" / path.name)


@pytest.mark.parametrize("other", [["--seed", "1"], ["--size", "48"], ["--quality", "60"], ["--resample", "lanczos"],
                                   "another source"])
def test_a_merge_refuses_a_part_made_otherwise(tmp_path, other):
    src = parts_src(tmp_path / "src")
    other_src = parts_src(tmp_path / "src2", per_class=9) if other == "another source" else src
    out = tmp_path / "out"
    merge_part(src, out, other_src, [] if other == "another source" else other, tmp_path)
    text = one_line_error(prep("shard", "--src", src, "--out", out, "--shard-size", "4", "--workers", "1"), 2,
                          "made from other inputs or options")
    assert (other[0] if other != "another source" else "the source's files") in text
    assert not (out / "manifest.json").exists()


def test_verify_checks_each_patch_and_each_shards_provenance(tmp_path):
    src = parts_src(tmp_path / "src")
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    shard(src, a, size=32, shard_size=4)
    shard(src, b, size=48, shard_size=4)
    shard(src, c, size=32, shard_size=4, seed=1)
    assert prep("verify", "--shards", a).exit_code == 0
    for donor, words in ((b, "48x48 px"), (c, "not the ones the manifest records")):
        bad = tmp_path / f"bad-{donor.name}"
        shutil.copytree(a, bad)
        shutil.copy(donor / "train-000000.tar", bad / "train-000000.tar")
        d = json.loads((bad / "manifest.json").read_text())  # as a merge of mismatched parts wrote it
        theirs = json.loads((donor / "manifest.json").read_text())["splits"]["train"]
        for key in ("shard_samples", "shard_bytes", "shard_sha256"):
            d["splits"]["train"][key][0] = theirs[key][0]
        (bad / "manifest.json").write_text(json.dumps(d))
        one_line_error(prep("verify", "--shards", bad), 1, "train-000000.tar", words)


# ---- 3. ImageNet is ILSVRC's 1000 classes in sorted-wnid order --------------------------------------
@pytest.fixture(scope="module")
def images():
    return make_images()


def test_a_reversed_kaggle_mapping_is_read_in_ilsvrc_order_with_a_warning(images, tmp_path, capsys):
    good = write_kaggle(tmp_path / "good", images)
    rev = write_kaggle(tmp_path / "rev", images)
    mapping = rev / "LOC_synset_mapping.txt"
    mapping.write_text("\n".join(reversed(mapping.read_text().splitlines())) + "\n")
    shard(good, tmp_path / "o-good")
    capsys.readouterr()
    manifest = shard(rev, tmp_path / "o-rev")
    assert "LOC_synset_mapping.txt" in capsys.readouterr().err
    assert manifest.task == "imagenet"
    assert manifest.class_table() == read_manifest(tmp_path / "o-good").class_table()
    assert samples(tmp_path / "o-rev") == samples(tmp_path / "o-good")


def test_a_table_with_a_wnid_not_ilsvrcs_is_refused(images, tmp_path):
    kaggle = write_kaggle(tmp_path / "k", images)
    lines = (kaggle / "LOC_synset_mapping.txt").read_text().splitlines()
    (kaggle / "LOC_synset_mapping.txt").write_text("\n".join(["n99999999 stranger"] + lines[1:]) + "\n")
    one_line_error(prep("shard", "--src", kaggle, "--out", tmp_path / "o"), 2, "LOC_synset_mapping.txt",
                   "n99999999", "n01440764")
    official = write_official(tmp_path / "a", images)
    devkit_with_stranger(official / "ILSVRC2012_devkit_t12.tar.gz", images)
    one_line_error(prep("shard", "--src", official, "--out", tmp_path / "o2"), 2, "ILSVRC2012_devkit_t12.tar.gz",
                   "n99999999")
    assert not (tmp_path / "o").exists() or not (tmp_path / "o" / "manifest.json").exists()


def devkit_with_stranger(path: Path, images: dict) -> None:
    import imagenet_forms

    real = imagenet_forms.table
    imagenet_forms.table = lambda: [("n99999999", "stranger")] + real()[1:]
    try:
        write_devkit(path, {"train": images["train"], "val": [v for v in images["val"] if v[1] != real()[0][0]]})
    finally:
        imagenet_forms.table = real


def test_real_and_imagenetv2_scoring_refuse_a_table_not_ilsvrcs(trained, tiny_shards, tmp_path):
    real = tmp_path / "real.json"
    write_real_json(real, {})
    one_line_error(train_cli("evaluate", "--checkpoint", trained, "--shards", tiny_shards, "--real-labels", real,
                             "--no-figures", "--device", "cpu"), 2, "ILSVRC-2012", "manifest.json")
    v2 = tmp_path / "v2"
    write_imagenetv2(v2, list(range(1000)), per_class=1)
    out = tmp_path / "v2-shards"
    shard(v2 / "imagenetv2-matched-frequency-format-val", out)
    d = json.loads((out / "manifest.json").read_text())
    names = [c["wnid"] for c in d["classes"]]
    for c, wnid in zip(d["classes"], reversed(names)):  # a crafted manifest: the table permuted
        c["wnid"] = wnid
    (out / "manifest.json").write_text(json.dumps(d))
    one_line_error(train_cli("evaluate", "--checkpoint", trained, "--shards", out, "--no-figures", "--device",
                             "cpu"), 2, "ILSVRC-2012", "ImageNetV2")


# ---- 4. detection never falls to a weaker form silently --------------------------------------------
def test_a_stray_folder_in_imagenet_train_is_refused_not_read_as_class_folders(images, tmp_path):
    src = write_reference_folders(tmp_path / "r", images, devkit=False)
    (src / "train" / "junk").mkdir()
    (src / "train" / "junk" / "x.JPEG").write_bytes(images["train"][0][2])
    one_line_error(prep("shard", "--src", src, "--out", tmp_path / "o"), 2, "junk", "--form folder")
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def v2_labels(tmp_path_factory):
    base = tmp_path_factory.mktemp("v2")
    labels = write_imagenetv2(base, list(range(1000)), per_class=1)
    return base / "imagenetv2-matched-frequency-format-val", labels


@pytest.mark.parametrize("how", ["renamed", "by its parent"])
def test_imagenetv2_is_recognised_by_its_content(v2_labels, tmp_path, how):
    folder, labels = v2_labels
    if how == "renamed":
        src = tmp_path / "my-copy"
        shutil.copytree(folder, src)
    else:
        src = tmp_path / "parent"
        shutil.copytree(folder, src / folder.name)
    source = read_source(src, None)
    assert source.layout == "imagenetv2"
    assert {it.key: it.label for it in source.items["val"]} == labels


def test_a_damaged_imagenetv2_copy_is_refused_naming_what_differs(v2_labels, tmp_path):
    folder, _ = v2_labels
    src = tmp_path / "copy"
    shutil.copytree(folder, src)
    shutil.rmtree(src / "417")
    one_line_error(prep("shard", "--src", src, "--out", tmp_path / "o"), 2, "417")


def test_a_renamed_part_of_imagenetv2_is_never_read_as_text_sorted_class_folders(tmp_path):
    """Some of ImageNetV2's class folders in a renamed folder were read as class folders sorted as
    text ("10" before "2"): every label wrong, no word. Now refused, and either reading is a flag."""
    labels = write_imagenetv2(tmp_path, [0, 2, 10, 417], per_class=1)
    src = tmp_path / "my-v2-part"
    (tmp_path / "imagenetv2-matched-frequency-format-val").rename(src)
    one_line_error(prep("shard", "--src", src, "--out", tmp_path / "o"), 2, "4 of ImageNetV2's 1,000",
                   "--form imagenetv2")
    source = read_source(src, "imagenetv2")
    assert {it.key: it.label for it in source.items["val"]} == labels  # folder k = class k
    assert "4 of its 1,000 class folders" in source.reading
    as_folders = read_source(src, "folder")
    assert [c.name for c in as_folders.classes] == ["0", "10", "2", "417"]  # asked for: text order


def test_class_folders_named_by_numbers_that_text_order_shuffles_need_the_flag(tmp_path):
    write_class_folders(tmp_path / "n", classes=tuple(str(k) for k in range(12)), per_class=1)
    one_line_error(prep("shard", "--src", tmp_path / "n", "--out", tmp_path / "o"), 2, "'11' before '2'",
                   "--form folder")
    assert [c.name for c in read_source(tmp_path / "n", "folder").classes][:3] == ["0", "1", "10"]
    write_class_folders(tmp_path / "digits", classes=tuple(str(k) for k in range(10)), per_class=1)
    assert [c.name for c in read_source(tmp_path / "digits", None).classes] == [str(k) for k in range(10)]


# ---- 5. duplicates and names inside archives --------------------------------------------------------
def test_a_class_tar_listed_twice_is_ambiguous_not_read_twice(images, tmp_path):
    src = write_official(tmp_path / "a", images)
    wnid = images["train"][0][0]
    ours = [(f"{stem}.JPEG", data) for w, stem, data in images["train"] if w == wnid]
    with tarfile.open(src / "ILSVRC2012_img_train.tar", "a") as tar:  # the same class tar again
        from imagenet_forms import _tar_bytes
        data = _tar_bytes(ours)
        info = tarfile.TarInfo(f"{table()[5][0]}.tar")  # a class with no tar of its own, this class's images
        info.size = len(data)
        import io
        tar.addfile(info, io.BytesIO(data))
    manifest = shard(src, tmp_path / "o")
    keys = [k for split in samples(tmp_path / "o").values() for k, _ in split]
    assert not [k for k in keys if "dup" in k]
    assert not {Path(name).stem for name, _ in ours} & set(keys)
    ambiguous = [s for s in manifest.skipped if "ambiguous" in s.reason]
    assert len(ambiguous) == 2 * len(ours)


def test_a_class_tar_named_twice_is_ambiguous_as_a_whole_not_the_union_of_its_copies(images, tmp_path):
    """Two different `<wnid>.tar` members under one name: which is the class? Neither copy is read
    (the union of both used to become the class), as every other repeated name in an archive."""
    import io

    from imagenet_forms import _tar_bytes

    src = write_official(tmp_path / "a", images)
    wnid = images["train"][0][0]
    extra = [(f"{wnid}_9999.JPEG", images["train"][0][2])]
    with tarfile.open(src / "ILSVRC2012_img_train.tar", "a") as tar:
        data = _tar_bytes(extra)
        info = tarfile.TarInfo(f"{wnid}.tar")  # the same class tar's name, other images
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    manifest = shard(src, tmp_path / "o")
    keys = {k for split in samples(tmp_path / "o").values() for k, _ in split}
    ours = {stem for w, stem, _ in images["train"] if w == wnid}
    assert not (ours | {f"{wnid}_9999"}) & keys  # neither copy
    reasons = {s.path: s.reason for s in manifest.skipped}
    assert "appears 2 times" in reasons[f"ILSVRC2012_img_train.tar/{wnid}.tar"], reasons
    assert len(keys) == len(images["train"]) + len(images["val"]) - len(ours)


def test_hugging_face_duplicates_and_val_named_train_files(images, tmp_path):
    src = write_huggingface(tmp_path / "hf", images)
    w, stem, data = images["train"][0]
    n, vw, vdata = images["val"][0]
    write_tar(src / "train_images_2.tar.gz", [(f"{stem}_{w}.JPEG", data),  # also in part 0
                                              (f"{val_name(n)}_{vw}.JPEG", vdata)], gz=True)
    manifest = shard(src, tmp_path / "o")
    got = samples(tmp_path / "o")
    keys = [k for split in got.values() for k, _ in split]
    assert stem not in keys and not [k for k in keys if "dup" in k]
    assert val_name(n) in [k for k, _ in got["val"]]
    reasons = {(s.path, s.reason) for s in manifest.skipped}
    assert any("train_images_2" in p and "val image" in r for p, r in reasons)
    assert sum("ambiguous" in r for _, r in reasons) == 2


def test_an_absolute_member_inside_a_class_tar_is_never_read(images, tmp_path):
    from imagenet_forms import _tar_bytes

    src = write_official(tmp_path / "a", images)
    w, stem, data = images["train"][0]
    inner = _tar_bytes([(f"/abs/{w}_99.JPEG", data), (f"{w}_98.JPEG", data)])
    with tarfile.open(src / "ILSVRC2012_img_train.tar", "a") as tar:
        import io
        info = tarfile.TarInfo(f"{table()[5][0]}.tar")
        info.size = len(inner)
        tar.addfile(info, io.BytesIO(inner))
    manifest = shard(src, tmp_path / "o")
    keys = [k for split in samples(tmp_path / "o").values() for k, _ in split]
    assert f"{w}_99" not in keys and f"{w}_98" in keys
    assert any("abs" in s.path and "unsafe member name" in s.reason for s in manifest.skipped)


# ---- 6. an image of a known form is never dropped quietly; a form's split never goes missing --------
def test_misnamed_images_in_hugging_face_parts_are_skips(images, tmp_path):
    src = write_huggingface(tmp_path / "hf", images)
    png = tmp_path / "x.png"
    random_image(np.random.default_rng(0), 40, 40).save(png)
    write_tar(src / "train_images_3.tar.gz", [("a_n01440764.png", png.read_bytes()),
                                              ("foo.JPEG", images["train"][0][2]), ("notes.txt", b"x")], gz=True)
    one_line_error(prep("shard", "--src", src, "--out", tmp_path / "o", "--workers", "1"), 3, "skipped")
    skipped = {Path(s.path).name: s.reason for s in read_manifest(tmp_path / "o").skipped}
    assert "a_n01440764.png" in skipped and "foo.JPEG" in skipped and "notes.txt" not in skipped


def test_mnist_test_split_beside_a_flat_copy_is_an_error_naming_it(tmp_path):
    write_mnist(tmp_path / "m")
    raw = tmp_path / "m" / "MNIST" / "raw"
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        shutil.copy(raw / name, tmp_path / "m" / name)
    text = one_line_error(prep("shard", "--src", tmp_path / "m", "--task", "mnist", "--out", tmp_path / "o"), 2,
                          "t10k-images-idx3-ubyte", "test split")
    assert "MNIST/raw" in text


# ---- 7. refusals where internal errors were -------------------------------------------------------
@pytest.mark.parametrize("fault", ["empty meta.mat", "truncated meta.mat", "devkit not gzip"])
def test_a_damaged_devkit_is_a_one_line_refusal(images, tmp_path, fault):
    src = write_official(tmp_path / "a", images)
    devkit = src / "ILSVRC2012_devkit_t12.tar.gz"
    if fault == "devkit not gzip":
        devkit.write_bytes(b"this is not gzip data at all" * 10)
    else:
        with tarfile.open(devkit) as tar:
            members = [(m.name, tar.extractfile(m).read()) for m in tar if m.isfile()]
        members = [(n, (b"" if fault == "empty meta.mat" else d[:len(d) // 3]) if n.endswith("meta.mat") else d)
                   for n, d in members]
        write_tar(devkit, members, gz=True)
    one_line_error(prep("shard", "--src", src, "--out", tmp_path / "o"), 2, "ILSVRC2012_devkit_t12")


def test_deeply_nested_real_json_is_a_refusal(tmp_path, tiny_shards, trained):
    real = tmp_path / "real.json"
    real.write_text("[" * 100_000 + "]" * 100_000)
    from train.per_sample import load_real_labels

    manifest = imagenet_like_manifest()
    with pytest.raises(ValueError, match="real.json"):
        load_real_labels(real, manifest, tmp_path)


def imagenet_like_manifest():
    from shared.manifest import ClassInfo, Manifest

    return Manifest("imagenet", "kaggle-imagenet", 256, [ClassInfo(i, w, n) for i, (w, n) in enumerate(table())],
                    {}, {}, {})


@pytest.mark.parametrize("content", ["[1, 2]", '{"split": "val"}', "null-errors", "partial-real", '{"task": '])
def test_table_refuses_a_malformed_results_json_naming_it(tmp_path, content):
    good = {"task": "mnist", "classes": 10, "split": "val", "epochs": 1, "samples": 10, "error@1": 0.1,
            "error@5": 0.0, "centre_error@1": 0.1, "centre_error@5": 0.0, "complete": True}
    if content == "null-errors":
        content = json.dumps({**good, "error@1": None})
    elif content == "partial-real":
        content = json.dumps({**good, "real": {"error@1": 0.2}})
    (tmp_path / "results.json").write_text(content)
    one_line_error(train_cli("table", tmp_path), 2, "results.json")


# ---- 8. valid input read; the stages agree ---------------------------------------------------------
def test_a_multi_member_gzip_idx_file_reads_as_gzip_does(tmp_path):
    write_mnist(tmp_path / "one")
    shutil.copytree(tmp_path / "one", tmp_path / "multi")
    path = tmp_path / "multi" / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    data = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(data[:1000]) + gzip.compress(data[1000:]))  # as `cat a.gz b.gz`
    shard(tmp_path / "one", tmp_path / "o1")
    shard(tmp_path / "multi", tmp_path / "o2")
    assert samples(tmp_path / "o1") == samples(tmp_path / "o2")


def test_no_dataset_prep_writes_is_one_train_refuses_for_its_holdout(tmp_path):
    write_class_folders(tmp_path / "src", per_class=6)
    one_line_error(prep("shard", "--src", tmp_path / "src", "--out", tmp_path / "o", "--holdout", "0"), 2,
                   "--holdout")
    (tmp_path / "one").mkdir()
    write_class_folders(tmp_path / "one", classes=("cat",), per_class=1)
    one_line_error(prep("shard", "--src", tmp_path / "one", "--out", tmp_path / "o"), 2, "1 class folder", "cat",
                   "two or more")
    manifest = shard(tmp_path / "src", tmp_path / "o", holdout=None)
    assert manifest.splits["holdout"].samples >= 1


def test_a_named_form_must_fit_the_source_or_is_refused_saying_what_it_holds(images, tmp_path):
    """--form folder on Kaggle's layout made a one-class dataset "Data" (val mixed into train) with
    exit 0; --form mnist on it would have downloaded MNIST into the ImageNet folder."""
    kaggle = write_kaggle(tmp_path / "k", images)
    for form in ("folder", "mnist", "cifar10", "tiny-imagenet"):
        one_line_error(prep("shard", "--src", kaggle, "--out", tmp_path / form, "--form", form), 2,
                       "imagenet (layout kaggle-imagenet)")
        assert not (tmp_path / form).exists()
    assert sorted(p.name for p in kaggle.iterdir()) == ["ILSVRC", "LOC_synset_mapping.txt", "LOC_val_solution.csv"]


# ---- 9. messages that name the file and advice that works -------------------------------------------
def test_text_files_that_are_not_utf8_name_the_file_utf16_is_read(images, tmp_path):
    kaggle = write_kaggle(tmp_path / "k", images)
    mapping = kaggle / "LOC_synset_mapping.txt"
    mapping.write_bytes(mapping.read_bytes().replace(b"tench", b"t\xe9nch"))
    one_line_error(prep("shard", "--src", kaggle, "--out", tmp_path / "o"), 2, "LOC_synset_mapping.txt", "UTF-8")
    tiny = tmp_path / "k2"
    write_kaggle(tiny, images)
    solution = tiny / "LOC_val_solution.csv"
    solution.write_bytes(solution.read_text().encode("utf-16"))
    assert shard(tiny, tmp_path / "o2").splits["val"].samples == len(images["val"])


def test_a_huge_integer_in_real_json_names_the_file(tmp_path):
    from train.per_sample import load_real_labels

    real = tmp_path / "real.json"
    real.write_text("[[" + "9" * 5000 + "]]")
    with pytest.raises(ValueError, match="real.json"):
        load_real_labels(real, imagenet_like_manifest(), tmp_path)


def test_a_failed_write_names_its_file(tmp_path):
    import errno

    from shared.json_files import write_atomic

    def full(f):
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(OSError) as caught:
        write_atomic(tmp_path / "x.json", full)
    assert caught.value.filename == str(tmp_path / "x.json")
    assert not list(tmp_path.iterdir())


def test_predict_on_a_folder_without_images_is_refused(trained, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    one_line_error(train_cli("predict", "--checkpoint", trained, tmp_path / "empty"), 2, "no image files")


def test_a_checkpoint_of_another_patch_size_is_warned_of_and_recorded(trained, tiny_shards, tmp_path):
    src = tiny_shards.parent / "src"
    out = tmp_path / "s288"
    assert prep("shard", "--src", src, "--out", out, "--size", "288", "--workers", "1").exit_code == 0
    result = train_cli("evaluate", "--checkpoint", trained, "--shards", out, "--no-figures", "--device", "cpu",
                       "--out", tmp_path / "ev")
    assert result.exit_code == 0, result.output
    assert "WARNING" in result.output and "256" in result.output and "288" in result.output
    results = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert (results["patch_size"], results["trained_patch_size"]) == (288, 256)


