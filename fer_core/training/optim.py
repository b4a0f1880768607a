"""What turns gradients into weights: the optimiser and its schedule, sharpness-aware
minimisation (SAM), and the exponential moving average (EMA) of the weights."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import cast

import torch
from torch import nn

from fer_core.training.config import TrainConfig


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # No weight decay on norms and biases: they are scale parameters, not features.
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.optimizer == "adam":
        # Classic Adam adds weight decay to the gradient (L2), unlike AdamW.
        return torch.optim.Adam(groups, lr=cfg.lr)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """The learning-rate schedule, stepped once per batch (plateau: once per epoch), or None."""
    total = cfg.epochs * steps_per_epoch
    if cfg.scheduler == "cosine":
        warmup = int(cfg.warmup_epochs * steps_per_epoch)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if cfg.scheduler == "onecycle":
        # OneCycleLR divides by zero when its warm-up is exactly one step (4 steps in all)
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg.lr, total_steps=total, pct_start=0.3 if total == 4 else 0.25
        )
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=cfg.plateau_factor, patience=cfg.plateau_patience
        )
    return None


def sharpness_aware_gradient(
    model: nn.Module, rho: float, zero_grad: Callable[[], None], backward: Callable[[], None]
) -> None:
    """SAM (Foret et al. 2021): replace the gradient in `model` with the one taken at the worst
    point within `rho` of the weights (first-order), which favours flat minima. `backward`
    recomputes the loss and its gradient at the current weights."""
    params: list[torch.Tensor] = [p for p in model.parameters() if p.grad is not None]
    grads = [cast(torch.Tensor, p.grad) for p in params]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    steps = list(torch._foreach_mul(grads, rho / (norm + 1e-12)))
    with torch.no_grad():
        torch._foreach_add_(params, steps)
    zero_grad()
    backward()
    with torch.no_grad():
        torch._foreach_sub_(params, steps)


class WeightAverage:
    """An exponential moving average of a model's weights (buffers are copied as they are)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        # Warm the decay up so early averages are not dominated by the random init.
        decay = min(self.decay, (1 + step) / (10 + step))
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(list(self.module.parameters()), params, 1.0 - decay)
        for average, buffer in zip(self.module.buffers(), model.buffers()):
            average.copy_(buffer)
