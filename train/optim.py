"""The paper's update rule (§5) and the learning-rate schedule.

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


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay on weights only; biases undecayed (cuda-convnet's layer params)."""
    decay = [p for n, p in model.named_parameters() if n.endswith("weight")]
    no_decay = [p for n, p in model.named_parameters() if not n.endswith("weight")]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, name: str, lr: float, momentum: float, weight_decay: float):
    if name == "sgd":
        return PaperSGD(parameter_groups(model, weight_decay), lr=lr, momentum=momentum)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr)  # the reference implementation's
    raise ValueError(f"optimizer {name!r}: expected sgd or adam")


def build_schedule(optimizer, patience: int, drops: int, lr: float):
    """§5: divide the learning rate by 10 when the holdout error stops improving,
    at most `drops` times (the paper: three)."""
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=0.1, patience=patience, threshold=0.0,
        min_lr=lr * 0.1 ** drops)
