"""The network against the paper's numbers (§3, Fig. 2) and against a plain functional
re-implementation written here from cuda-convnet's definitions; §5 and Caffe init."""
import math

import pytest
import torch
import torch.nn.functional as F

from train.model import AlexNet, Architecture, Dropout, build_model, init_weights

LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")


def lrn_written_out(a: torch.Tensor, alpha_per_term: float, groups: int, size=5, k=2.0, beta=0.75):
    """b_i = a_i / (k + alpha_per_term * sum_{j=i-2..i+2, same group} a_j^2)^beta, one map at a time."""
    n = a.shape[1]
    per = n // groups
    out = torch.empty_like(a)
    for i in range(n):
        g0 = (i // per) * per
        lo, hi = max(g0, i - size // 2), min(g0 + per - 1, i + size // 2)
        out[:, i] = a[:, i] / (k + alpha_per_term * (a[:, lo:hi + 1] ** 2).sum(dim=1)) ** beta
    return out


def reference_forward(model: AlexNet, x: torch.Tensor, *, alpha_per_term: float, lrn_groups: int,
                      pads: tuple[int, int, int, int], test_scale: float) -> torch.Tensor:
    """AlexNet in eval mode from F.* calls and the weights of `model`: conv1 padded by `pads`
    (left, right, top, bottom), LRN per `lrn_groups` block, dropout's test-time factor."""
    w = {name: (getattr(model, name).weight, getattr(model, name).bias) for name in LAYERS}
    h = F.conv2d(F.pad(x, pads), *w["conv1"], stride=4)
    h = F.max_pool2d(lrn_written_out(F.relu(h), alpha_per_term, lrn_groups), 3, 2)
    h = F.conv2d(h, *w["conv2"], padding=2, groups=2)
    h = F.max_pool2d(lrn_written_out(F.relu(h), alpha_per_term, lrn_groups), 3, 2)
    h = F.relu(F.conv2d(h, *w["conv3"], padding=1))
    h = F.relu(F.conv2d(h, *w["conv4"], padding=1, groups=2))
    h = F.max_pool2d(F.relu(F.conv2d(h, *w["conv5"], padding=1, groups=2)), 3, 2)
    h = F.relu(F.linear(h.flatten(1), *w["fc6"])) * test_scale
    h = F.relu(F.linear(h, *w["fc7"])) * test_scale
    return F.linear(h, *w["fc8"])


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().abs().max() / b.detach().abs().max())


@pytest.fixture(scope="module")
def input_batch():
    torch.manual_seed(3)
    return torch.randn(2, 3, 224, 224, dtype=torch.float64) * 60  # mean-subtracted pixel scale


def test_default_model_equals_cuda_convnet_written_out(input_batch):
    """LRN with alpha/n within each half, conv1 padded right and bottom by 3, paper dropout."""
    torch.manual_seed(0)
    model = build_model(10, init="paper").double().eval()
    with torch.no_grad():
        ours = model(input_batch)
        ref = reference_forward(model, input_batch, alpha_per_term=1e-4 / 5, lrn_groups=2, pads=(0, 3, 0, 3),
                                test_scale=0.5)
    assert rel_error(ours, ref) < 1e-9
    # and the halves matter: the same weights normalised across all maps differ
    mixed = reference_forward(model, input_batch, alpha_per_term=1e-4 / 5, lrn_groups=1, pads=(0, 3, 0, 3),
                              test_scale=0.5)
    assert rel_error(mixed, ref) > 1e-6


def test_text_variant_equals_the_previous_model(input_batch):
    """--lrn text (alpha per term, all maps), symmetric padding 2, inverted dropout: the
    model this project trained before it followed cuda-convnet."""
    arch = Architecture(lrn="text", conv1_padding="symmetric", dropout_mode="inverted")
    torch.manual_seed(0)
    model = build_model(10, arch, init="paper").double().eval()
    with torch.no_grad():
        ours = model(input_batch)
        ref = reference_forward(model, input_batch, alpha_per_term=1e-4, lrn_groups=1, pads=(2, 2, 2, 2),
                                test_scale=1.0)
    assert rel_error(ours, ref) < 1e-9


def test_lrn_as_run_is_torch_and_caffe_per_half():
    """cuda-convnet's scale/size equals nn.LocalResponseNorm(5, 1e-4) (torch, like Caffe,
    divides alpha by n) applied to each half on its own."""
    from train.model import LocalResponseNorm

    x = torch.randn(2, 96, 7, 7, dtype=torch.float64) * 30
    ours = LocalResponseNorm(1e-4 / 5, groups=2)(x)
    torch_lrn = torch.nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)
    halves = torch.cat([torch_lrn(x[:, :48]), torch_lrn(x[:, 48:])], dim=1)
    assert rel_error(ours, halves) < 1e-12


def test_parameter_count_and_activations_for_1000_classes():
    model = AlexNet(1000).eval()
    assert sum(p.numel() for p in model.parameters()) == 60_965_224
    sizes = {}
    for name in LAYERS:
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: sizes.__setitem__(name, o[0].numel()))
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 224, 224))
    # the paper's 253,440 for layer 1 is a misprint: 55 * 55 * 96 = 290,400
    assert [sizes[n] for n in LAYERS] == [290_400, 186_624, 64_896, 64_896, 43_264, 4096, 4096, 1000]
    assert out.shape == (1, 1000)


