"""train/lrn.py: the CPU kernels compute the reference's function, forward and backward, for
every LRN mode and tower setting, within the error the reference itself makes against fp64."""
import numpy as np
import pytest
import torch

from train.architecture import KERNELS, LRN_BETA, LRN_K, LRN_SIZE, Architecture
from train.lrn import _f32_to_bf16, _rows, local_response_norm, lrn_reference
from train.model import LocalResponseNorm, build_norm


def norms_of(arch: Architecture) -> list[tuple[int, LocalResponseNorm]]:
    """(channels, module) of norm1 and norm2 as the model builds them."""
    groups = 2 if arch.towers == "two" else 1
    k1, k2 = KERNELS[arch.towers][:2]
    return [(c, build_norm(arch, groups)) for c in (k1, k2)]


def activations(channels: int, dtype, scale: float, seed: int, side: int = 9) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.relu(torch.randn(3, channels, side, side, generator=g) * scale)
    return x.to(dtype).contiguous(memory_format=torch.channels_last)


def forward_backward(fn, x: torch.Tensor, grad: torch.Tensor):
    x = x.detach().requires_grad_()
    y = fn(x)
    y.backward(grad.to(y.dtype))
    return y.detach().double(), x.grad.double()


@pytest.mark.parametrize("lrn", ["as-run", "text", "none"])
@pytest.mark.parametrize("towers", ["two", "one"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kernels_match_the_reference_within_its_own_error(lrn, towers, dtype):
    for channels, norm in norms_of(Architecture(lrn=lrn, towers=towers)):
        if lrn == "none":
            assert isinstance(norm, torch.nn.Identity)
            continue
        a, g, size, k, beta = norm.alpha_per_term, norm.groups, norm.size, norm.k, norm.beta
        assert (size, k, beta) == (LRN_SIZE, LRN_K, LRN_BETA)
        for scale in (30.0, 300.0):  # a weak and a strong normalisation (alpha * sum ~ 0.1 and ~10)
            x = activations(channels, dtype, scale, seed=channels)
            grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
            exact = forward_backward(lambda t: lrn_reference(t, a, g, size, k, beta), x.double(), grad)
            ours = forward_backward(norm, x, grad)
            reference = forward_backward(lambda t: lrn_reference(t, a, g, size, k, beta), x, grad)
            for got, ref, truth, what in zip(ours, reference, exact, ("forward", "backward")):
                err, ref_err = (got - truth).abs().max(), (ref - truth).abs().max()
                # measured: fp32 errors 1-2x the reference's (1e-5 forward at scale 300), bf16 equal (rounding)
                assert err <= 2 * ref_err + 1e-6 * truth.abs().max(), (lrn, towers, dtype, scale, what, err, ref_err)


def test_groups_are_independent_and_clipped_at_their_ends():
    """A map at the edge of one GPU's half never sees the other half's maps (cuda-convnet's
    rnorm1a/rnorm1b), and maps beyond a group's ends count as zeros."""
    x = torch.zeros(1, 8, 1, 1)
    x[0, 4] = 100.0  # first map of group 2
    x[0, 3] = 100.0  # last map of group 1
    y = local_response_norm(x.contiguous(memory_format=torch.channels_last), 1e-3, 2, 5, 2.0, 0.75)
    alone = 100.0 / (2.0 + 1e-3 * 100.0 ** 2) ** 0.75
    assert y[0, 3, 0, 0].item() == pytest.approx(alone, rel=1e-6)  # map 4 is in the other group
    assert y[0, 4, 0, 0].item() == pytest.approx(alone, rel=1e-6)
    assert torch.count_nonzero(y[0, [0, 1, 2, 5, 6, 7]]) == 0


@pytest.mark.parametrize("size", [3, 4, 5, 6])
def test_other_window_sizes_and_a_layout_that_is_not_channels_last(size):
    x = activations(12, torch.float32, 200.0, seed=size).contiguous()  # NCHW
    grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    truth = forward_backward(lambda t: lrn_reference(t, 1e-4, 3, size, 2.0, 0.75), x.double(), grad)
    ours = forward_backward(lambda t: local_response_norm(t, 1e-4, 3, size, 2.0, 0.75), x, grad)
    for got, exact in zip(ours, truth):
        torch.testing.assert_close(got, exact, rtol=1e-5, atol=1e-6)
    beta = forward_backward(lambda t: local_response_norm(t, 1e-4, 3, size, 2.0, 0.6), x, grad)
    exact_beta = forward_backward(lambda t: lrn_reference(t, 1e-4, 3, size, 2.0, 0.6), x.double(), grad)
    for got, exact in zip(beta, exact_beta):  # beta != 0.75 takes the general power
        torch.testing.assert_close(got, exact, rtol=1e-5, atol=1e-6)


def test_a_nan_spreads_over_its_window_as_in_the_reference():
    x = activations(8, torch.float32, 10.0, seed=3)
    x[1, 2, 4, 4] = float("nan")
    ours = local_response_norm(x, 2e-5, 2, 5, 2.0, 0.75)
    ref = lrn_reference(x, 2e-5, 2, 5, 2.0, 0.75)
    assert torch.equal(ours.isnan(), ref.isnan()) and ref.isnan().sum() == 4  # map 2 is in the window of maps 0-3, its group


def test_bf16_rounding_is_torchs():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.standard_normal(100_000).astype(np.float32) * 10.0 ** rng.integers(-40, 38, 100_000),
                             np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, 3.4e38], np.float32)]).astype(np.float32)
    bits = values.view(np.uint32)
    ours = np.array([_f32_to_bf16(b) for b in bits[:2000]] + [_f32_to_bf16(b) for b in bits[-7:]], np.uint16)
    theirs = torch.from_numpy(np.concatenate([values[:2000], values[-7:]])).bfloat16().view(torch.uint16).numpy()
    finite = ~np.isnan(np.concatenate([values[:2000], values[-7:]]))
    assert np.array_equal(ours[finite], theirs[finite])
    assert np.isnan(torch.from_numpy(ours.view(np.int16)).view(torch.bfloat16).float().numpy()[~finite]).all()


def test_rows_are_a_view_of_channels_last_memory():
    x = activations(8, torch.bfloat16, 1.0, seed=4)
    rows = _rows(x)
    assert rows.shape == (3 * 9 * 9, 8) and rows.dtype == np.uint16
    assert np.shares_memory(rows, x.view(torch.uint16).numpy())
