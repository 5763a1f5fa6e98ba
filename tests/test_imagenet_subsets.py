"""ImageNet subsets as people hold them: fast.ai's Imagenette2 and Imagewoof2 and a
100-class ImageNet-100, built here in their real layouts and file names, read as datasets of
their own -- N classes in wnid order with ILSVRC-2012's names, every image kept, the keys and
labels of `--form folder` -- while a tree with all 1,000 class folders stays ImageNet."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from command_helpers import prep
from imagenet_forms import table, val_name
from make_fixtures import jpeg_bytes, random_image
from prep.config import PrepConfig
from prep.detect_layout import read_source
from prep.write_shards import write_dataset
from shared.manifest import read_manifest
from shared.shards import iter_shard

# fast.ai's Imagenette and Imagewoof class lists (github.com/fastai/imagenette, README)
IMAGENETTE = ["n01440764", "n02102040", "n02979186", "n03000684", "n03028079", "n03394916", "n03417042",
              "n03425413", "n03445777", "n03888605"]
IMAGEWOOF = ["n02086240", "n02087394", "n02088364", "n02089973", "n02093754", "n02096294", "n02099601",
             "n02105641", "n02111889", "n02115641"]


def write_fastai(root: Path, wnids: list[str], csv_name: str, seed: int) -> Path:
    """`<name>2-320/{train,val}/<wnid>/` beside `noisy_<name>.csv`, as fast.ai's v2 archives hold
    them: each split mixes images of both ImageNet splits (train files named
    ILSVRC2012_val_NNNNNNNN, val files named <wnid>_NNNN), and one stem occurs in both splits."""
    rng = np.random.default_rng(seed)
    rows = ["path,noisy_labels_0,noisy_labels_1,noisy_labels_5,noisy_labels_25,noisy_labels_50,is_valid"]
    for k, wnid in enumerate(wnids):
        names = {"train": [f"{wnid}_{100 + k}", f"{wnid}_{2000 + k}", val_name(907 + 11 * k)],
                 "val": [val_name(40000 + k), f"{wnid}_{5000 + k}", f"{wnid}_{100 + k}"]}
        for split, stems in names.items():
            (root / split / wnid).mkdir(parents=True, exist_ok=True)
            for stem in stems:
                (root / split / wnid / f"{stem}.JPEG").write_bytes(jpeg_bytes(random_image(rng, 40, 30)))
                rows.append(f"{split}/{wnid}/{stem}.JPEG" + f",{wnid}" * 5 + f",{split == 'val'}")
    (root / csv_name).write_text("\n".join(rows) + "\n")
    return root


def write_imagenet100(root: Path, seed: int = 2) -> Path:
    """ImageNet-100 (CMC's list, as its copies are shared): train/<wnid>/<wnid>_N.JPEG,
    val/<wnid>/ILSVRC2012_val_N.JPEG for 100 of ILSVRC-2012's classes."""
    rng = np.random.default_rng(seed)
    wnids = [w for w, _ in table()][3::10]
    for k, wnid in enumerate(wnids):
        for split, stem in (("train", f"{wnid}_{k}"), ("train", f"{wnid}_{k + 500}"), ("val", val_name(k + 1))):
            (root / split / wnid).mkdir(parents=True, exist_ok=True)
            (root / split / wnid / f"{stem}.JPEG").write_bytes(jpeg_bytes(random_image(rng, 36, 36)))
    return root


SUBSETS = {
    "imagenette2-320": (lambda root: write_fastai(root, IMAGENETTE, "noisy_imagenette.csv", 0), 10, 60),
    "imagewoof2-320": (lambda root: write_fastai(root, IMAGEWOOF, "noisy_imagewoof.csv", 1), 10, 60),
    "imagenet100": (write_imagenet100, 100, 300),
}


def samples(out: Path) -> dict:
    manifest = read_manifest(out)
    return {split: [(s.key, s.label) for p in manifest.shard_paths(out, split) for s in iter_shard(p)]
            for split in manifest.splits}


def shard(src: Path, out: Path, task: str | None = None):
    cfg = PrepConfig(src=src, out=out, shard_size=7, workers=1, task=task)
    source = read_source(src, task)
    return source, write_dataset(source, cfg, out)


@pytest.mark.parametrize("name", SUBSETS)
def test_a_subset_is_a_dataset_of_its_own_with_every_image(tmp_path, name):
    write, classes, images = SUBSETS[name]
    src = write(tmp_path / name)
    source, manifest = shard(src, tmp_path / "subset")
    names = dict(table())
    wnids = sorted(d.name for d in (src / "train").iterdir())
    assert source.layout == "imagenet-subset" and manifest.task == name
    assert manifest.class_table() == [[k, w, names[w]] for k, w in enumerate(wnids)]  # wnid order, ImageNet's names
    assert len(wnids) == classes and not manifest.skipped
    assert sum(s.samples for s in manifest.splits.values()) == images  # every image, whatever its name
    assert "subset" in source.reading and f"{classes:,} of ILSVRC-2012's" in source.reading
    keys = [k for split in samples(tmp_path / "subset").values() for k, _ in split]
    assert len(keys) == len(set(keys))  # unique across the dataset
    # the keys and labels of --form folder
    _, folder = shard(src, tmp_path / "folder", task="folder")
    assert samples(tmp_path / "subset") == samples(tmp_path / "folder")


def test_a_stem_in_both_splits_keeps_both_images(tmp_path):
    """Imagewoof2 holds one photograph's name in train/ and val/: both are kept, under distinct keys."""
    src = SUBSETS["imagewoof2-320"][0](tmp_path / "woof")
    shard(src, tmp_path / "o")
    stem = f"{IMAGEWOOF[0]}_100"
    keys = [k for split in samples(tmp_path / "o").values() for k, _ in split if stem in k]
    assert len(keys) == 2 and len(set(keys)) == 2


def test_the_cli_says_which_reading_and_the_flag_chooses_the_other(tmp_path):
    src = SUBSETS["imagewoof2-320"][0](tmp_path / "imagewoof2-320")
    result = prep("shard", "--src", src, "--out", tmp_path / "subset")
    assert result.exit_code == 0, result.output
    assert "read as a 10-class ImageNet subset" in result.output and "--form imagenet" in result.output
    result = prep("shard", "--src", src, "--out", tmp_path / "full", "--form", "imagenet", "--allow-skips")
    assert result.exit_code == 0, result.output
    manifest = read_manifest(tmp_path / "full")
    assert manifest.task == "imagenet" and len(manifest.classes) == 1000  # ImageNet's rules, said so
    assert manifest.skipped  # ... under which fast.ai's mixed names are skips
    assert "read as ImageNet (--form imagenet)" in result.output


def test_a_complete_imagenet_stays_imagenet_and_the_flag_reads_it_as_a_subset(tmp_path):
    rng = np.random.default_rng(3)
    src = tmp_path / "imagenet"
    wnids = [w for w, _ in table()]
    for wnid in wnids:
        (src / "train" / wnid).mkdir(parents=True)
    for wnid in wnids[:5]:
        (src / "train" / wnid / f"{wnid}_1.JPEG").write_bytes(jpeg_bytes(random_image(rng, 30, 30)))
    source, manifest = shard(src, tmp_path / "o")
    assert source.layout == "imagenet-folders" and manifest.task == "imagenet" and len(manifest.classes) == 1000
    assert "a folder for each of ILSVRC-2012's 1,000 classes" in source.reading
    as_subset = read_source(src, "imagenet-subset")
    assert as_subset.layout == "imagenet-subset" and len(as_subset.classes) == 1000


def test_a_short_mapping_beside_wnid_folders_neither_makes_imagenet_nor_renames_it(tmp_path):
    """A 12-line LOC_synset_mapping.txt beside a few wnid folders is not ILSVRC-2012's table:
    the folders are a subset named from the shipped table, and the file is listed as ignored."""
    src = write_fastai(tmp_path / "nette", IMAGENETTE, "noisy_imagenette.csv", 4)
    (src / "LOC_synset_mapping.txt").write_text("".join(f"{w} renamed {i}\n" for i, w in enumerate(IMAGENETTE)))
    source = read_source(src, None)
    assert source.layout == "imagenet-subset" and source.classes[0].name == dict(table())[IMAGENETTE[0]]
    assert any(e["path"] == "LOC_synset_mapping.txt" for e in source.ignored)
