"""Every field of stats.json, manifest.json, results.json, metrics.jsonl and a checkpoint is
checked against an independent computation somewhere: FIELDS names the test for each, and
test_every_field_is_covered fails when a file gains a field that has none.

Multi-epoch runs: the final evaluation must use best.pt's weights when the last epoch is not
the best (a one-epoch test cannot tell), and every recorded number is recomputed here from
the checkpoints by plain code (PIL decoding, ten views sliced by hand, softmax averaged)."""
import hashlib
import importlib
import io
import json
import platform
import re
import subprocess
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from shared.manifest import read_manifest
from shared.shards import iter_shard
from shared.stats import read_stats
from train.config import TrainConfig
from train.loop import train
from train.model import AlexNet, Architecture
from small_run import SMALL

ROOT = Path(__file__).resolve().parents[1]
HERE = "tests/test_field_coverage.py::"
STATS_TEST = "tests/test_prep_stats.py::test_stats_equal_numpy"
FIELDS = {
    "stats.json": {f: STATS_TEST for f in ("split", "image_count", "pixel_count", "sum_rgb", "sum_outer_rgb",
                                           "mean_rgb", "std_rgb", "covariance_rgb", "eigenvalues", "eigenvectors",
                                           "mean_image")},
    "manifest.json": {f: HERE + "test_manifest_fields" for f in (
        "format", "task", "layout", "patch_size", "classes", "classes[].index", "classes[].wnid", "classes[].name",
        "splits", "splits[].shards", "splits[].shard_samples", "splits[].shard_bytes", "splits[].shard_sha256",
        "splits[].samples", "prep", "versions")}
    | {"splits[].shard_items_sha256":
       "tests/test_trust_new_forms.py::test_verify_checks_each_patch_and_each_shards_provenance",
       "skipped": "tests/test_untrusted_prep.py::test_every_path_is_a_sample_a_skip_or_ignored",
       "ignored": "tests/test_untrusted_prep.py::test_every_path_is_a_sample_a_skip_or_ignored"},
    "results.json": {f: HERE + "test_results_fields" for f in (
        "task", "classes", "split", "epochs", "samples", "error@1", "error@5", "centre_error@1", "centre_error@5",
        "train_wall_s", "eval_wall_s", "device", "git", "metrics", "metrics.error@1", "metrics.error@5",
        "metrics.centre_error@1", "metrics.centre_error@5", "metrics.loss", "metrics.centre_loss", "metrics.samples")}
    | {"complete": "tests/test_untrusted_train.py::test_incomplete_imagenet_val_reported_loudly",
       "shortfall": "tests/test_untrusted_train.py::test_incomplete_imagenet_val_reported_loudly",
       "real": "tests/test_test_sets.py::test_real_error_equals_the_predictions_file_scored_by_hand"}
    | {f: "tests/test_trust_new_forms.py::test_a_checkpoint_of_another_patch_size_is_warned_of_and_recorded"
       for f in ("patch_size", "trained_patch_size")},
    "metrics.jsonl": {f: HERE + "test_metrics_rows" for f in (
        "epoch", "lr", "wall_s", "train", "train.loss", "train.images_per_s", "train.seconds", "holdout",
        "holdout.error@1", "holdout.error@5", "holdout.loss", "holdout.samples", "holdout.views", "lr_drop",
        "lr_drop.epoch", "lr_drop.holdout_error", "lr_drop.lr")},
    "checkpoint": {f: HERE + "test_checkpoint_fields" for f in (
        "format", "arch", "architecture", "num_classes", "classes", "normalization", "patch_size", "epoch", "model",
        "optimizer", "schedule", "config", "best_error", "best_epoch", "metrics_row")}
    | {"in_epoch": "tests/test_mid_epoch.py::test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run",
       "digest": "tests/test_run_identity.py::test_the_digest_covers_tensors_values_and_keys",
       "identity": HERE + "test_checkpoint_fields"},
    "config.json": {f: HERE + "test_config_fields" for f in (
        "config", "run_id", "git", "world_size", "device", "torch", "steps_per_epoch", "per_rank_batch",
        "architecture")}
    | {f: "tests/test_precision.py::test_config_json_records_the_precision_and_cpu_settings"
       for f in ("precision", "device_settings", "compile")},
}


def manifest_fields(d: dict) -> set[str]:
    out = set(d)
    out |= {f"classes[].{k}" for c in d["classes"] for k in c}
    out |= {f"splits[].{k}" for s in d["splits"].values() for k in s}
    return out


