"""ILSVRC-2012 in each form people hold it gives the same dataset: keys, labels, splits
(holdout included), patch bytes and class table identical to the Kaggle layout's."""
from pathlib import Path

import pytest

from imagenet_forms import (EMPTY, make_images, table, write_huggingface, write_imagenetv2,
                            write_kaggle, write_official, write_reference_folders)
from prep.config import PrepConfig
from prep.detect_layout import read_source
from prep.forms.devkit import read_devkit
from prep.write_shards import write_dataset
from shared.manifest import read_manifest
from shared.shards import iter_shard

FORMS = {
    "kaggle": lambda root, images: write_kaggle(root, images),
    "official archives": lambda root, images: write_official(root, images),
    "reference folders + devkit": lambda root, images: write_reference_folders(root, images, devkit=True),
    "reference folders, shipped table": lambda root, images: write_reference_folders(root, images, devkit=False),
    "hugging face": lambda root, images: write_huggingface(root, images),
}


def shard(src: Path, out: Path, workers: int = 2):
    cfg = PrepConfig(src=src, out=out, shard_size=5, workers=workers, allow_skips=True)
    source = read_source(src, None)
    return source, write_dataset(source, cfg, out)


def dataset(out: Path) -> dict:
    manifest = read_manifest(out)
    return {split: [(s.key, s.label, s.jpg) for p in manifest.shard_paths(out, split) for s in iter_shard(p)]
            for split in manifest.splits}


@pytest.fixture(scope="module")
def forms(tmp_path_factory) -> dict:
    images = make_images()
    base = tmp_path_factory.mktemp("forms")
    out = {}
    for name, write in FORMS.items():
        src = write(base / name.replace(" ", "-").replace(",", ""), images)
        source, manifest = shard(src, base / ("out-" + src.name))
        out[name] = {"source": source, "manifest": manifest, "data": dataset(base / ("out-" + src.name)),
                     "out": base / ("out-" + src.name)}
    return out


@pytest.mark.parametrize("form", [f for f in FORMS if f != "kaggle"])
def test_every_form_gives_the_kaggle_dataset(forms, form):
    kaggle, other = forms["kaggle"], forms[form]
    assert other["manifest"].task == "imagenet"
    assert other["manifest"].class_table() == kaggle["manifest"].class_table()
    assert {k: len(v) for k, v in other["data"].items()} == {k: len(v) for k, v in kaggle["data"].items()}
    for split in ("train", "holdout", "val"):
        assert other["data"][split] == kaggle["data"][split], (form, split)  # keys, labels, patches, order
    assert other["manifest"].splits["holdout"].samples == kaggle["manifest"].splits["holdout"].samples > 0


def test_the_forms_are_recognised_as_what_they_are(forms):
    layouts = {name: f["source"].layout for name, f in forms.items()}
    assert layouts == {"kaggle": "kaggle-imagenet", "official archives": "ilsvrc-archives",
                       "reference folders + devkit": "imagenet-folders",
                       "reference folders, shipped table": "imagenet-folders", "hugging face": "huggingface"}


def test_labels_are_the_images_own(forms):
    images = make_images()
    wnid_index = {w: k for k, (w, _) in enumerate(table())}
    expected = {stem: wnid_index[w] for w, stem, _ in images["train"]}
    expected.update({f"ILSVRC2012_val_{n:08d}": wnid_index[w] for n, w, _ in images["val"]})
    for name, form in forms.items():
        got = {key: label for split in form["data"].values() for key, label, _ in split}
        assert got == expected, name


def test_devkit_ids_are_not_class_indices(tmp_path):
    """meta.mat's ILSVRC2012_IDs are a permutation: the table must come from it, by wnid."""
    from imagenet_forms import write_devkit

    images = make_images()
    ids = write_devkit(tmp_path / "devkit.tar.gz", images)
    devkit = read_devkit(tmp_path / "devkit.tar.gz")
    wnids = [w for w, _ in table()]
    assert [c.wnid for c in devkit.classes] == wnids and [c.name for c in devkit.classes] == [n for _, n in table()]
    assert any(ids[w] != k + 1 for k, w in enumerate(wnids))  # the trap is set
    for n, wnid, _ in images["val"]:
        assert devkit.val_labels.labels[f"ILSVRC2012_val_{n:08d}"] == wnid


