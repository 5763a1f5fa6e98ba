"""Figure 3 grid layout, Figure 4 top-5 and exact nearest neighbours, and the results table."""
import numpy as np
import pytest
import torch

from shared.manifest import ClassInfo, Manifest
from train.figures import KERNEL_ZOOM, PER_ROW, class_labels, kernel_grid, nearest_neighbours, pick_spread, top5
from train.run_folder import format_table
from shared.json_files import write_json_atomic as write_json


def test_kernel_grid_layout_groups_top_and_bottom():
    w = torch.zeros(96, 3, 11, 11)
    w[:48, 0] = 1.0  # group 1 ("GPU 1"): pure red kernels
    w[48:, 2] = 1.0  # group 2: pure blue
    w[:, :, 0, 0] += 0.5  # a brighter corner so each kernel has contrast
    grid = kernel_grid(w)
    cell = 11 * KERNEL_ZOOM + 1
    rows = 48 // PER_ROW
    gap = cell // 2
    assert grid.shape == (2 * rows * cell + gap, PER_ROW * cell, 3) and grid.dtype == np.uint8
    top = grid[: rows * cell].reshape(-1, 3)
    bottom = grid[rows * cell + gap:].reshape(-1, 3)
    # kernels contrast-normalised: the red channel spans 0..255 in the top half only
    assert top[:, 0].max() == 255 and top[:, 2][top[:, 0] < 255].max() < 255
    assert bottom[:, 2].max() == 255
    assert (grid[rows * cell: rows * cell + gap] == 255).all()  # white gap between the groups
    k0 = grid[:11 * KERNEL_ZOOM, :11 * KERNEL_ZOOM]
    # one scale per kernel over all three channels: corner (1.5, .5, .5), elsewhere (1, 0, 0)
    assert (k0[:KERNEL_ZOOM, :KERNEL_ZOOM] == [255, 85, 85]).all()
    assert (k0[KERNEL_ZOOM:, KERNEL_ZOOM:] == [170, 0, 0]).all()


def test_top5_sorted_and_probabilities_sum_at_most_one():
    probs = torch.softmax(torch.randn(10, 30), dim=1)
    values, indices = top5(probs)
    assert values.shape == (10, 5)
    assert (values[:, :-1] >= values[:, 1:]).all()
    assert (values.sum(1) <= 1 + 1e-6).all()
    assert torch.equal(probs.gather(1, indices), values)


def test_nearest_neighbours_are_exact():
    rng = np.random.default_rng(0)
    pool, queries = rng.normal(size=(500, 64)), rng.normal(size=(7, 64))
    dist, idx = nearest_neighbours(torch.from_numpy(queries).float(), torch.from_numpy(pool).float(), 5)
    brute = np.linalg.norm(queries[:, None, :].astype(np.float32).astype(np.float64)
                           - pool[None].astype(np.float32).astype(np.float64), axis=2)
    assert np.array_equal(idx.numpy(), np.argsort(brute, axis=1, kind="stable")[:, :5])
    np.testing.assert_allclose(dist.numpy(), np.sort(brute, axis=1)[:, :5], rtol=1e-9)


def test_names_disambiguated_by_wnid_and_queries_spread():
    m = Manifest("imagenet", "kaggle-imagenet", 256, [ClassInfo(0, "n02012849", "crane"),
                                                  ClassInfo(1, "n03126707", "crane"),
                                                  ClassInfo(2, "n01440764", "tench, Tinca tinca")], {}, {}, {})
    assert class_labels(m) == ["crane (n02012849)", "crane (n03126707)", "tench"]
    assert pick_spread(torch.tensor([0, 0, 0, 1, 1, 2]), 4).tolist() == [0, 3, 5, 1]


def test_table_matches_results_files(tmp_path):
    rows = {"imagenet": (0.41, 0.19, 0.43, 0.2), "cifar10": (0.12, 0.01, 0.14, 0.02)}
    for task, (e1, e5, c1, c5) in rows.items():
        (tmp_path / task).mkdir()
        write_json(tmp_path / task / "results.json", {"task": task, "split": "val", "samples": 50000, "epochs": 90,
                                                      "error@1": e1, "error@5": e5, "centre_error@1": c1,
                                                      "centre_error@5": c5})
    table = format_table([tmp_path / "imagenet", tmp_path / "cifar10"]).splitlines()
    assert table[2] == ("| imagenet | imagenet | val | 50,000 | 90 | 0.410 / 0.190 | 0.430 / 0.200 | – | "
                        "0.407 / 0.182 | 0.480 / 0.250 |")
    assert table[3] == "| cifar10 | cifar10 | val | 50,000 | 90 | 0.120 / 0.010 | 0.140 / 0.020 | – | – | 0.130 / 0.010 |"
    published = table[table.index("Published figures (not runs of this toolkit):") + 4:]
    assert [row.split(" | ")[1] for row in published] == ["imagenet", "imagenet", "imagenet",
                                                          "imagenetv2-matched-frequency"]
    assert "| the paper, one CNN | imagenet | 0.407 / 0.182 | – | – |" in published[0]
    assert "0.435 / 0.209 | 0.369 |" in published[2] and "0.560 / 0.326" in published[3]
    with pytest.raises(FileNotFoundError, match="results.json"):
        format_table([tmp_path / "missing"])
    (tmp_path / "short").mkdir()
    write_json(tmp_path / "short" / "results.json", {"task": "imagenet", "split": "val", "samples": 49000, "epochs": 90,
                                                    "error@1": 0.4, "error@5": 0.2, "centre_error@1": 0.4,
                                                    "centre_error@5": 0.2, "complete": False})
    assert "| 49,000 (incomplete) |" in format_table([tmp_path / "short"])
