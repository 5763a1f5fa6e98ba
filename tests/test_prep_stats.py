"""stats.json equals numpy on the same decoded pixels; integer accumulation is exact."""
import io
import json

import numpy as np
from PIL import Image

from make_fixtures import write_class_folders
from prep.compute_stats import compute_rgb_stats, summarise
from prep.config import PrepConfig
from prep.detect_layout import read_source
from prep.write_shards import write_dataset
from shared.manifest import read_manifest
from shared.shards import iter_shard
from shared.stats import read_stats


def test_stats_equal_numpy(tmp_path):
    """Every field of stats.json against numpy on the same pixels, decoded by Pillow (an
    independent decoder); shards of 100 and 35 images, two workers."""
    write_class_folders(tmp_path / "src", classes=("a", "b", "c"), per_class=50)
    out = tmp_path / "o"
    write_dataset(read_source(tmp_path / "src", None), PrepConfig(src=tmp_path / "src", shard_size=100, workers=2),
                  out)
    assert read_manifest(out).splits["train"].shard_samples == [100, 35]
    stats = compute_rgb_stats(out, workers=2)
    assert read_stats(out) == stats
    manifest = read_manifest(out)
    pixels = np.stack([np.asarray(Image.open(io.BytesIO(s.jpg)).convert("RGB"))
                       for p in manifest.shard_paths(out, "train") for s in iter_shard(p)])
    assert stats.image_count == len(pixels) == manifest.splits["train"].samples
    x = pixels.reshape(-1, 3).astype(np.float64)
    assert stats.pixel_count == len(x)
    exact = pixels.reshape(-1, 3).astype(np.int64)
    assert stats.sum_rgb == exact.sum(0).tolist()
    assert stats.sum_outer_rgb == (exact.T @ exact).tolist()
    np.testing.assert_allclose(stats.std_rgb, x.std(0), rtol=1e-10)  # numpy's float sums: 3e-12 off
    np.testing.assert_allclose(stats.mean_rgb, x.mean(0), rtol=1e-12)
    cov = np.cov(x, rowvar=False, bias=True)
    np.testing.assert_allclose(stats.covariance_rgb, cov, rtol=1e-9)
    values, vectors = np.array(stats.eigenvalues), np.array(stats.eigenvectors)
    assert values[0] >= values[1] >= values[2] > 0
    np.testing.assert_allclose(np.sort(values), np.linalg.eigvalsh(cov), rtol=1e-9)
    for lam, v in zip(values, vectors):
        np.testing.assert_allclose(cov @ v, lam * v, rtol=1e-8, atol=1e-8)
    mean_image = np.load(out / stats.mean_image)
    np.testing.assert_allclose(mean_image, pixels.mean(0), rtol=1e-12)
    assert json.loads((out / "stats.json").read_text())["split"] == "train"


def test_summarise_is_exact_beyond_float64():
    # ImageNet-scale sums (8.4e10 pixels) exceed 2^53; a float64 accumulator would lose them
    n = 84_000_000_000
    sums = [n * 120 + 1, n * 115 + 2, n * 100 + 3]
    outer = [[n * 120 * 120 + n * 3600 if i == j else n * 120 * 115 for j in range(3)] for i in range(3)]
    stats = summarise(1_280_000, n, sums, outer, "train")
    assert stats.mean_rgb[0] == (n * 120 + 1) / n
    assert abs(stats.covariance_rgb[0][0] - 3600.0) < 1e-6