def test_empty_classes_and_unlabelled_parts_are_accounted_for(forms):
    wnids = [w for w, _ in table()]
    official = forms["official archives"]["manifest"]
    ignored = {e["path"]: e["reason"] for e in official.ignored}
    for k in EMPTY:
        assert f"ILSVRC2012_img_train.tar/{wnids[k]}.tar" in ignored
    hf = {e["path"]: e["reason"] for e in forms["hugging face"]["manifest"].ignored}
    assert hf["test_images.tar.gz"] == "the test set has no labels"


def test_hugging_face_form_is_byte_identical_across_workers_and_leaves_no_patch_store(forms, tmp_path):
    src = forms["hugging face"]["source"].root
    _, manifest = shard(src, tmp_path / "one", workers=1)
    assert {p.name: p.read_bytes() for p in (tmp_path / "one").glob("*.tar")} == \
        {p.name: p.read_bytes() for p in forms["hugging face"]["out"].glob("*.tar")}
    assert not (tmp_path / "one" / ".patches").exists()


def test_imagenetv2_labels_are_class_indices_not_sorted_strings(tmp_path):
    classes = list(range(13)) + [100, 999]  # "10" < "2" as strings: folder 10 must be class 10
    labels = write_imagenetv2(tmp_path, classes)
    src = tmp_path / "imagenetv2-matched-frequency-format-val"
    source, manifest = shard(src, tmp_path / "o")
    assert manifest.task == "imagenetv2-matched-frequency" and list(manifest.splits) == ["val"]
    assert manifest.class_table() == [[k, w, n] for k, (w, n) in enumerate(table())]
    got = {key: label for key, label, _ in dataset(tmp_path / "o")["val"]}
    assert got == labels


def test_imagenetv2_from_its_tar_gz(tmp_path):
    from imagenet_forms import write_tar

    labels = write_imagenetv2(tmp_path / "x", [0, 2, 10, 11, 12])
    folder = tmp_path / "x" / "imagenetv2-matched-frequency-format-val"
    members = [(p.relative_to(tmp_path / "x").as_posix(), p.read_bytes()) for p in sorted(folder.rglob("*.jpeg"))]
    write_tar(tmp_path / "imagenetv2-matched-frequency.tar.gz", members, gz=True)
    source, manifest = shard(tmp_path / "imagenetv2-matched-frequency.tar.gz", tmp_path / "o")
    assert manifest.task == "imagenetv2-matched-frequency"
    assert {key: label for key, label, _ in dataset(tmp_path / "o")["val"]} == labels


def test_hugging_face_form_in_parts_merges_to_the_single_run(forms, tmp_path):
    """--part k/N on a streamed archive: each part decodes every N-th run into its .patches/;
    the run without --part over the merged .patches/ writes the single run's shards."""
    import shutil

    from prep.streamed_patches import RUN

    src = forms["hugging face"]["source"].root
    for k in (1, 2):
        cfg = PrepConfig(src=src, out=tmp_path / f"p{k}", shard_size=5, workers=1, allow_skips=True, part=f"{k}/2")
        assert write_dataset(read_source(src, None), cfg, tmp_path / f"p{k}") is None  # shards wait for all parts
    merged = tmp_path / "merged" / ".patches"
    for k in (1, 2):
        shutil.copytree(tmp_path / f"p{k}" / ".patches", merged, dirs_exist_ok=True)
    assert len(list(merged.glob("*.tar"))) == sum(-(-n // RUN) for n in (15, 15, 14))  # two train archives, val
    shard(src, tmp_path / "merged", workers=1)
    assert {p.name: p.read_bytes() for p in (tmp_path / "merged").glob("*.tar")} == \
        {p.name: p.read_bytes() for p in forms["hugging face"]["out"].glob("*.tar")}
