"""`alexnet-train predict` and load_predictor: the paper's test-time pipeline on image files."""
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from shared.manifest import read_manifest
from shared.shards import iter_shard
from train.augment import ten_views
from train.cli import app
from train.config import TrainConfig
from train.loop import train
from train.predict import load_predictor
from small_run import SMALL



@pytest.fixture(scope="module")
def checkpoint(tiny_shards, tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("predict")
    train(TrainConfig(shards=tiny_shards, epochs=1, steps_per_epoch=2, logdir=runs, run_name="r", **SMALL))
    return runs / "r" / "best.pt"


def val_images(tiny_shards: Path) -> list[Path]:
    return sorted((tiny_shards.parent / "src" / "ILSVRC" / "Data" / "CLS-LOC" / "val").glob("*.JPEG"))[:3]


def test_ten_views_of_the_prep_patch_softmax_averaged(tiny_shards, checkpoint):
    predictor = load_predictor(checkpoint, "cpu")
    image = val_images(tiny_shards)[0]
    patch = predictor.patch_of(image)
    # the patch prep stored for the same file (JPEG quality 90 in between)
    stored = next(s for p in read_manifest(tiny_shards).shard_paths(tiny_shards, "val") for s in iter_shard(p)
                  if s.meta["source"].endswith(image.name))
    stored_pixels = np.asarray(Image.open(io.BytesIO(stored.jpg)), dtype=np.float64)
    assert np.abs(patch.permute(1, 2, 0).numpy() - stored_pixels).mean() < 3
    with torch.no_grad(), predictor.amp:  # the checkpoint's precision (bf16 on a CPU with bf16 units)
        expected = sum(torch.softmax(predictor.model(predictor.augment(v)).float(), 1)
                       for v in ten_views(patch[None], 224)) / 10
    got = predictor.probabilities(patch[None], views=10)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    top = predictor.top5([image])[0]["top5"]
    assert [t["index"] for t in top] == expected[0].topk(3).indices.tolist()  # 3 classes: top-5 is all of them
    assert top[0]["wnid"] == read_manifest(tiny_shards).classes[top[0]["index"]].wnid


def test_predict_cli_names_bad_files_and_predicts_the_rest(tiny_shards, checkpoint, tmp_path):
    images = val_images(tiny_shards)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not an image")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.JPEG").write_bytes(images[1].read_bytes())
    (folder / "notes.txt").write_text("not an image, not listed")
    result = CliRunner().invoke(app, ["predict", "--checkpoint", str(checkpoint), "--json", "--views", "1",
                                      "--device", "cpu", str(images[0]), str(bad), str(folder)])
    assert result.exit_code == 3, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(r["path"]).name for r in rows] == [images[0].name, "broken.jpg", "a.JPEG"]
    assert "error" in rows[1] and "top5" not in rows[1]
    for r in (rows[0], rows[2]):
        probs = [t["probability"] for t in r["top5"]]
        assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1, abs=1e-5)
    text = CliRunner().invoke(app, ["predict", "--checkpoint", str(checkpoint), "--device", "cpu", str(images[0])])
    assert text.exit_code == 0 and images[0].name in text.output and "n0" in text.output


def test_old_or_foreign_checkpoints_get_a_clear_message(tmp_path, tiny_shards):
    old = tmp_path / "old.pt"
    torch.save({"format": 1, "arch": "alexnet-krizhevsky-2012", "model": {}}, old)
    result = CliRunner().invoke(app, ["predict", "--checkpoint", str(old), str(val_images(tiny_shards)[0])])
    assert result.exit_code == 2 and "checkpoint format 1" in result.output and "class list" in result.output
