"""The test sets that came after the paper: ImageNetV2 evaluated with an ImageNet checkpoint,
ReaL labels scored by key, per-sample predictions, and the table with its reference rows."""
import json
from pathlib import Path

import pytest

from command_helpers import train_cli
from imagenet_forms import make_images, write_imagenetv2, write_kaggle, write_real_json
from prep.compute_stats import compute_rgb_stats
from prep.config import PrepConfig
from prep.detect_layout import read_source
from prep.write_shards import write_dataset
from train.config import TrainConfig
from train.loop import train
from small_run import SMALL



def prep(src: Path, out: Path) -> Path:
    cfg = PrepConfig(src=src, out=out, shard_size=8, workers=2, allow_skips=True)
    write_dataset(read_source(src, None), cfg, out)
    return out


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory) -> dict:
    """A 1,000-class ImageNet (Kaggle form, a few images), a checkpoint trained on it, an
    ImageNetV2 set and a real.json."""
    base = tmp_path_factory.mktemp("testsets")
    shards = prep(write_kaggle(base / "kaggle", make_images()), base / "shards")
    compute_rgb_stats(shards, workers=1)
    train(TrainConfig(shards=shards, fast_dev_run=True, logdir=base / "runs", run_name="r", **SMALL))
    v2_labels = write_imagenetv2(base / "v2", list(range(13)))
    v2 = prep(base / "v2" / "imagenetv2-matched-frequency-format-val", base / "v2-shards")
    real = base / "real.json"
    lists = {1: [], 2: [3, 10, 65], 3: [0], 4: [], 5: [1, 2], 6: [999, 500, 300, 100, 0]}
    write_real_json(real, lists)
    return {"shards": shards, "run": base / "runs" / "r", "v2": v2, "v2_labels": v2_labels, "real": real,
            "base": base}


def test_imagenetv2_evaluated_with_an_imagenet_checkpoint(imagenet):
    result = train_cli("evaluate", "--checkpoint", imagenet["run"] / "best.pt", "--shards", imagenet["v2"], "--device", "cpu",
                 "--workers", "0", "--no-figures")
    assert result.exit_code == 0, result.output
    folder = imagenet["run"] / "imagenetv2-matched-frequency"  # never the run's own val results.json
    r = json.loads((folder / "results.json").read_text())
    assert r["task"] == "imagenetv2-matched-frequency" and r["split"] == "val"
    assert r["samples"] == len(imagenet["v2_labels"]) and 0 <= r["error@1"] <= 1 and 0 <= r["centre_error@5"] <= 1
    assert json.loads((imagenet["run"] / "results.json").read_text())["task"] == "imagenet"


def test_training_on_an_evaluation_only_set_is_refused(imagenet, tmp_path):
    result = train_cli("--shards", imagenet["v2"], "--fast-dev-run", "--logdir", tmp_path, "--device", "cpu")
    assert result.exit_code == 2 and "evaluation-only" in result.output


def test_real_error_equals_the_predictions_file_scored_by_hand(imagenet, tmp_path):
    preds = tmp_path / "preds.jsonl"
    result = train_cli("evaluate", "--checkpoint", imagenet["run"] / "best.pt", "--shards", imagenet["shards"], "--device",
                 "cpu", "--workers", "0", "--no-figures", "--out", tmp_path / "e", "--real-labels", imagenet["real"],
                 "--predictions", preds)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in preds.read_text().splitlines()]
    results = json.loads((tmp_path / "e" / "results.json").read_text())
    assert len(lines) == results["samples"] == 14
    assert [r["key"] for r in lines] == sorted(f"ILSVRC2012_val_{n:08d}" for n in range(1, 15))
    assert all(r["views"] == 10 and len(r["top5"]) == 5 == len(r["probabilities"]) == len(r["centre_top5"])
               for r in lines)
    # the 10-view error@1 from the file equals results.json's
    assert sum(r["top5"][0] != r["label"] for r in lines) / len(lines) == pytest.approx(results["error@1"])
    real = json.loads(imagenet["real"].read_text())
    by_key = {f"ILSVRC2012_val_{n + 1:08d}": labels for n, labels in enumerate(real)}
    scored = [r for r in lines if by_key[r["key"]]]  # empty lists are left out
    assert len(scored) == results["real"]["scored"] == 10  # the lists of images 1, 4, 7 and 14 are empty
    err1 = 1 - sum(r["top5"][0] in by_key[r["key"]] for r in scored) / len(scored)
    err5 = 1 - sum(any(t in by_key[r["key"]] for t in r["top5"]) for r in scored) / len(scored)
    c_err1 = 1 - sum(r["centre_top5"][0] in by_key[r["key"]] for r in scored) / len(scored)
    assert results["real"]["error@1"] == pytest.approx(err1) and results["real"]["error@5"] == pytest.approx(err5)
    assert results["real"]["centre_error@1"] == pytest.approx(c_err1)
    table = train_cli("table", tmp_path / "e")
    assert "(10 scored)" in table.output and "Published figures" in table.output and "0.407 / 0.182" in table.output


@pytest.mark.parametrize("content,words", [
    ([[0]] * 49_999, "50,000 lists"),
    ([[0]] * 49_999 + [[1000]], "entry 49999"),
    ([[0]] * 49_999 + [["0"]], "entry 49999"),
    ({"a": 1}, "a list of 50,000"),
])
def test_malformed_real_json_is_refused(imagenet, tmp_path, content, words):
    bad = tmp_path / "real.json"
    bad.write_text(json.dumps(content))
    result = train_cli("evaluate", "--checkpoint", imagenet["run"] / "best.pt", "--shards", imagenet["shards"], "--device",
                 "cpu", "--workers", "0", "--no-figures", "--out", tmp_path / "e", "--real-labels", bad)
    assert result.exit_code == 2 and words in result.output and "Traceback" not in result.output


def test_real_labels_match_by_key_not_position(imagenet, tmp_path):
    """On a dataset whose keys are not ImageNet's val files, ReaL is refused, not misapplied."""
    result = train_cli("evaluate", "--checkpoint", imagenet["run"] / "best.pt", "--shards", imagenet["v2"], "--device",
                 "cpu", "--workers", "0", "--no-figures", "--out", tmp_path / "e", "--real-labels", imagenet["real"])
    assert result.exit_code == 2 and "ReaL labels cover ImageNet's val images" in result.output


def test_a_bad_real_json_is_refused_before_training_starts(imagenet, tmp_path):
    bad = tmp_path / "real.json"
    bad.write_text("[[0]]")
    result = train_cli("--shards", imagenet["shards"], "--fast-dev-run", "--logdir", tmp_path / "runs", "--device", "cpu",
                 "--workers", "1", "--real-labels", bad)
    assert result.exit_code == 2 and "50,000 lists" in result.output and not (tmp_path / "runs").exists()
