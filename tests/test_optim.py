"""§5's update rule against a hand computation; the plateau schedule."""
import pytest
import torch

from train.optim import PaperSGD, build_schedule, parameter_groups
from train.model import AlexNet


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


def test_weight_decay_on_weights_only():
    groups = parameter_groups(AlexNet(10), 0.0005)
    assert groups[0]["weight_decay"] == 0.0005 and all(p.dim() > 1 for p in groups[0]["params"])
    assert groups[1]["weight_decay"] == 0.0 and all(p.dim() == 1 for p in groups[1]["params"])


def test_plateau_divides_by_ten_at_most_three_times():
    w = torch.nn.Parameter(torch.zeros(1))
    opt = PaperSGD([w], lr=0.01)
    schedule = build_schedule(opt, patience=1, drops=3, lr=0.01)
    lrs = []
    for error in [0.5, 0.4] + [0.4] * 12:
        schedule.step(error)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[:2] == [0.01, 0.01]
    assert sorted(set(lrs), reverse=True) == pytest.approx([0.01, 0.001, 0.0001, 0.00001])