@pytest.fixture(scope="module")
def natural_run(tiny_shards, tmp_path_factory) -> dict:
    """3 epochs of 1 step, the step schedule dropping after epochs 0 and 1; no dropout and no
    lighting, so that a step's loss can be recomputed; fp32, so that the written-out fp32
    references below agree to rounding (bf16 against fp32: tests/test_precision.py)."""
    logdir = tmp_path_factory.mktemp("natural")
    start = time.perf_counter()
    train(TrainConfig(shards=tiny_shards, epochs=3, steps_per_epoch=1, lr_schedule="step", lr_milestones="1,2",
                      dropout=0.0, pca_std=0.0, precision="fp32", logdir=logdir, run_name="r", **SMALL))
    return {"run": logdir / "r", "wall": time.perf_counter() - start, "shards": tiny_shards}


@pytest.fixture(scope="module")
def scripted_run(tiny_shards, tmp_path_factory) -> dict:
    """3 epochs whose holdout error@1 reads 0.6, 0.2, 0.5: epoch 1 is the best, not the last."""
    import train.loop as loop

    logdir = tmp_path_factory.mktemp("scripted")
    real = loop.evaluate
    script = iter([0.6, 0.2, 0.5])

    def scripted(*args, **kwargs):
        result = real(*args, **kwargs)
        return {**result, "error@1": next(script)} if kwargs.get("desc") == "holdout" else result
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop, "evaluate", scripted)
        train(TrainConfig(shards=tiny_shards, epochs=3, steps_per_epoch=1, logdir=logdir, run_name="r", **SMALL))
    return {"run": logdir / "r", "shards": tiny_shards}


