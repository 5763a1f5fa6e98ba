"""§4.1 augmentation and §2 normalisation: crops, flips, PCA lighting, the ten test views."""
import random

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from shared.stats import RgbStats
from train.augment import Normalizer, augment_one_reference, centre_crop, random_crop_flip, ten_views
from train.loop import count_topk_correct


def make_stats() -> RgbStats:
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
    values = [5000.0, 300.0, 60.0]
    cov = (q @ np.diag(values) @ q.T).tolist()
    return RgbStats("train", 1, 1, [0, 0, 0], [[0] * 3] * 3, [120.0, 110.0, 100.0], [60.0, 58.0, 57.0],
                    cov, values, q.T.tolist())


def test_random_crop_bounds_and_flip_rate():
    img = torch.arange(3 * 256 * 256, dtype=torch.int64).reshape(3, 256, 256)
    rng = random.Random(0)
    flips, corners = 0, set()
    for _ in range(2000):
        patch = random_crop_flip(img, 224, rng)
        assert patch.shape == (3, 224, 224)
        flipped = bool(patch[0, 0, 0] > patch[0, 0, -1])
        flips += flipped
        top_left = int(patch[0, 0, -1 if flipped else 0])
        top, left = divmod(top_left, 256)
        assert 0 <= top <= 32 and 0 <= left <= 32
        expected = img[:, top:top + 224, left:left + 224]
        assert torch.equal(patch, expected.flip(-1) if flipped else expected)
        corners.add((top, left))
    assert 900 < flips < 1100
    assert {t for t, _ in corners} == set(range(33)) and {l for _, l in corners} == set(range(33))


def test_lighting_covariance_is_point01_lambda_in_eigenbasis():
    stats = make_stats()
    norm = Normalizer(stats, 0.1, False, torch.device("cpu"))
    alphas = norm.draw_alphas(200_000, torch.Generator().manual_seed(0))
    offsets = norm.lighting_offsets(alphas).double().numpy()
    p = np.array(stats.eigenvectors)
    cov = np.cov(offsets @ p.T, rowvar=False)  # coordinates along p_i
    expected = 0.01 * np.diag(stats.eigenvalues)
    np.testing.assert_allclose(np.diag(cov), np.diag(expected), rtol=0.02)
    assert abs(cov[0, 1]) < 0.02 * np.sqrt(expected[0, 0] * expected[1, 1])


def test_batched_device_path_equals_per_image_reference():
    stats = make_stats()
    norm = Normalizer(stats, 0.1, False, torch.device("cpu"))
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (4, 3, 256, 256), dtype=torch.uint8)
    rng = random.Random(5)
    draws = [(rng.randint(0, 32), rng.randint(0, 32), rng.random() < 0.5) for _ in images]
    crops = torch.stack([img[:, t:t + 224, l:l + 224] for img, (t, l, _) in zip(images, draws)])
    flips = torch.tensor([f for _, _, f in draws])
    assert flips.any() and not flips.all()
    alphas = norm.draw_alphas(4, gen)
    batched = norm(crops, alphas, flips)  # the loader defers mirroring to the device
    assert batched.is_contiguous(memory_format=torch.channels_last)
    for i, (img, (t, l, f)) in enumerate(zip(images, draws)):
        ref = augment_one_reference(img, t, l, f, alphas[i], stats)
        np.testing.assert_allclose(batched[i].double().numpy(), ref.numpy(), atol=1e-3)


def test_std_normalisation_option():
    stats = make_stats()
    x = torch.full((1, 3, 4, 4), 200, dtype=torch.uint8)
    out = Normalizer(stats, 0.1, True, torch.device("cpu"))(x)
    assert out[0, :, 0, 0].tolist() == pytest.approx([(200 - m) / s for m, s in zip(stats.mean_rgb, stats.std_rgb)])


def test_ten_views_are_the_papers():
    img = torch.randint(0, 256, (2, 3, 256, 256), dtype=torch.uint8)
    views = ten_views(img, 224)
    # torchvision orders the mirrored five by position in the mirrored image; same ten views
    expected = TF.ten_crop(img, [224, 224])
    assert len(views) == 10
    for ours, ref in zip(views[:5], expected[:5]):  # tl, tr, bl, br, centre
        assert torch.equal(ours, ref)
    for ref in expected[5:]:
        assert sum(torch.equal(ours, ref) for ours in views[5:]) == 1
    assert torch.equal(views[4], img[..., 16:240, 16:240]) and torch.equal(views[9], views[4].flip(-1))
    assert torch.equal(centre_crop(img, 224), views[4])


def test_error_at_k_on_hand_made_logits():
    logits = torch.tensor([[9.0, 1, 2, 3, 4, 5, 6],   # label 0: top-1 hit
                           [0.0, 9, 8, 7, 6, 5, 4],   # label 6: outside top-5
                           [0.0, 9, 8, 7, 6, 5, 4],   # label 5: 5th -> top-5 hit only
                           [1.0, 2, 3, 4, 5, 6, 7]])  # label 6: top-1 hit
    labels = torch.tensor([0, 6, 5, 6])
    assert count_topk_correct(logits, labels) == [2, 3]
    assert count_topk_correct(logits[:, :3], torch.tensor([0, 2, 1, 0])) == [2, 4]  # k capped at classes


def test_ten_view_evaluation_averages_softmax_over_the_views(tiny_shards):
    """evaluate() batches the views through the model; it must equal the plain per-view
    softmax average written out here."""
    from shared.manifest import read_manifest
    from shared.stats import read_stats
    from train.data import EvalShards, make_loader
    from train.distributed import Dist
    from train.loop import evaluate
    from train.model import build_model

    torch.manual_seed(0)
    model = build_model(3).eval()
    norm = Normalizer(read_stats(tiny_shards), 0.1, False, torch.device("cpu"))
    urls = read_manifest(tiny_shards).shard_paths(tiny_shards, "val")
    images, labels = next(iter(make_loader(EvalShards(urls), 12, 0, False)))
    with torch.no_grad():
        probs = sum(torch.softmax(model(norm(v)), 1) for v in ten_views(images, 224)) / 10
    top1 = count_topk_correct(probs, labels, ks=(1,))[0]
    got = evaluate(model, [(images, labels)], norm, torch.device("cpu"), 224, 10,
                   torch.autocast("cpu", enabled=False), Dist())
    assert got["samples"] == 12 and got["views"] == 10
    assert got["error@1"] == pytest.approx(1 - top1 / 12)
    nll = float(torch.nn.functional.nll_loss(probs.log(), labels))
    assert got["loss"] == pytest.approx(nll, rel=1e-5)
