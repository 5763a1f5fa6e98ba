"""The network against the paper's numbers (§3, Fig. 2), LRN against its formula, §5 init."""
import numpy as np
import pytest
import torch
from torch import nn

from train.model import AlexNet, LocalResponseNorm, build_model, init_weights


def test_parameter_count_for_1000_classes():
    assert sum(p.numel() for p in AlexNet(1000).parameters()) == 60_965_224


def test_activation_sizes_match_the_paper():
    model = AlexNet(1000).eval()
    sizes = {}
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"):
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: sizes.__setitem__(name, o[0].numel()))
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 224, 224))
    # the paper's 253,440 for layer 1 is a misprint: 55 * 55 * 96 = 290,400
    assert [sizes[n] for n in sizes] == [290_400, 186_624, 64_896, 64_896, 43_264, 4096, 4096, 1000]
    assert out.shape == (1, 1000)


def test_two_gpu_split_is_grouped():
    model = AlexNet(10)
    assert (model.conv1.groups, model.conv2.groups, model.conv3.groups, model.conv4.groups,
            model.conv5.groups) == (1, 2, 1, 2, 2)


def lrn_formula(a: np.ndarray, k=2.0, n=5, alpha=1e-4, beta=0.75) -> np.ndarray:
    """§3.3 written out: b_i = a_i / (k + alpha * sum_{j=max(0,i-n/2)}^{min(N-1,i+n/2)} a_j^2)^beta"""
    N = a.shape[1]
    b = np.empty_like(a)
    for i in range(N):
        lo, hi = max(0, i - n // 2), min(N - 1, i + n // 2)
        b[:, i] = a[:, i] / (k + alpha * (a[:, lo:hi + 1] ** 2).sum(axis=1)) ** beta
    return b


def test_lrn_equals_the_paper_formula_and_torch():
    x = torch.randn(2, 96, 7, 7, dtype=torch.float64) * 30  # activations of the scale LRN sees
    ours = LocalResponseNorm()(x)
    np.testing.assert_allclose(ours.numpy(), lrn_formula(x.numpy()), rtol=1e-12)
    xf = x.float()
    torch_lrn = nn.LocalResponseNorm(5, alpha=5 * 1e-4, beta=0.75, k=2.0)(xf)  # torch divides alpha by n
    rel = ((LocalResponseNorm()(xf) - torch_lrn).abs() / torch_lrn.abs().clamp_min(1e-6)).max()
    assert rel <= 1e-6
    # the trap the reference implementation fell into: alpha=1e-4 in nn.LocalResponseNorm is 5x weaker
    assert not torch.allclose(nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)(xf), torch_lrn)


def test_lrn_channels_last_and_bf16():
    x = (torch.randn(2, 96, 9, 9) * 20).contiguous(memory_format=torch.channels_last)
    ref = torch.from_numpy(lrn_formula(x.double().numpy()))
    np.testing.assert_allclose(LocalResponseNorm()(x).double().numpy(), ref.numpy(), rtol=1e-5)
    out = LocalResponseNorm()(x.bfloat16())
    assert out.dtype == torch.bfloat16
    np.testing.assert_allclose(out.double().numpy(), ref.numpy(), rtol=2e-2, atol=1e-2)


@pytest.mark.parametrize("scheme,one", [("paper", 1.0), ("caffe", 0.1)])
def test_init_section_5(scheme, one):
    torch.manual_seed(0)
    model = build_model(1000, init=scheme)
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"):
        layer = getattr(model, name).requires_grad_(False)
        assert abs(float(layer.weight.std()) - 0.01) < 0.0015, name
        assert abs(float(layer.weight.mean())) < 0.002, name
        expected = one if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
        assert torch.all(layer.bias == expected), name
    with pytest.raises(ValueError, match="expected one of"):
        init_weights(model, "kaiming")


@pytest.mark.slow
def test_compiled_forward_equals_eager():
    """The fast path (torch.compile, channels_last, our LRN) computes the same function."""
    torch.manual_seed(0)
    model = build_model(10).eval()
    x = torch.randn(2, 3, 224, 224) * 50
    compiled = torch.compile(model.to(memory_format=torch.channels_last))
    with torch.no_grad():
        eager = model(x)
        fast = compiled(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(fast, eager, rtol=1e-4, atol=1e-5)
