"""The loop end to end on generated shards: fast-dev-run, overfitting, exact resume, bad input."""
import itertools
import json
import shutil
from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

from shared.manifest import read_manifest
from train.augment import DeviceAugment, input_stats
from train.checkpoint import load_checkpoint
from train.cli import app
from train.config import TrainConfig
from train.loader import EvalShards, SampleRules
from train.dataset_folder import load_dataset
from train.device import Compute
from train.distributed import Dist
from train.loop import train, train_one_epoch
from train.model import Architecture, build_model
from train.optim import build_optimizer
from small_run import SMALL

CPU = torch.device("cpu")


def test_fast_dev_run_end_to_end(tiny_shards, tmp_path):
    result = CliRunner().invoke(app, ["--shards", str(tiny_shards), "--fast-dev-run", "--batch-size", "8",
                                      "--workers", "2", "--logdir", str(tmp_path), "--run-name", "dev"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "dev"
    for name in ("config.json", "metrics.jsonl", "results.json", "last.pt", "best.pt",
                 "figure3_kernels.png", "figure4_top5.png", "figure4_neighbours.png", "curve.png"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["batch_size"] == 8 and config["git"]
    assert config["config"]["momentum"] == 0.9 and config["config"]["learn_rate"] == 0.01
    results = json.loads((run / "results.json").read_text())
    assert results["split"] == "val" and results["samples"] == read_manifest(tiny_shards).splits["val"].samples
    assert list(run.glob("events.out.tfevents*"))
    assert "| kaggle-3-classes | val |" in result.output
    # a saved checkpoint evaluated alone: 10 views over the whole val split, results.json
    evaluated = CliRunner().invoke(app, ["evaluate", "--checkpoint", str(run / "best.pt"), "--shards",
                                         str(tiny_shards), "--out", str(tmp_path / "eval"), "--workers", "1",
                                         "--no-figures", "--device", "cpu"])
    assert evaluated.exit_code == 0, evaluated.output
    alone = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert alone["samples"] == results["samples"] and alone["epochs"] == 1
    # the run's final evaluation used best.pt: the same model scores the same
    for key in ("error@1", "error@5", "centre_error@1", "centre_error@5"):
        assert alone[key] == results[key], key


def test_loop_overfits_a_tiny_batch(tiny_shards):
    manifest, stats = load_dataset(tiny_shards)
    rules = SampleRules(manifest.patch_size, manifest.num_classes)
    images, labels = zip(*itertools.islice(EvalShards(manifest.shard_paths(tiny_shards, "train"), rules), 6))
    batch = (torch.stack([img[:, 16:240, 16:240] for img in images]), torch.tensor(labels), None)
    torch.manual_seed(0)
    model = build_model(manifest.num_classes, Architecture(dropout=0.0), init="caffe")
    opt = build_optimizer(model, "adam", 1e-4, 0.9, 0.0)
    norm = DeviceAugment(input_stats(stats, "mean", 224), 0.0, torch.device("cpu"))
    compute = Compute(CPU, torch.autocast("cpu", enabled=False), Dist(), norm)
    first = train_one_epoch(model, opt, itertools.repeat(batch), compute, steps=1, generator=torch.Generator(), epoch=0)
    train_one_epoch(model, opt, itertools.repeat(batch), compute, steps=30, generator=torch.Generator(), epoch=1)
    assert first["loss"] > 0.5
    with torch.no_grad():
        model.eval()
        loss = torch.nn.functional.cross_entropy(model(norm(batch[0])), batch[1])
    assert loss < 0.05


@pytest.mark.slow
def test_resume_gives_the_same_weights(tiny_shards, tmp_path):
    base = TrainConfig(shards=tiny_shards, epochs=2, steps_per_epoch=2, logdir=tmp_path, **SMALL)
    train(replace(base, run_name="straight"))
    train(replace(base, run_name="first", epochs=1))
    train(replace(base, run_name="resumed", resume=tmp_path / "first" / "last.pt"))
    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert a["epoch"] == b["epoch"] == 1
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for s1, s2 in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(s1["velocity"], s2["velocity"])


def test_missing_stats_refused(tiny_shards, tmp_path):
    copy = tmp_path / "nostats"
    shutil.copytree(tiny_shards, copy)
    (copy / "stats.json").unlink()
    with pytest.raises(FileNotFoundError, match="alexnet-prep stats"):
        load_dataset(copy)


def test_help_cites_the_paper():
    out = CliRunner().invoke(app, ["--help"]).output
    for section in ("§5", "§4.1", "§4.2", "§2"):
        assert section in out


def test_shards_read_through_pipe_urls(tiny_shards, tmp_path):
    """Shards streamed by a command (as from object storage); manifest and stats stay local."""
    cfg = TrainConfig(shards=tiny_shards, shard_urls=f"pipe:cat {tiny_shards}/{{name}}", fast_dev_run=True,
                      logdir=tmp_path, run_name="pipe", **SMALL)
    results = train(cfg)
    assert results["samples"] > 0 and (tmp_path / "pipe" / "results.json").is_file()
    with pytest.raises(ValueError, match="--shard-urls pipe:cat x: expected a template with"):
        train(replace(cfg, shard_urls="pipe:cat x"))


class Spy(torch.nn.Module):
    """Records what the loop feeds the model; a linear layer so that backward works."""

    def __init__(self, classes: int):
        super().__init__()
        self.fc = torch.nn.Linear(3, classes)
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.fc(x.mean(dim=(2, 3)))


def test_loop_mirrors_and_lights_what_the_loader_asks(tiny_shards):
    """train_one_epoch hands the loader's flip flags and its lighting draws to the device
    augmentation: the model sees exactly DeviceAugment(images, alphas, flips)."""
    manifest, stats = load_dataset(tiny_shards)
    augment = DeviceAugment(input_stats(stats, "mean", 224), 0.1, torch.device("cpu"))
    images = torch.randint(0, 256, (4, 3, 224, 224), dtype=torch.uint8)
    labels, flips = torch.tensor([0, 1, 2, 0]), torch.tensor([True, False, True, False])
    spy = Spy(manifest.num_classes)
    opt = torch.optim.SGD(spy.parameters(), lr=0.0)
    train_one_epoch(spy, opt, iter([(images, labels, flips)]), Compute(CPU, torch.autocast("cpu", enabled=False),
                    Dist(), augment), steps=1, generator=torch.Generator().manual_seed(5), epoch=0)
    alphas = augment.draw_alphas(4, torch.Generator().manual_seed(5))
    expected = augment(images, alphas, flips)
    torch.testing.assert_close(spy.seen[0], expected, rtol=0, atol=0)
    unflipped = augment(images, alphas, None)
    assert not torch.equal(spy.seen[0][0], unflipped[0]) and torch.equal(spy.seen[0][1], unflipped[1])


@pytest.mark.slow
def test_loop_steps_the_schedule_and_logs_the_drop(tiny_shards, tmp_path):
    """A step schedule with a milestone after epoch 1: metrics.jsonl shows the drop and the
    next epoch's lr (a loop that never calls schedule.step keeps 0.01)."""
    cfg = TrainConfig(shards=tiny_shards, epochs=3, steps_per_epoch=1, logdir=tmp_path, run_name="s",
                      lr_schedule="step", lr_milestones="1,2", lr_drops=1, **SMALL)
    train(cfg)
    rows = [json.loads(line) for line in (tmp_path / "s" / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in rows] == pytest.approx([0.01, 0.001, 0.001])
    assert rows[0]["lr_drop"]["lr"] == pytest.approx(0.001) and rows[0]["lr_drop"]["epoch"] == 0
    assert "lr_drop" not in rows[1]  # at most --lr-drops drops


def test_other_patch_sizes_train_with_the_derived_crop(tmp_path):
    """Shards of 128-pixel patches: the crop is 112 (224/256 of the patch), end to end."""
    from prep.compute_stats import compute_rgb_stats
    from prep.config import PrepConfig
    from prep.detect_layout import read_source
    from prep.synthetic import write_synthetic_kaggle
    from prep.write_shards import write_dataset

    write_synthetic_kaggle(tmp_path / "src", classes=3, train_per_class=12, val_per_class=2, seed=3)
    out = tmp_path / "shards"
    write_dataset(read_source(tmp_path / "src", None), PrepConfig(src=tmp_path / "src", size=128, shard_size=8,
                                                                  workers=1), out)
    compute_rgb_stats(out, workers=1)
    train(TrainConfig(shards=out, fast_dev_run=True, logdir=tmp_path, run_name="r128", **SMALL))
    config = json.loads((tmp_path / "r128" / "config.json").read_text())
    assert config["config"]["crop"] == 112 and config["architecture"]["crop"] == 112
    assert json.loads((tmp_path / "r128" / "results.json").read_text())["samples"] == 6
