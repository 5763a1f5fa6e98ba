"""Behaviour pinned against an independent computation (a reference in the test or a hand-worked
example), in the areas where plausible one-line bugs got past their own tests: ReaL scoring, the
predictions file's centre fields, the table's ReaL column, the holdout's leftover images, the PCA
eigenvectors' sign, the stats.json values accepted, ImageNetV2's folder range, keys unique across
splits, verify's image count, what a resume restores, and the paper's defaults themselves."""
from __future__ import annotations

import json
import random
import shutil
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from command_helpers import prep as prep_cli
from imagenet_forms import write_imagenetv2
from make_fixtures import jpeg_bytes, random_image, write_class_folders
from small_run import SMALL

ROOT = Path(__file__).resolve().parents[1]


# ---- ReaL: which predictions count, which images are scored ----------------------------------------
def test_real_scoring_by_hand():
    from train.per_sample import score_real

    records = [{"key": "a", "top5": [3, 1, 2, 4, 5]},   # top-1 in its list: right at 1 and 5
               {"key": "b", "top5": [1, 9, 8, 7, 3]},   # the 5th is in the list: wrong at 1, right at 5
               {"key": "c", "top5": [9, 8, 7, 6, 5]},   # empty list: not scored at all
               {"key": "d", "top5": [0, 1, 2, 3, 4]},   # none in the list
               {"key": "e", "top5": [4, 0, 0, 0, 0]}]   # right at 1: its list holds several classes
    real = {"a": [3], "b": [3, 7], "c": [], "d": [5], "e": [2, 4]}
    scored = score_real(records, real)
    assert scored == {"error@1": 1 - 2 / 4, "error@5": 1 - 3 / 4, "scored": 4, "evaluated": 5, "empty": 1}


# ---- the predictions file: the centre fields are the centre crop's, by key --------------------------
def test_predictions_file_takes_each_samples_own_centre_record(tmp_path):
    from train.per_sample import write_predictions

    ten = [{"key": k, "label": i, "top5": [i, 9, 8, 7, 6], "probabilities": [0.5, 0.2, 0.1, 0.1, 0.1]}
           for i, k in enumerate(["k0", "k1", "k2"])]
    centre = [{"key": k, "label": i, "top5": [9 - i, 1, 2, 3, 4], "probabilities": [0.9 - i / 10, 0.05, 0, 0, 0]}
              for i, k in reversed(list(enumerate(["k0", "k1", "k2"])))]  # another order: matched by key
    write_predictions(tmp_path / "p.jsonl", ten, centre)
    lines = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    for i, line in enumerate(lines):
        assert line == {"key": f"k{i}", "label": i, "views": 10, "top5": [i, 9, 8, 7, 6],
                        "probabilities": [0.5, 0.2, 0.1, 0.1, 0.1], "centre_top5": [9 - i, 1, 2, 3, 4],
                        "centre_probabilities": [0.9 - i / 10, 0.05, 0, 0, 0]}


# ---- the table's ReaL column is the 10-view ReaL error ------------------------------------------------
def test_the_tables_real_column_is_the_ten_view_error(tmp_path):
    from train.run_folder import format_table

    record = {"task": "imagenet", "split": "val", "samples": 50_000, "epochs": 90, "error@1": 0.41, "error@5": 0.19,
              "centre_error@1": 0.43, "centre_error@5": 0.2, "complete": True,
              "real": {"error@1": 0.311, "error@5": 0.122, "centre_error@1": 0.333, "centre_error@5": 0.144,
                       "scored": 46_837, "evaluated": 50_000, "empty": 3_163}}
    (tmp_path / "results.json").write_text(json.dumps(record))
    row = format_table([tmp_path]).splitlines()[2]
    header = format_table([tmp_path]).splitlines()[0]
    cells = [c.strip() for c in row.strip("|").split("|")]
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert cells[columns.index("ReaL err@1 / err@5 (10-view)")] == "0.311 / 0.122 (46,837 scored)"
    assert cells[columns.index("ours centre")] == "0.430 / 0.200"


