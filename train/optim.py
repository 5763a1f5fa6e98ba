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


IMPLS = ("loop", "foreach", "fused")  # how the update is computed: bench/step_variants.py times them


class PaperSGD(torch.optim.Optimizer):
    """§5's rule. `impl` "loop": one parameter at a time (four kernels each); "foreach": the same
    operations in the same order over each group's parameters at once (torch._foreach_*: a few
    multi-tensor kernels; bit-identical). The "fused" form is TorchSgdAsPaper."""

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0005,
                 impl: str = "loop"):
        if lr <= 0 or not 0 <= momentum < 1 or weight_decay < 0:
            raise ValueError(f"PaperSGD: need lr > 0, 0 <= momentum < 1, weight_decay >= 0; got "
                             f"{lr}, {momentum}, {weight_decay}")
        if impl not in ("loop", "foreach"):
            raise ValueError(f"PaperSGD impl {impl!r}: expected loop or foreach")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))
        self.impl = impl

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, m, wd = group["lr"], group["momentum"], group["weight_decay"]
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:
                if "velocity" not in self.state[p]:
                    self.state[p]["velocity"] = torch.zeros_like(p)
            velocities = [self.state[p]["velocity"] for p in params]
            if self.impl == "foreach" and params:
                torch._foreach_mul_(velocities, m)
                torch._foreach_add_(velocities, params, alpha=-wd * lr)
                torch._foreach_add_(velocities, [p.grad for p in params], alpha=-lr)
                torch._foreach_add_(params, velocities)
                continue
            for p, v in zip(params, velocities):
                v.mul_(m).add_(p, alpha=-wd * lr).add_(p.grad, alpha=-lr)
                p.add_(v)
        return loss


class TorchSgdAsPaper(torch.optim.SGD):
    """§5's rule computed by torch's SGD (fused=True: one kernel for every parameter on CUDA).
    torch keeps b <- m b + (g + wd w), w <- w - lr b; with the rate constant, v = -lr b is
    exactly the paper's velocity. When the rate changes from lr to lr', the paper's velocity
    carries on, so b is rescaled by lr / lr' before the step (equal to fp32 rounding:
    tests/test_step_variants.py). Checkpoints hold the paper's `velocity`, as PaperSGD's do."""

    def __init__(self, groups: list[dict], lr: float, momentum: float, fused: bool = True):
        super().__init__(groups, lr=lr, momentum=momentum, fused=fused)
        self._last_lr = [g["lr"] for g in self.param_groups]

    @torch.no_grad()
    def step(self, closure=None):
        for group, last in zip(self.param_groups, self._last_lr):
            if group["lr"] != last:
                buffers = [self.state[p]["momentum_buffer"] for p in group["params"]
                           if self.state[p].get("momentum_buffer") is not None]
                if buffers:
                    torch._foreach_mul_(buffers, last / group["lr"])
        self._last_lr = [g["lr"] for g in self.param_groups]
        return super().step(closure)

    def state_dict(self):
        state = super().state_dict()
        lrs = {i: g["lr"] for g in state["param_groups"] for i in g["params"]}
        state["state"] = {i: {"velocity": -lrs[i] * s["momentum_buffer"]} for i, s in state["state"].items()
                          if s.get("momentum_buffer") is not None}
        return state

    def load_state_dict(self, state_dict):
        groups = [{**g, **{k: v for k, v in self.defaults.items() if k not in g}} for g in state_dict["param_groups"]]
        lrs = {i: g["lr"] for g in groups for i in g["params"]}
        state = {i: {"momentum_buffer": s["velocity"] / -lrs[i]} for i, s in state_dict["state"].items()}
        super().load_state_dict({"state": state, "param_groups": groups})
        self._last_lr = [g["lr"] for g in self.param_groups]


def parameter_groups(model: nn.Module, weight_decay: float, bias_lr_mult: float) -> list[dict]:
    """Weights: decay, ε. Biases: no decay, ε x bias_lr_mult -- cuda-convnet's layer params
    (wc applies to weights; epsB = 2 epsW in layer-params-imagenet-*.cfg and the 2011
    layer-params-80sec.cfg) and Caffe's (decay_mult 0, lr_mult 2)."""
    decay = [p for n, p in model.named_parameters() if n.endswith("weight")]
    no_decay = [p for n, p in model.named_parameters() if not n.endswith("weight")]
    return [{"params": decay, "weight_decay": weight_decay, "lr_mult": 1.0},
            {"params": no_decay, "weight_decay": 0.0, "lr_mult": bias_lr_mult}]


def build_optimizer(model: nn.Module, name: str, lr: float, momentum: float, weight_decay: float,
                    bias_lr_mult: float = 2.0, impl: str = "loop"):
    """The optimizer the loop uses; each group's lr is set by LrSchedule (ε x lr_mult). `impl`
    (IMPLS) says how §5's update is computed, never what."""
    if impl not in IMPLS:
        raise ValueError(f"optimizer impl {impl!r}: expected one of {', '.join(IMPLS)}")
    if name == "sgd":
        groups = parameter_groups(model, weight_decay, bias_lr_mult)
        for group in groups:
            group["lr"] = lr * group["lr_mult"]
        if impl == "fused":
            return TorchSgdAsPaper(groups, lr=lr, momentum=momentum)
        return PaperSGD(groups, lr=lr, momentum=momentum, impl=impl)
    if name == "adam":  # the PyTorch replication's: one rate for everything, no decay
        return torch.optim.Adam([{"params": list(model.parameters()), "lr_mult": 1.0}], lr=lr)
    raise ValueError(f"optimizer {name!r}: expected sgd or adam")
