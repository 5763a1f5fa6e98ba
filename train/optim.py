"""The paper's update rule (§5) and its parameter groups (the schedule: train/schedule.py).

§5:  v <- 0.9 v - 0.0005 eps w - eps <dL/dw>;   w <- w + v
torch.optim.SGD instead keeps v <- m v + (g + wd w) and steps w <- w - lr v: the learning
rate multiplies the velocity at step time, so after a lr drop the old velocity is
suddenly scaled down by 10 too. Here eps enters when the velocity is accumulated, as in
the paper, so a lr drop only affects new gradients.
"""
from __future__ import annotations

import torch
from torch import nn


class PaperSGD(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0005):
        if lr <= 0 or not 0 <= momentum < 1 or weight_decay < 0:
            raise ValueError(f"PaperSGD: need lr > 0, 0 <= momentum < 1, weight_decay >= 0; got "
                             f"{lr}, {momentum}, {weight_decay}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, m, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(p)
                v = state["velocity"]
                v.mul_(m).add_(p, alpha=-wd * lr).add_(p.grad, alpha=-lr)
                p.add_(v)
        return loss


def parameter_groups(model: nn.Module, weight_decay: float, bias_lr_mult: float) -> list[dict]:
    """Weights: decay, ε. Biases: no decay, ε x bias_lr_mult -- cuda-convnet's layer params
    (wc applies to weights; epsB = 2 epsW in layer-params-imagenet-*.cfg and the 2011
    layer-params-80sec.cfg) and Caffe's (decay_mult 0, lr_mult 2)."""
    decay = [p for n, p in model.named_parameters() if n.endswith("weight")]
    no_decay = [p for n, p in model.named_parameters() if not n.endswith("weight")]
    return [{"params": decay, "weight_decay": weight_decay, "lr_mult": 1.0},
            {"params": no_decay, "weight_decay": 0.0, "lr_mult": bias_lr_mult}]


def build_optimizer(model: nn.Module, name: str, lr: float, momentum: float, weight_decay: float,
                    bias_lr_mult: float = 2.0):
    """The optimizer the loop uses; each group's lr is set by LrSchedule (ε x lr_mult)."""
    if name == "sgd":
        groups = parameter_groups(model, weight_decay, bias_lr_mult)
        for group in groups:
            group["lr"] = lr * group["lr_mult"]
        return PaperSGD(groups, lr=lr, momentum=momentum)
    if name == "adam":  # the PyTorch replication's: one rate for everything, no decay
        return torch.optim.Adam([{"params": list(model.parameters()), "lr_mult": 1.0}], lr=lr)
    raise ValueError(f"optimizer {name!r}: expected sgd or adam")