# ---- the holdout: leftover images go to the largest remainders -------------------------------------
def hamilton(sizes: dict[int, int], count: int) -> tuple[dict[int, int], set[int], int]:
    """Exact quotas count * n / N: floors, the classes whose remainder could win a leftover, and
    how many leftovers there are."""
    total = sum(sizes.values())
    exact = {c: Fraction(count * n, total) for c, n in sizes.items()}
    floors = {c: int(q) for c, q in exact.items()}
    left = count - sum(floors.values())
    ranked = sorted((q - floors[c] for c, q in exact.items()), reverse=True)
    cut = ranked[left - 1] if left else None
    eligible = {c for c, q in exact.items() if left and q - floors[c] >= cut}
    return floors, eligible, left


@pytest.mark.parametrize("sizes,count", [({0: 10, 1: 7, 2: 3}, 5), ({0: 5, 1: 5, 2: 5, 3: 5}, 2),
                                         ({k: 732 + 57 * k for k in range(9)}, 100), ({0: 1, 1: 1000}, 50)])
def test_holdout_quotas_are_floors_plus_the_largest_remainders(sizes, count):
    from prep.plan import holdout_quotas

    floors, eligible, left = hamilton(sizes, count)
    for seed in range(5):
        quotas = holdout_quotas(sizes, count, random.Random(seed))
        extra = {c for c in sizes if quotas[c] == floors[c] + 1}
        assert sum(quotas.values()) == count and all(quotas[c] in (floors[c], floors[c] + 1) for c in sizes)
        assert len(extra) == left and extra <= eligible
    assert holdout_quotas({0: 10, 1: 7, 2: 3}, 5, random.Random(0)) == {0: 2, 1: 2, 2: 1}  # by hand: 2.5, 1.75, 0.75


# ---- the PCA eigenvectors: eigenpairs of the covariance, largest-magnitude component positive ----------
def test_eigenvectors_are_the_covariances_with_the_sign_convention():
    from prep.compute_stats import summarise

    rng = np.random.default_rng(0)
    flipped = 0
    for _ in range(200):
        pixels = rng.integers(0, 256, size=(50, 3)) @ rng.integers(-2, 3, size=(3, 3)) % 256
        sums = [int(s) for s in pixels.sum(0)]
        outer = [[int(pixels[:, i] @ pixels[:, j]) for j in range(3)] for i in range(3)]
        stats = summarise(1, len(pixels), sums, outer, "train")
        cov = np.cov(pixels.T, bias=True)
        np.testing.assert_allclose(stats.covariance_rgb, cov, atol=1e-9)
        values = np.array(stats.eigenvalues)
        if len(set(np.round(values, 6))) < 3:
            continue  # repeated eigenvalues: the vectors are not unique
        u, s, _ = np.linalg.svd(cov)  # an independent decomposition, columns by descending value
        for k, row in enumerate(stats.eigenvectors):
            magnitudes = sorted(np.abs(u[:, k]), reverse=True)
            if magnitudes[0] - magnitudes[1] < 1e-9:
                continue  # two components of one magnitude: the convention does not decide
            ref = u[:, k] * np.sign(u[np.argmax(np.abs(u[:, k])), k])
            np.testing.assert_allclose(row, ref, atol=1e-6)
            np.testing.assert_allclose(cov @ np.array(row), values[k] * np.array(row), atol=1e-6)
        raw = np.linalg.eigh(cov)[1]  # the orientation before any convention: where would "largest" differ?
        flipped += sum(col[np.argmax(np.abs(col))] < 0 < col.max() for col in raw.T)
    assert flipped > 10  # the convention was tested where "largest" and "largest magnitude" differ


