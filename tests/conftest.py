import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # make_fixtures

import exit_watchdog  # noqa: E402
from make_fixtures import write_kaggle  # noqa: E402

_EXIT_STATUS = [0]


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS[0] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    exit_watchdog.arm(_EXIT_STATUS[0])


@pytest.fixture(scope="session")
def kaggle_src(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("kaggle")
    planted = write_kaggle(root)
    return root, planted


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory) -> Path:
    """3 learnable classes in the Kaggle layout -> shards + stats, through the real prep path."""
    from prep.compute_stats import compute_rgb_stats
    from prep.config import PrepConfig
    from prep.detect_layout import read_source
    from prep.synthetic import write_synthetic_kaggle
    from prep.write_shards import write_dataset

    root = tmp_path_factory.mktemp("tiny")
    write_synthetic_kaggle(root / "src", classes=3, train_per_class=16, val_per_class=4, seed=1)
    out = root / "shards"
    write_dataset(read_source(root / "src", None), PrepConfig(src=root / "src", shard_size=8, workers=2), out)
    compute_rgb_stats(out, workers=2)
    return out


@pytest.fixture(scope="session")
def trained(tiny_shards, tmp_path_factory) -> Path:
    """A fast-dev-run checkpoint of tiny_shards, for the tests that only need one to exist (read only)."""
    from small_run import SMALL
    from train.config import TrainConfig
    from train.loop import train

    runs = tmp_path_factory.mktemp("runs")
    train(TrainConfig(shards=tiny_shards, fast_dev_run=True, logdir=runs, run_name="r", **SMALL))
    return runs / "r" / "best.pt"
