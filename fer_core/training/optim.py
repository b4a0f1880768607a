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


def build_optimizer(
    model: nn.Module, cfg: TrainConfig, graphed: bool = False
) -> torch.optim.Optimizer:
    """The optimiser of `cfg`. `graphed` (a step captured in a CUDA graph): the learning rate is
    a tensor on the device, which the schedule fills, and the step launches no host work (fused
    SGD; Adam and AdamW with `capturable`)."""
    # No weight decay on norms and biases: they are scale parameters, not features.
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    lr: float | torch.Tensor = cfg.lr
    extra: dict = {}
    if graphed:
        lr = torch.tensor(cfg.lr, device=next(model.parameters()).device)
        extra = {"fused": True} if cfg.optimizer == "sgd" else {"capturable": True}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov, **extra)
    if cfg.optimizer == "adam":
        # Classic Adam adds weight decay to the gradient (L2), unlike AdamW.
        return torch.optim.Adam(groups, lr=lr, **extra)
    return torch.optim.AdamW(groups, lr=lr, **extra)


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

    def __init__(self, model: nn.Module, decay: float, compiled: bool = False) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        # The move with a weight on the device, compiled: one pass over the weights (fused
        # foreach kernels) instead of three, with a temporary copy of them all in between.
        self._move = _move_towards
        if compiled:
            self._move = cast(Callable[..., None], torch.compile(_move_towards))

    def weight(self, step: int) -> float:
        """The new weights' share in the average after `step` steps: 1 - decay, the decay
        warmed up so that early averages are not dominated by the random init."""
        return 1.0 - min(self.decay, (1 + step) / (10 + step))

    def update(self, model: nn.Module, step: int) -> None:
        self.blend(model, self.weight(step))

    @torch.no_grad()
    def blend(self, model: nn.Module, weight: float | torch.Tensor) -> None:
        """Move the average `weight` of the way to `model`'s weights (a tensor weight: inside a
        CUDA graph, where the value changes between replays)."""
        params = [p.detach() for p in model.parameters()]
        average: list[torch.Tensor] = list(self.module.parameters())
        if isinstance(weight, torch.Tensor):  # read on the device: no host sync in a graph
            self._move(average, params, weight)
        else:
            torch._foreach_lerp_(average, params, weight)
        kept, buffers = list(self.module.buffers()), list(model.buffers())
        if buffers:  # one launch for all (a network without batch norm has none)
            torch._foreach_copy_(kept, buffers)


def _move_towards(
    average: list[torch.Tensor], params: list[torch.Tensor], weight: torch.Tensor
) -> None:
    """average += weight * (params - average), with a 0-d tensor weight (foreach lerp takes
    only a number)."""
    moved = list(torch._foreach_sub(params, average))
    torch._foreach_mul_(moved, weight)
    torch._foreach_add_(average, moved)
