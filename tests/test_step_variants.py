"""The step's other formulations (bench/step_variants.py times them on a GPU) compute
today's function: each checked on the CPU against today's model and optimizer, forward and
backward, to fp32 rounding."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from train.architecture import Architecture
from train.model import FORMS, build_model, set_forms
from train.optim import build_optimizer


def step_grads(model, x, labels):
    model.zero_grad(set_to_none=True)
    model.eval()  # no dropout: the forms' function, not their random masks
    out = model(x)
    F.cross_entropy(out, labels).backward()
    return out.detach(), {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def close(a: torch.Tensor, b: torch.Tensor, rel: float = 2e-4) -> bool:
    return bool((a - b).abs().max() <= rel * b.abs().max() + 1e-12)


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    model = build_model(17, Architecture(crop=99))
    for p in model.parameters():  # biases of 0.1 and weights of 0.01 leave the LRN near identity:
        p.data.normal_(0, 0.05)     # larger ones make its window matter
    x = torch.randn(3, 3, 99, 99) * 50
    labels = torch.tensor([1, 5, 16])
    return model, x, labels, step_grads(model, x, labels)


@pytest.mark.parametrize("conv", FORMS["conv"])
@pytest.mark.parametrize("lrn", FORMS["lrn"])
def test_every_conv_and_lrn_form_is_todays_function(reference, conv, lrn):
    model, x, labels, (out, grads) = reference
    other = copy.deepcopy(model)
    set_forms(other, conv=conv, lrn=lrn)
    got_out, got_grads = step_grads(other, x, labels)
    assert close(got_out, out), (conv, lrn)
    for name, g in grads.items():
        assert got_grads[name].shape == g.shape and close(got_grads[name], g), (conv, lrn, name)
    assert other.state_dict().keys() == model.state_dict().keys()  # checkpoints do not depend on the form


def test_the_lrn_matters_in_the_check(reference):
    """The check above would pass a form that skipped the LRN if the window had no effect."""
    model, x, labels, (out, _) = reference
    none = build_model(17, Architecture(crop=99, lrn="none"))
    none.load_state_dict(model.state_dict())
    assert not close(step_grads(none, x, labels)[0], out)


@pytest.mark.parametrize("mode", ["paper", "inverted"])
def test_native_dropout_keeps_or_zeroes_as_the_mask_does(mode):
    torch.manual_seed(1)
    model = build_model(5, Architecture(crop=64, dropout_mode=mode))
    set_forms(model, dropout="native")
    x = torch.rand(400, 4096) + 1
    y = model.dropout.train()(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.5) < 0.01
    assert torch.allclose(y[kept], (x if mode == "paper" else 2 * x)[kept])
    assert torch.equal(model.dropout.eval()(x), x * 0.5 if mode == "paper" else x)


def test_unknown_form_is_refused():
    with pytest.raises(ValueError, match="conv form"):
        set_forms(build_model(5, Architecture(crop=64)), conv="winograd")


def train_steps(impl: str, steps: int = 6, drop_at: int = 3, state=None):
    """`steps` SGD steps with the rate divided by 10 before step `drop_at` (bias rate 2 ε)."""
    torch.manual_seed(2)
    model = build_model(7, Architecture(crop=64, dropout=0.0))
    opt = build_optimizer(model, "sgd", 0.01, 0.9, 0.0005, bias_lr_mult=2.0, impl=impl)
    if state is not None:
        opt.load_state_dict(state)
    gen = torch.Generator().manual_seed(3)
    for step in range(steps):
        if step == drop_at:
            for group in opt.param_groups:
                group["lr"] /= 10
        x = torch.randn(4, 3, 64, 64, generator=gen) * 40
        loss = F.cross_entropy(model(x), torch.arange(4))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, opt


def test_foreach_update_is_bit_identical_to_the_loop():
    loop, _ = train_steps("loop")
    foreach, _ = train_steps("foreach")
    for (name, a), b in zip(loop.named_parameters(), foreach.parameters()):
        assert torch.equal(a, b), name


def test_fused_torch_sgd_is_the_papers_rule_across_a_rate_drop():
    loop, loop_opt = train_steps("loop")
    fused, fused_opt = train_steps("fused")
    for (name, a), b in zip(loop.named_parameters(), fused.parameters()):
        assert close(b.detach(), a.detach(), 1e-5), name
    # its checkpoint holds the paper's velocity, which PaperSGD reads
    paper_state, fused_state = loop_opt.state_dict(), fused_opt.state_dict()
    for i, s in paper_state["state"].items():
        assert close(fused_state["state"][i]["velocity"], s["velocity"], 1e-5)
    reloaded = build_optimizer(fused, "sgd", 0.001, 0.9, 0.0005, impl="loop")
    reloaded.load_state_dict(fused_state)
    back = build_optimizer(loop, "sgd", 0.001, 0.9, 0.0005, impl="fused")
    back.load_state_dict(paper_state)
    assert close(back.state_dict()["state"][0]["velocity"], paper_state["state"][0]["velocity"], 1e-6)
