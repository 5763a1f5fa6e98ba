"""Figure 1's experiment on a tiny generated CIFAR-like set: the network of layers-80sec.cfg
without fc64, its curves, the epochs-to-25% arithmetic, the PNG and JSON."""
import json
import math

import numpy as np
import torch

from make_fixtures import random_image
from prep.compute_stats import compute_rgb_stats
from prep.config import PrepConfig
from prep.detect_layout import read_source
from prep.write_shards import write_dataset
from train.figure1 import Curve, FourLayerNet, figure1


def test_network_shapes_and_nonlinearity_only_difference():
    relu, tanh = FourLayerNet("relu"), FourLayerNet("tanh")
    assert [p.shape for p in relu.parameters()] == [p.shape for p in tanh.parameters()]
    assert sum(p.numel() for p in relu.parameters()) == 2432 + 25632 + 51264 + 10250
    sizes = []
    x = torch.zeros(1, 3, 32, 32)
    for stage in (lambda x: relu.max_pool(relu.conv1(x)), lambda x: relu.avg_pool(relu.conv2(x)),
                  lambda x: relu.avg_pool(relu.conv3(x))):
        x = stage(x)
        sizes.append(tuple(x.shape[1:]))
    assert sizes == [(32, 16, 16), (32, 8, 8), (64, 4, 4)]  # cuda-convnet's ceiling: 32 -> 16 -> 8 -> 4


def test_epochs_to_25_percent_interpolates():
    c = Curve("relu", 0.01, 0, [0.0, 0.5, 1.0, 1.5], [0.9, 0.4, 0.3, 0.2], 1.0)
    assert c.epochs_to() == 1.25
    assert Curve("tanh", 0.01, 0, [0.0, 0.5], [0.9, 0.8], 1.0).epochs_to() == math.inf


def test_figure1_command_end_to_end(tmp_path):
    rng = np.random.default_rng(0)
    for c in range(10):  # ten classes of 32x32 images, each class its own colour: learnable at once
        (tmp_path / "src" / f"c{c}").mkdir(parents=True)
        for i in range(24):
            img = np.asarray(random_image(rng, 32, 32), dtype=np.int32) // 4 + (c * 20)
            from PIL import Image
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(tmp_path / "src" / f"c{c}" / f"{i}.png")
    out = tmp_path / "shards"
    write_dataset(read_source(tmp_path / "src", None), PrepConfig(src=tmp_path / "src", size=32, shard_size=64,
                                                                  workers=1), out)
    compute_rgb_stats(out, workers=1)
    result = figure1(out, tmp_path / "fig", seeds=[1], rates=None, sweep_rates={"relu": [0.02], "tanh": [0.02]},
                     sweep_epochs=0.5, max_epochs={"relu": 2.0, "tanh": 2.0})
    assert (tmp_path / "fig" / "figure1.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "fig" / "figure1.json").read_text())
    assert saved["images"] == 240 and saved["complete"]
    for nl in ("relu", "tanh"):
        assert saved["rates"][nl] in [c["lr"] for c in saved["sweep"][nl]]
    assert {c["nonlinearity"] for c in saved["curves"]} == {"relu", "tanh"}
    assert "ratio_mean" in saved["summary"] and result["summary"]["paper_ratio"] == 6.0


def test_sweep_grows_the_grid_until_the_best_rate_is_inside(monkeypatch):
    """A grid whose best rate is its smallest is extended by halving (here the optimum is 0.0004)."""
    import train.figure1 as f

    def fake(x, y, nl, lr, seed, max_epochs, stop_below, desc):
        return Curve(nl, lr, seed, [0.0, 1.0], [0.9, 0.3 + abs(math.log(lr / 0.0004))], 1.0)

    monkeypatch.setattr(f, "train_curve", fake)
    swept = f.sweep(None, None, {"relu": [0.002, 0.005, 0.01]}, 1.0)
    assert [c.lr for c in swept["relu"]] == [0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01]
    assert f.best_rate(swept["relu"]) == 0.0005


def test_ratio_pairs_seeds_and_a_curve_that_never_reached_25_percent_is_null():
    from train.figure1 import describe_ratio, ratio_summary

    curves = [Curve("relu", 0.001, 1, [0.0, 1.0, 2.0], [0.9, 0.5, 0.2], 1.0),   # 25% at 1.833 epochs
              Curve("tanh", 0.01, 1, [0.0, 10.0, 11.0], [0.9, 0.3, 0.2], 1.0),  # 25% at 10.5 epochs
              Curve("relu", 0.001, 2, [0.0, 1.0], [0.9, 0.2], 1.0),             # 25% at 0.9286 epochs
              Curve("tanh", 0.01, 2, [0.0, 60.0], [0.9, 0.3], 1.0)]             # never
    s = ratio_summary(curves)
    assert s["tanh_epochs_to_25"] == [10.5, None] and s["pairs_not_reached"] == 1
    assert s["ratios"] == [10.5 / (1 + 0.25 / 0.3)] and s["ratio_mean"] == s["ratios"][0]
    json.dumps(s, allow_nan=False)  # strict JSON: no Infinity
    assert "1 seed(s) never reached 25%" in describe_ratio(s)


def test_quick_mode_uses_the_rates_the_recorded_sweep_chose():
    """--quick's rates are the ones the README's run chose (docs/figure1.json), not a guess."""
    from pathlib import Path

    from train.figure1 import QUICK_RATES, best_rate

    recorded = json.loads((Path(__file__).parents[1] / "docs" / "figure1.json").read_text())
    assert recorded["rates"] == QUICK_RATES
    for nl, curves in recorded["sweep"].items():
        assert best_rate([Curve(**c) for c in curves]) == QUICK_RATES[nl]