def test_layer_order_relu_lrn_pool():
    """§3.3/§3.4: LRN after conv1's and conv2's ReLU, then max-pooling (pinned by recording
    the modules as they run)."""
    model = AlexNet(10).eval()
    order = []
    for name, module in model.named_modules():
        if name:
            module.register_forward_hook(lambda m, i, o, name=name: order.append(name))
    with torch.no_grad():
        model(torch.randn(1, 3, 224, 224))
    assert order == ["conv1", "norm1", "pool", "conv2", "norm2", "pool", "conv3", "conv4", "conv5", "pool",
                     "fc6", "dropout", "fc7", "dropout", "fc8"]


@pytest.mark.parametrize("scheme", ["paper", "caffe"])
def test_initialisation(scheme):
    """§5: N(0, 0.01), biases 1 in conv2, conv4, conv5, fc6, fc7; bvlc_alexnet: fc6/fc7 std
    0.005, those biases 0.1."""
    torch.manual_seed(0)
    model = build_model(1000, init=scheme)
    for name in LAYERS:
        layer = getattr(model, name).requires_grad_(False)
        std = 0.005 if scheme == "caffe" and name in ("fc6", "fc7") else 0.01
        assert float(layer.weight.std()) == pytest.approx(std, rel=0.05), name
        assert abs(float(layer.weight.mean())) < 0.1 * std, name
        bias = (1.0 if scheme == "paper" else 0.1) if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
        assert torch.all(layer.bias == bias), name
    with pytest.raises(ValueError, match="expected one of paper, caffe"):
        init_weights(model, "kaiming")


def test_paper_and_inverted_dropout():
    """Same test-time function for matched weights (next layer's weights halved under
    inverted dropout); in training the same mask, outputs differing by exactly 2."""
    x = torch.rand(64, 4096, dtype=torch.float64) + 0.1
    paper, inverted = Dropout(0.5, "paper"), Dropout(0.5, "inverted")
    torch.manual_seed(7)
    a = paper(x)
    torch.manual_seed(7)
    b = inverted(x)
    assert torch.equal(b, 2 * a)
    assert 0.45 < float((a == 0).double().mean()) < 0.55
    assert torch.equal(a[a != 0], x[a != 0])  # the paper's kept outputs are unscaled
    w = torch.randn(10, 4096, dtype=torch.float64)
    paper.eval(), inverted.eval()
    torch.testing.assert_close(F.linear(paper(x), w), F.linear(inverted(x), w * 0.5), rtol=1e-12, atol=0)
    torch.testing.assert_close(paper(x), 0.5 * x, rtol=0, atol=0)


def test_dropout_zero_is_the_identity_in_training():
    x = torch.rand(8, 16)
    assert torch.equal(Dropout(0.0, "paper").train()(x), x)


def test_ablation_architectures():
    """§3.4 z=2 keeps the map sizes ("output of equivalent dimensions"); §3.2's one-GPU net
    halves conv1-conv4 (footnote 2 keeps conv5 and the fc layers); --lrn none drops §3.3."""
    base = sum(p.numel() for p in AlexNet(1000).parameters())
    z2 = AlexNet(1000, Architecture(pool_size=2))
    assert z2.fc6.in_features == 9216 and sum(p.numel() for p in z2.parameters()) == base
    one = AlexNet(1000, Architecture(towers="one"))
    assert [one.conv1.out_channels, one.conv2.out_channels, one.conv3.out_channels, one.conv4.out_channels,
            one.conv5.out_channels] == [48, 128, 192, 192, 256]
    assert all(getattr(one, c).groups == 1 for c in ("conv2", "conv4", "conv5"))
    assert sum(p.numel() for p in one.parameters()) == 59_798_312
    assert isinstance(AlexNet(10, Architecture(lrn="none")).norm1, torch.nn.Identity)
    for arch in (Architecture(pool_size=2), Architecture(towers="one"), Architecture(lrn="none")):
        with torch.no_grad():
            assert AlexNet(10, arch).eval()(torch.zeros(1, 3, 224, 224)).shape == (1, 10)


def test_other_crop_sizes_follow_the_same_rules():
    """A 112 crop (128-pixel shards): conv1 still pads 3 right/bottom (cuda-convnet's ceiling)."""
    model = AlexNet(10, Architecture(crop=112)).eval()
    assert model.conv1_pads == (0, 3)
    assert model.fc6.in_features == 256 * 2 * 2
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 112, 112)).shape == (1, 10)
    assert 1 + math.ceil((112 - 11) / 4) == 27


def test_architecture_refuses_unknown_values():
    with pytest.raises(ValueError, match="lrn 'paper': expected one of as-run, text, none"):
        Architecture(lrn="paper")
    with pytest.raises(ValueError, match="pool_size 4"):
        Architecture(pool_size=4)


def test_lrn_channels_last_and_bf16():
    from train.model import LocalResponseNorm

    x = (torch.randn(2, 96, 9, 9) * 20).contiguous(memory_format=torch.channels_last)
    ref = lrn_written_out(x.double(), 2e-5, 2)
    torch.testing.assert_close(LocalResponseNorm(2e-5, 2)(x).double(), ref, rtol=1e-5, atol=1e-6)
    out = LocalResponseNorm(2e-5, 2)(x.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.double(), ref, rtol=1e-2, atol=1e-2)  # bf16: 2^-8 relative; measured 0.2 at 48


@pytest.mark.slow
def test_compiled_forward_equals_eager():
    """The fast path (torch.compile, channels_last) computes the same function."""
    torch.manual_seed(0)
    model = build_model(10).eval()
    x = torch.randn(2, 3, 224, 224) * 50
    compiled = torch.compile(model.to(memory_format=torch.channels_last))
    with torch.no_grad():
        eager = model(x)
        fast = compiled(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(fast, eager, rtol=1e-4, atol=1e-5)
