"""§4.1 augmentation and §2 normalisation: crops, flips, PCA lighting, the ten test views."""
import random

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from shared.stats import RgbStats
from augment_reference import augment_one_reference, random_crop_flip
from train.augment import DeviceAugment, centre_crop, input_stats, ten_views
from train.evaluation import count_topk_correct


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
    norm = DeviceAugment(input_stats(stats, "mean", 224), 0.1, torch.device("cpu"))
    alphas = norm.draw_alphas(200_000, torch.Generator().manual_seed(0))
    offsets = norm.lighting_offsets(alphas).double().numpy()
    p = np.array(stats.eigenvectors)
    cov = np.cov(offsets @ p.T, rowvar=False)  # coordinates along p_i
    expected = 0.01 * np.diag(stats.eigenvalues)
    np.testing.assert_allclose(np.diag(cov), np.diag(expected), rtol=0.02)
    assert abs(cov[0, 1]) < 0.02 * np.sqrt(expected[0, 0] * expected[1, 1])


@pytest.mark.parametrize("mode", ["mean", "mean-image"])
def test_batched_device_path_equals_per_image_reference(mode):
    stats = make_stats()
    mean_image = np.random.default_rng(3).uniform(0, 255, (256, 256, 3)) if mode == "mean-image" else None
    norm = DeviceAugment(input_stats(stats, mode, 224, mean_image), 0.1, torch.device("cpu"))
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
        ref = augment_one_reference(img, t, l, f, alphas[i], stats, mean_image=mean_image)
        np.testing.assert_allclose(batched[i].double().numpy(), ref.numpy(), atol=1e-3)


def test_std_normalisation_option():
    stats = make_stats()
    x = torch.full((1, 3, 4, 4), 200, dtype=torch.uint8)
    out = DeviceAugment(input_stats(stats, "std", 224), 0.1, torch.device("cpu"))(x)
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


class ViewSensitive(torch.nn.Module):
    """A stub classifier whose logits swing strongly with the crop it sees: averaging
    logits instead of softmax outputs, or top-4 instead of top-5, changes its scores."""

    def __init__(self, classes: int = 8):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = torch.randn(classes, 12, generator=g) * 0.03

    def forward(self, x):
        corners = torch.cat([x[:, :, 0, 0], x[:, :, -1, -1], x[:, :, 0, -1], x.mean(dim=(2, 3))], dim=1)
        return corners @ self.w.T


def test_ten_view_evaluation_averages_softmax_over_the_views():
    """evaluate() against the §4.1 rule written out: softmax of each of the ten views,
    averaged, then top-1 and top-5 among 8 classes."""
    from train.device import Compute
    from train.distributed import Dist
    from train.evaluation import evaluate

    stats, model = make_stats(), ViewSensitive()
    augment = DeviceAugment(input_stats(stats, "mean", 224), 0.1, torch.device("cpu"))
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (48, 3, 256, 256), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 8, (48,), generator=g)
    logits = torch.stack([model(augment(v)) for v in ten_views(images, 224)])
    by_softmax = logits.softmax(-1).mean(0)
    expected = count_topk_correct(by_softmax, labels, ks=(1, 4, 5))
    by_logits = count_topk_correct(logits.mean(0), labels, ks=(1, 5))
    assert by_logits != [expected[0], expected[2]] and expected[1] != expected[2]  # the test can tell them apart
    compute = Compute(torch.device("cpu"), torch.autocast("cpu", enabled=False), Dist(), augment)
    got = evaluate(model, [(images[:24], labels[:24]), (images[24:], labels[24:])], compute, crop=224, views=10)
    assert got["samples"] == 48 and got["views"] == 10
    assert got["error@1"] == pytest.approx(1 - expected[0] / 48)
    assert got["error@5"] == pytest.approx(1 - expected[2] / 48)
    nll = float(torch.nn.functional.nll_loss(by_softmax.log(), labels))
    assert got["loss"] == pytest.approx(nll, rel=1e-5)
