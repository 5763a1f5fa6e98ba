import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # make_fixtures

from make_fixtures import write_kaggle  # noqa: E402


@pytest.fixture(scope="session")
def kaggle_src(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("kaggle")
    planted = write_kaggle(root)
    return root, planted
