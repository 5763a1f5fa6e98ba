"""A run is replayable from its own record: `alexnet-train --config runs/x/config.json`
takes every field from the file (never its --resume), flags given beside it winning; presets are
such files (`--preset demo` reads train/presets/demo.json)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import train.loop
from command_helpers import one_line_error, train_cli
from train.config import PRESET_DIR

ROOT = Path(__file__).resolve().parents[1]
PATHS = ("shards", "logdir", "resume", "real_labels", "run_name")  # where a run lived, not what it trained


def result_rows() -> list[Path]:
    """The docs/ run folders the README's results table links."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Results"):]
    section = section[:section.index("\n## ", 1)]
    return [ROOT / "docs" / name / "config.json" for name in sorted(set(re.findall(r"\(docs/([^)/]+)/README\.md\)",
                                                                                    section)))]


@pytest.fixture
def captured(monkeypatch):
    seen = []
    monkeypatch.setattr(train.loop, "train", lambda cfg: seen.append(cfg) or {})
    return seen


def test_the_readmes_result_rows_are_linked_with_their_config():
    rows = result_rows()
    assert len(rows) >= 3 and all(path.is_file() for path in rows), rows


@pytest.mark.parametrize("record", result_rows(), ids=lambda p: p.parent.name)
def test_each_result_row_replays_to_its_resolved_config(record, tiny_shards, captured):
    result = train_cli("--config", record, "--shards", tiny_shards)
    assert result.exit_code == 0, result.output
    recorded = json.loads(record.read_text())["config"]
    replayed = captured[0].resolved(256).to_dict()
    assert {k: v for k, v in replayed.items() if k not in PATHS} == \
        {k: v for k, v in recorded.items() if k not in PATHS}
    assert replayed["resume"] is None  # a replay is a new run


def test_flags_beside_the_file_win_and_the_preset_is_a_file(tiny_shards, captured, tmp_path):
    record = result_rows()[0]
    assert train_cli("-c", record, "--shards", tiny_shards, "--epochs", "3", "--lr", "0.02").exit_code == 0
    assert captured[-1].epochs == 3 and captured[-1].learn_rate == 0.02
    assert captured[-1].seed == json.loads(record.read_text())["config"]["seed"]
    assert train_cli("--preset", "demo", "--shards", tiny_shards).exit_code == 0
    preset = json.loads((PRESET_DIR / "demo.json").read_text())["config"]
    assert {k: getattr(captured[-1], k) for k in preset} == preset


def test_an_unknown_field_or_a_value_out_of_range_is_refused_naming_it(tiny_shards, tmp_path, captured):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"config": {"seed": 1, "learning_rate": 0.1}}))
    one_line_error(train_cli("-c", bad, "--shards", tiny_shards), 2, str(bad), "learning_rate")
    bad.write_text(json.dumps({"epochs": "ninety"}))
    one_line_error(train_cli("-c", bad, "--shards", tiny_shards), 2, str(bad), "epochs")
    bad.write_text(json.dumps({"config": {"learn_rate": 1e9}}))
    one_line_error(train_cli("-c", bad, "--shards", tiny_shards), 2, "--learn-rate")
    one_line_error(train_cli("--preset", "fast", "--shards", tiny_shards), 2, "demo")
    assert not captured


# one value other than the default for every field: a field the replay dropped would show
EVERY_FIELD_CHANGED = dict(
    task="mnist", shard_urls="pipe:cat /data/{name}", real_labels="/data/real.json", verify_checksums=True, epochs=7,
    batch_size=64, optimizer="adam", learn_rate=0.003, bias_lr_mult=1.0, momentum=0.8, weight_decay=0.001,
    lr_schedule="step", lr_patience=3, lr_min_delta=0.5, lr_milestones="10,20", lr_drops=2, lrn="text",
    conv1_padding="symmetric", dropout=0.3, dropout_mode="inverted", pool_size=2, towers="one", init="paper",
    crop=192, pca_std=0.2, normalize="std", seed=7, workers=3, shuffle_buffer=500, decode="device",
    steps_per_epoch=11, eval_batch_size=32, device="cpu", precision="fp32", compile=True, logdir="/elsewhere",
    run_name="replayed", extra_logging=True, fast_dev_run=True, resume="/old/last.pt", checkpoint_every=5.0,
    figures=False)


def test_every_field_of_the_file_is_replayed(tiny_shards, captured, tmp_path):
    from dataclasses import fields

    from train.config import TrainConfig

    defaults = TrainConfig().to_dict()
    assert sorted(EVERY_FIELD_CHANGED) == sorted(f.name for f in fields(TrainConfig) if f.name != "shards")
    assert all(EVERY_FIELD_CHANGED[k] != defaults[k] for k in EVERY_FIELD_CHANGED)
    record = tmp_path / "config.json"
    record.write_text(json.dumps({"config": {**EVERY_FIELD_CHANGED, "shards": str(tiny_shards)}, "git": "x"}))
    assert train_cli("-c", record).exit_code == 0
    replayed = captured[0].to_dict()
    assert replayed == {**EVERY_FIELD_CHANGED, "shards": str(tiny_shards), "resume": None}