def reference_eval(checkpoint: Path, shards: Path, split: str, views: int) -> dict:
    """§4.1 written out: PIL-decoded patches, the views sliced by hand, softmax averaged."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model = AlexNet(state["num_classes"], Architecture(**state["architecture"])).eval()
    model.load_state_dict(state["model"])
    norm, crop = state["normalization"], state["architecture"]["crop"]
    manifest = read_manifest(shards)
    hits1 = hits5 = n = 0
    loss = 0.0
    for path in manifest.shard_paths(shards, split):
        for s in iter_shard(path):
            img = torch.from_numpy(np.array(Image.open(io.BytesIO(s.jpg)).convert("RGB"))).permute(2, 0, 1)
            h, w = img.shape[1:]
            boxes = [(0, 0), (0, w - crop), (h - crop, 0), (h - crop, w - crop), ((h - crop) // 2, (w - crop) // 2)]
            crops = [img[:, t:t + crop, l:l + crop] for t, l in (boxes[4:] if views == 1 else boxes)]
            crops += [c.flip(-1) for c in crops] if views == 10 else []
            x = (torch.stack(crops).float() - norm["mean"]) / norm["std"]
            with torch.no_grad():
                p = F.softmax(model(x), dim=1).mean(0)
            top = p.topk(min(5, len(p))).indices.tolist()
            hits1 += top[0] == s.label
            hits5 += s.label in top
            loss -= float(p[s.label].clamp_min(1e-12).log())
            n += 1
    return {"error@1": 1 - hits1 / n, "error@5": 1 - hits5 / n, "loss": loss / n, "samples": n}


def rows_of(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# ---- the coverage list ---------------------------------------------------------------------------
def test_every_field_is_covered(natural_run, tiny_shards):
    run = natural_run["run"]
    actual = {
        "stats.json": set(json.loads((tiny_shards / "stats.json").read_text())),
        "manifest.json": manifest_fields(json.loads((tiny_shards / "manifest.json").read_text())),
        "results.json": set(json.loads((run / "results.json").read_text()))
        | {f"metrics.{k}" for k in json.loads((run / "results.json").read_text())["metrics"]} | {"real"},
        "metrics.jsonl": {f for row in rows_of(run) for f in row}
        | {f"{k}.{sub}" for row in rows_of(run) for k in ("train", "holdout", "lr_drop") if k in row for sub in row[k]},
        "checkpoint": set(torch.load(run / "last.pt", map_location="cpu", weights_only=True)) | {"in_epoch"},
        "config.json": set(json.loads((run / "config.json").read_text())),
    }
    for kind, fields in actual.items():
        assert fields == set(FIELDS[kind]), (kind, sorted(fields ^ set(FIELDS[kind])))
    for test in {t for checks in FIELDS.values() for t in checks.values()}:
        module, name = test.split("::")
        assert hasattr(importlib.import_module(Path(module).stem), name), test


# ---- the checks ---------------------------------------------------------------------------------
def test_manifest_fields(tiny_shards):
    d = json.loads((tiny_shards / "manifest.json").read_text())
    assert d["format"] == "alexnet-shards/2" and d["layout"] == "kaggle-imagenet" and d["task"] == "kaggle-3-classes"
    mapping = (tiny_shards.parent / "src" / "LOC_synset_mapping.txt").read_text().splitlines()
    assert d["classes"] == [{"index": i, "wnid": line.split()[0], "name": line.split(" ", 1)[1]}
                            for i, line in enumerate(mapping)]
    for split, info in d["splits"].items():
        counts = []
        for name in info["shards"]:
            path = tiny_shards / name
            with tarfile.open(path) as tar:
                members = [m.name for m in tar if m.isfile()]
            counts.append(len(members) // 3)
            assert info["shard_bytes"][info["shards"].index(name)] == path.stat().st_size
            assert info["shard_sha256"][info["shards"].index(name)] == hashlib.sha256(path.read_bytes()).hexdigest()
            with tarfile.open(path) as tar:
                jpg = tar.extractfile(members[0]).read()
            assert Image.open(io.BytesIO(jpg)).size == (d["patch_size"], d["patch_size"])
        assert info["shard_samples"] == counts and info["samples"] == sum(counts)
        assert all(c == d["prep"]["shard_size"] for c in counts[:-1]) and counts[-1] <= d["prep"]["shard_size"]
    assert d["prep"]["holdout"] == d["splits"]["holdout"]["samples"]
    assert {k: d["prep"][k] for k in ("size", "quality", "resample", "seed")} == \
        {"size": d["patch_size"], "quality": 90, "resample": "bilinear", "seed": 0}
    from importlib import metadata
    assert d["versions"]["python"] == platform.python_version() and d["versions"]["numpy"] == np.__version__
    try:
        pillow = metadata.version("pillow-simd")
    except metadata.PackageNotFoundError:
        pillow = metadata.version("pillow")
    assert d["versions"]["pillow"] == pillow


def test_patch_bytes_follow_size_quality_and_resample(tmp_path):
    """The prep fields size, quality and resample, reproduced with plain Pillow on an image
    small enough that no DCT scaling applies."""
    from make_fixtures import random_image
    from prep.config import PrepConfig
    from prep.detect_layout import read_source
    from prep.write_shards import write_dataset

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / "src" / c).mkdir(parents=True)
        for i in range(5):
            random_image(rng, 300, 200).save(tmp_path / "src" / c / f"{i}.png")
    write_dataset(read_source(tmp_path / "src", None), PrepConfig(src=tmp_path / "src", size=96, quality=70,
                                                                    resample="bicubic", holdout=1, workers=1),
                  tmp_path / "o")
    manifest = read_manifest(tmp_path / "o")
    for s in iter_shard(manifest.shard_paths(tmp_path / "o", "train")[0]):
        img = Image.open(tmp_path / "src" / s.meta["source"]).convert("RGB")
        scale = 96 / 200
        left = (round(300 * scale) - 96) // 2
        box = (left / scale, 0, (left + 96) / scale, 200)
        buf = io.BytesIO()
        img.resize((96, 96), Image.Resampling.BICUBIC, box=box).save(buf, "JPEG", quality=70)
        assert s.jpg == buf.getvalue()


def git_state() -> str:
    """The commit and whether tracked files differ from it, asked of git directly (a copy of the
    tree that is no checkout -- the mutation check's -- has none)."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode != 0:
        return "unknown (not a git checkout)"
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return head.stdout.strip() + ("-dirty" if dirty else "")


def test_git_hash_is_the_code_loaded_at_start(monkeypatch, tmp_path):
    """A multi-day run's results.json names the commit it started from, even when the checkout
    moves on meanwhile (here: the checkout vanishes, as if REPO were a folder git knows nothing of)."""
    from train import cli, run_folder
    run_folder.git_hash.cache_clear()
    monkeypatch.setattr(cli, "app", lambda **_: None)
    cli.main()  # the command's start asks git once
    assert run_folder.git_hash.cache_info().currsize == 1, "alexnet-train did not ask git at start"
    started = run_folder.git_hash()
    assert started == git_state()
    monkeypatch.setattr(run_folder, "REPO", tmp_path)
    assert run_folder.git_hash() == started
    run_folder.git_hash.cache_clear()
    assert run_folder.git_hash() == "unknown (not a git checkout)"
    run_folder.git_hash.cache_clear()


def test_results_fields(natural_run):
    run, shards = natural_run["run"], natural_run["shards"]
    r = json.loads((run / "results.json").read_text())
    manifest = read_manifest(shards)
    ten = reference_eval(run / "best.pt", shards, "val", 10)
    centre = reference_eval(run / "best.pt", shards, "val", 1)
    assert (r["task"], r["classes"], r["split"], r["epochs"]) == (manifest.task, manifest.num_classes, "val", 3)
    assert r["samples"] == ten["samples"] == sum(1 for p in manifest.shard_paths(shards, "val") for _ in iter_shard(p))
    assert r["error@1"] == pytest.approx(ten["error@1"]) and r["error@5"] == pytest.approx(ten["error@5"])
    assert r["centre_error@1"] == pytest.approx(centre["error@1"])
    assert r["centre_error@5"] == pytest.approx(centre["error@5"])
    m = r["metrics"]
    assert m["loss"] == pytest.approx(ten["loss"], rel=1e-4) and m["centre_loss"] == pytest.approx(centre["loss"],
                                                                                                  rel=1e-4)
    assert {k: m[k] for k in ("error@1", "error@5", "centre_error@1", "centre_error@5", "samples")} == \
        {k: r[k] for k in ("error@1", "error@5", "centre_error@1", "centre_error@5", "samples")}
    assert r["train_wall_s"] == rows_of(run)[-1]["wall_s"]  # the whole run's, not best.pt's epoch's
    assert 0 < r["eval_wall_s"] and r["train_wall_s"] + r["eval_wall_s"] <= natural_run["wall"]
    assert r["device"] == "cpu" and r["git"] == git_state()


def test_final_evaluation_uses_the_best_epoch_not_the_last(scripted_run):
    run, shards = scripted_run["run"], scripted_run["shards"]
    best = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
    last = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    assert (best["epoch"], last["epoch"], last["best_epoch"]) == (1, 2, 1)
    r = json.loads((run / "results.json").read_text())
    from_best = reference_eval(run / "best.pt", shards, "val", 10)["loss"]
    from_last = reference_eval(run / "last.pt", shards, "val", 10)["loss"]
    # the reference decodes with PIL, the run with libjpeg-turbo: ~1e-5 apart on the same weights
    # (the other comparisons here allow 1e-4); the two epochs' weights are further apart than that
    assert abs(from_best - from_last) > 1e-3, (from_best, from_last)
    assert r["metrics"]["loss"] == pytest.approx(from_best, rel=1e-4)


def test_metrics_rows(natural_run, tiny_shards):
    from train.loader import TrainStream, iterate_train_batches
    from train.model import build_model

    run = natural_run["run"]
    rows = rows_of(run)
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert [r["lr"] for r in rows] == pytest.approx([0.01, 0.001, 0.0001])  # ÷10 after epochs 0 and 1
    for row, following in zip(rows, rows[1:]):
        assert row["lr_drop"] == {"epoch": row["epoch"], "holdout_error": row["holdout"]["error@1"],
                                  "lr": pytest.approx(following["lr"])}
    assert "lr_drop" not in rows[2]
    holdout = reference_eval(run / "last.pt", tiny_shards, "holdout", 1)
    assert rows[2]["holdout"] == {"error@1": pytest.approx(holdout["error@1"]), "views": 1,
                                  "error@5": pytest.approx(holdout["error@5"]), "samples": holdout["samples"],
                                  "loss": pytest.approx(holdout["loss"], rel=1e-4)}
    # epoch 0's one step: the loss of the first batch under the initial weights, recomputed
    cfg = TrainConfig(**json.loads((run / "config.json").read_text())["config"])
    torch.manual_seed(cfg.seed)
    model = build_model(3, cfg.architecture(), cfg.init).train()
    manifest = read_manifest(tiny_shards)
    stream = TrainStream.of_train_split(manifest, tiny_shards, crop=224, buffer=cfg.shuffle_buffer, seed=cfg.seed,
                                        steps=cfg.steps_per_epoch, batch_size=cfg.batch_size)
    images, labels, flips = next(iterate_train_batches(stream, 1, False))
    state = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    x = torch.where(flips[:, None, None, None], images.float().flip(-1), images.float())
    x = (x - state["normalization"]["mean"]) / state["normalization"]["std"]
    with torch.no_grad():
        loss = float(F.cross_entropy(model(x), labels))
    assert rows[0]["train"]["loss"] == pytest.approx(loss, rel=1e-4)
    for row in rows:  # images per second: a step of 8 images within the run's measured time
        assert cfg.batch_size / row["train"]["images_per_s"] == pytest.approx(row["train"]["seconds"])
    walls = [0.0] + [r["wall_s"] for r in rows]  # the run's seconds so far: each epoch's training and holdout
    for before, row, after in zip(walls, rows, walls[1:]):
        assert before + row["train"]["seconds"] - 0.1 <= after
    assert walls[-1] <= natural_run["wall"]


def test_config_fields(natural_run, tiny_shards):
    """config.json: the resolved config (every default filled in), the code and the machine."""
    from train.run_folder import git_hash

    config = json.loads((natural_run["run"] / "config.json").read_text())
    resolved = TrainConfig(shards=tiny_shards, epochs=3, steps_per_epoch=1, lr_schedule="step", lr_milestones="1,2",
                           dropout=0.0, pca_std=0.0, precision="fp32", logdir=natural_run["run"].parent, run_name="r",
                           **SMALL).resolved(256)
    assert config["config"] == resolved.to_dict() and config["config"]["learn_rate"] == 0.01
    assert config["git"] == git_hash() and config["torch"] == torch.__version__
    assert (config["world_size"], config["device"], config["per_rank_batch"]) == (1, "cpu", 8)
    assert config["steps_per_epoch"] == 1 and config["architecture"] == resolved.architecture().to_dict()
    state = torch.load(natural_run["run"] / "last.pt", map_location="cpu", weights_only=True)
    assert re.fullmatch(r"[0-9a-f]{32}", config["run_id"]) and config["run_id"] == state["identity"]["run_id"]


def test_checkpoint_fields(natural_run, scripted_run, tiny_shards):
    run = natural_run["run"]
    state = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    rows = rows_of(run)
    manifest, stats = read_manifest(tiny_shards), read_stats(tiny_shards)
    config = json.loads((run / "config.json").read_text())["config"]
    assert (state["format"], state["arch"]) == (3, "alexnet-krizhevsky-2012")
    assert state["identity"] == {"run_id": json.loads((run / "config.json").read_text())["run_id"],
                                 "dataset": manifest.fingerprint()}
    assert manifest.fingerprint() == hashlib.sha256(json.dumps({
        "task": manifest.task, "patch_size": manifest.patch_size, "classes": manifest.class_table(),
        "splits": {n: [i.shards, i.shard_samples, i.shard_sha256] for n, i in sorted(manifest.splits.items())}},
        sort_keys=True).encode()).hexdigest()
    assert state["architecture"] == {"lrn": "as-run", "conv1_padding": "as-run", "dropout_mode": "paper",
                                     "dropout": 0.0, "pool_size": 3, "towers": "two", "crop": 224}
    assert state["num_classes"] == 3 and state["classes"] == manifest.class_table()
    assert state["patch_size"] == manifest.patch_size and state["epoch"] == 2 and state["config"] == config
    mean_image = np.load(tiny_shards / "mean_image.npy")
    top = (256 - 224) // 2
    expected_mean = torch.from_numpy(mean_image[top:top + 224, top:top + 224].transpose(2, 0, 1).copy()).float()
    norm = state["normalization"]
    assert torch.equal(norm["mean"], expected_mean) and torch.equal(norm["std"], torch.ones(3, 1, 1))
    assert norm["eigenvalues"].tolist() == stats.eigenvalues and norm["eigenvectors"].tolist() == stats.eigenvectors
    errors = [r["holdout"]["error@1"] for r in rows]
    assert state["best_error"] == min(errors) and state["best_epoch"] == errors.index(min(errors))
    assert state["metrics_row"] == rows[-1]
    assert state["schedule"] == {"kind": "step", "window": [errors[2]],
                                 "drops": [rows[0]["lr_drop"], rows[1]["lr_drop"]]}
    groups = state["optimizer"]["param_groups"]
    assert sorted({g["lr"] for g in groups}) == pytest.approx([0.0001, 0.0002])  # weights ε, biases 2ε (epsB)
    # the optimizer's velocities: §5's w <- w + v, so with one step per epoch last.pt's weights
    # are best.pt's (the epoch before, in the scripted run) plus last.pt's velocity
    best = torch.load(scripted_run["run"] / "best.pt", map_location="cpu", weights_only=True)
    last = torch.load(scripted_run["run"] / "last.pt", map_location="cpu", weights_only=True)
    names = list(last["model"])
    order = [n for n in names if n.endswith("weight")] + [n for n in names if not n.endswith("weight")]
    velocity = {order[i]: s["velocity"] for i, s in last["optimizer"]["state"].items()}
    assert sorted(velocity) == sorted(names)
    for name in names:
        torch.testing.assert_close(last["model"][name], best["model"][name] + velocity[name], rtol=0, atol=1e-6)
    # the model: its holdout numbers are the last row's (test_metrics_rows recomputes them)
    assert reference_eval(run / "last.pt", tiny_shards, "holdout", 1)["error@1"] == pytest.approx(errors[2])