# ---- stats.json: what is accepted --------------------------------------------------------------------
def good_stats() -> dict:
    c, s = float(np.cos(0.3)), float(np.sin(0.3))
    return {"split": "train", "image_count": 10, "pixel_count": 655_360, "sum_rgb": [1, 2, 3],
            "sum_outer_rgb": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "mean_rgb": [0.0, 128.0, 255.0],
            "std_rgb": [1e-9, 50.0, 60.0], "covariance_rgb": [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
            "eigenvalues": [5000.0, 600.0, 0.0],
            "eigenvectors": [[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]], "mean_image": None}


def accepted_by_reference(d: dict) -> bool:
    """The rules of shared/stats.py's docstring, written out again."""
    def numbers(v, n):
        return isinstance(v, list) and len(v) == n and all(type(x) in (int, float) and np.isfinite(x) for x in v)
    rows = d["eigenvectors"]
    vectors = np.array(rows, dtype=float) if len(rows) == 3 and all(numbers(r, 3) for r in rows) else None
    return (numbers(d["mean_rgb"], 3) and all(0 <= m <= 255 for m in d["mean_rgb"])
            and numbers(d["std_rgb"], 3) and all(s > 0 for s in d["std_rgb"])
            and numbers(d["eigenvalues"], 3) and all(v >= 0 for v in d["eigenvalues"])
            and d["eigenvalues"] == sorted(d["eigenvalues"], reverse=True)
            and vectors is not None and np.abs(vectors @ vectors.T - np.eye(3)).max() <= 1e-6
            and type(d["image_count"]) is int and d["image_count"] > 0)


STATS_EDITS = {
    "as written": {}, "mean 255.0001": {"mean_rgb": [0.0, 128.0, 255.0001]}, "mean -1e-9": {"mean_rgb": [-1e-9, 1, 1]},
    "mean nan": {"mean_rgb": [float("nan"), 1, 1]}, "std 0": {"std_rgb": [0.0, 1, 1]},
    "std negative": {"std_rgb": [-1.0, 1, 1]}, "eigenvalue -1e-12": {"eigenvalues": [5000.0, 600.0, -1e-12]},
    "eigenvalues ascending": {"eigenvalues": [0.0, 600.0, 5000.0]},
    "eigenvalues equal": {"eigenvalues": [600.0, 600.0, 600.0]},
    "eigenvector off by 2e-7": {"eigenvectors": [[1 + 2e-7, 0, 0], [0, 1, 0], [0, 0, 1]]},
    "eigenvector off by 1e-5": {"eigenvectors": [[1 + 1e-5, 0, 0], [0, 1, 0], [0, 0, 1]]},
    "eigenvectors not orthogonal": {"eigenvectors": [[1, 0, 0], [0.01, 1, 0], [0, 0, 1]]},
    "two rows": {"eigenvectors": [[1, 0, 0], [0, 1, 0]]}, "image_count 0": {"image_count": 0},
    "image_count 1": {"image_count": 1}, "image_count true": {"image_count": True},
    "image_count 10.0": {"image_count": 10.0}, "std true": {"std_rgb": [True, 1, 1]},
}


@pytest.mark.parametrize("edit", sorted(STATS_EDITS))
def test_stats_values_accepted_exactly_as_the_rules_say(edit, tmp_path):
    from shared.stats import RgbStats, check_stats

    d = {**good_stats(), **STATS_EDITS[edit]}
    expected = accepted_by_reference(d)
    try:
        check_stats(RgbStats(**d), tmp_path / "stats.json")
        accepted = True
    except ValueError:
        accepted = False
    assert accepted == expected, edit


# ---- ImageNetV2: folder k is class k, for k = 0..999 and nothing else ----------------------------------
def test_imagenetv2_folders_are_class_indices_0_to_999_exactly(tmp_path):
    from prep.detect_layout import read_source

    labels = write_imagenetv2(tmp_path, list(range(1000)), per_class=1)
    folder = tmp_path / "imagenetv2-matched-frequency-format-val"
    rng = np.random.default_rng(1)
    for name in ("1000", "01", "-1", "1e3", " 7"):
        (folder / name).mkdir()
        (folder / name / "a.jpeg").write_bytes(jpeg_bytes(random_image(rng, 20, 20)))
    source = read_source(folder, None)
    got = {it.key: it.label for it in source.items["val"]}
    assert got == labels and {got[k] for k in got} == set(range(1000))
    skipped = {s.path.split("/")[0] for s in source.skipped}
    assert skipped == {"1000", "01", "-1", "1e3", " 7"}


# ---- keys: unique across the whole dataset, not only within a split -----------------------------------
def test_keys_are_unique_across_splits(tmp_path):
    from shared.manifest import read_manifest
    from shared.shards import iter_shard

    write_class_folders(tmp_path / "src", per_class=8, with_val=True)  # train/cat/0.jpg and val/cat/0.jpg ...
    assert prep_cli("shard", "--src", tmp_path / "src", "--out", tmp_path / "o", "--shard-size", "3").exit_code == 0
    manifest = read_manifest(tmp_path / "o")
    keys = [s.key for split in manifest.splits for p in manifest.shard_paths(tmp_path / "o", split)
            for s in iter_shard(p)]
    assert len(keys) == len(set(keys)) == sum(info.samples for info in manifest.splits.values())


# ---- verify: stats.json must cover exactly the train split ----------------------------------------------
@pytest.mark.parametrize("delta", [-1, 1, 0])
def test_verify_checks_the_images_stats_cover_both_ways(tiny_shards, tmp_path, delta):
    data = shutil.copytree(tiny_shards, tmp_path / "d")
    d = json.loads((data / "stats.json").read_text())
    d["image_count"] += delta
    (data / "stats.json").write_text(json.dumps(d))
    result = prep_cli("verify", "--shards", data)
    if delta:
        assert result.exit_code == 1 and "stats.json: covers" in result.output, result.output
    else:
        assert result.exit_code == 0, result.output


# ---- a resume restores the best error so far and the plateau's whole window -----------------------------
def test_a_resume_restores_the_best_and_the_schedules_window(tiny_shards, tmp_path):
    from train.config import TrainConfig
    from train.distributed import Dist
    from train.loop import setup_run, train

    cfg = TrainConfig(shards=tiny_shards, epochs=3, steps_per_epoch=1, lr_patience=3, logdir=tmp_path,
                      run_name="r", **SMALL)
    train(cfg)
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    errors = [r["holdout"]["error@1"] for r in rows]
    run = setup_run(replace(cfg, epochs=4, resume=tmp_path / "r" / "last.pt", run_name=None), torch.device("cpu"),
                    Dist())
    try:
        assert (run.best_error, run.best_epoch) == (min(errors), errors.index(min(errors)))
        assert run.schedule.window == errors and run.schedule.drops == [] and run.start_epoch == 3
    finally:
        run.folder_lock.release()


# ---- the paper's defaults, and that a run uses them ----------------------------------------------------
PAPER_DEFAULTS = {  # field: (value, source)
    "epochs": (90, "§5 'roughly 90 cycles'"), "batch_size": (128, "§5"), "optimizer": ("sgd", "§5"),
    "learn_rate": (0.01, "§5 (resolved for sgd)"), "momentum": (0.9, "§5"), "weight_decay": (0.0005, "§5"),
    "bias_lr_mult": (2.0, "cuda-convnet epsB = 2 epsW; Caffe lr_mult 2"), "lr_schedule": ("plateau", "§5"),
    "lr_drops": (3, "§5 'reduced three times'"), "dropout": (0.5, "§4.2"), "dropout_mode": ("paper", "§4.2"),
    "lrn": ("as-run", "§3.3, cuda-convnet"), "conv1_padding": ("as-run", "cuda-convnet"), "pool_size": (3, "§3.4"),
    "towers": ("two", "§3.2"), "init": ("caffe", "bvlc_alexnet"), "pca_std": (0.1, "§4.1, cuda-convnet2"),
    "normalize": ("mean-image", "§2, cuda-convnet2"), "crop": (224, "§4.1 (resolved for 256 patches)"),
}


def test_the_defaults_are_the_papers():
    from train.config import TrainConfig

    resolved = TrainConfig(task="imagenet").resolved(256)
    assert {k: getattr(resolved, k) for k in PAPER_DEFAULTS} == {k: v for k, (v, _) in PAPER_DEFAULTS.items()}


def test_a_run_trains_with_the_configs_values(tiny_shards, tmp_path):
    """The loop builds its optimizer, lighting and dropout from the config, not from values of its own."""
    from train.config import TrainConfig
    from train.distributed import Dist
    from train.loop import setup_run

    for pca_std, decay, dropout in ((0.1, 0.0005, 0.5), (0.3, 0.002, 0.25)):
        cfg = TrainConfig(shards=tiny_shards, logdir=tmp_path, run_name=f"r{pca_std}", pca_std=pca_std,
                          weight_decay=decay, dropout=dropout, **SMALL)
        run = setup_run(cfg, torch.device("cpu"), Dist())
        try:
            groups = run.optimizer.param_groups
            assert [g["weight_decay"] for g in groups] == [decay, 0.0]  # weights decay, biases do not
            assert [g["lr"] for g in groups] == [0.01, 0.02] and all(g["momentum"] == 0.9 for g in groups)
            assert run.compute.augment.pca_std == pca_std and run.model.dropout.p == dropout
        finally:
            run.folder_lock.release()
