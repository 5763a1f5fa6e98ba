"""§5's update rule against a hand computation; what build_optimizer gives each parameter."""
import pytest
import torch

from train.model import AlexNet
from train.optim import PaperSGD, build_optimizer


def test_paper_sgd_matches_hand_computation_across_a_lr_drop():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = PaperSGD([w], lr=0.01, momentum=0.9, weight_decay=0.0005)
    grads = [torch.tensor([0.5, 0.25]), torch.tensor([-1.0, 2.0]), torch.tensor([0.3, -0.7])]
    lrs = [0.01, 0.01, 0.001]  # the third step after a /10 drop
    v, w_hand = [0.0, 0.0], [1.0, -2.0]
    for g, lr in zip(grads, lrs):
        for group in opt.param_groups:
            group["lr"] = lr
        w.grad = g.double()
        opt.step()
        for i in range(2):  # v <- 0.9 v - 0.0005 eps w - eps g;  w <- w + v
            v[i] = 0.9 * v[i] - 0.0005 * lr * w_hand[i] - lr * float(g[i])
            w_hand[i] = w_hand[i] + v[i]
        assert w.detach().tolist() == pytest.approx(w_hand, rel=1e-14, abs=1e-15)


def test_torch_sgd_differs_after_a_lr_drop():
    """Why PaperSGD exists: torch.optim.SGD multiplies the whole velocity by the new lr."""
    def run(opt_cls, **kw):
        w = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
        opt = opt_cls([w], lr=0.01, momentum=0.9, weight_decay=0.0, **kw)
        for step in range(3):
            if step == 2:
                opt.param_groups[0]["lr"] = 0.001
            w.grad = torch.tensor([1.0], dtype=torch.float64)
            opt.step()
        return float(w.detach())
    assert run(PaperSGD) != pytest.approx(run(torch.optim.SGD), rel=1e-6)


def test_optimizer_decays_weights_only_and_biases_learn_twice_as_fast():
    """Through build_optimizer, as the loop builds it: one step from zero velocity moves a
    weight by -eps (g + 0.0005 w) and a bias by -2 eps g (cuda-convnet epsB, Caffe lr_mult 2)."""
    torch.manual_seed(0)
    model = AlexNet(10)
    opt = build_optimizer(model, "sgd", 0.01, 0.9, 0.0005, bias_lr_mult=2.0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    opt.step()
    for name, p in model.named_parameters():
        if name.endswith("weight"):
            expected = before[name] - 0.01 * (0.5 + 0.0005 * before[name])
        else:
            expected = before[name] - 2 * 0.01 * 0.5
        torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-7, msg=name)
    equal = build_optimizer(model, "sgd", 0.01, 0.9, 0.0005, bias_lr_mult=1.0)
    assert {g["lr"] for g in equal.param_groups} == {0.01}
