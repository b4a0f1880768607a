"""The whole training step in one CUDA graph: captured once, then replayed for every batch.

Eagerly, PyTorch launches each of a step's few hundred kernels from Python, and for a 48x48
network that launching, not the arithmetic, sets the pace (`bench/train_profile.py`: the GPU is
busy 25-49% of each step). With `cuda_graph` the step (gathering the batch, its augmentation drawn
on the device, forward, loss, backward, the optimiser and the EMA update) is recorded once and
replayed with a single launch per batch. What changes from batch to batch lives in tensors that
the graph reads: the batch's indices, the learning rate (a tensor the schedule fills) and the EMA
weight. The first `WARMUP` steps run eagerly on a side stream, as capture requires; the arithmetic
is the eager step's, so runs stay repeatable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from fer_core.training.config import TrainConfig

if TYPE_CHECKING:
    from fer_core.training.trainer import Trainer

WARMUP = 3


def unsupported(config: TrainConfig, device: torch.device, world_size: int) -> str | None:
    """Why `config` cannot train with `cuda_graph` here, or None when it can (compile modes that
    make graphs of their own are refused by `TrainConfig` itself)."""
    aug = config.augment
    reasons = [
        (device.type != "cuda", f"CUDA graphs need a CUDA device (this run is on {device.type})"),
        (world_size > 1, "CUDA graphs train in one process (not under torchrun)"),
        (config.sam_rho > 0, "SAM's second forward and backward are not captured"),
        (
            config.mixup_alpha > 0 or config.cutmix_alpha > 0,
            "mixup and cutmix are planned on the host, batch by batch",
        ),
        (aug.resample > 0, "resampling draws its size on the host, batch by batch"),
    ]
    return next((why for bad, why in reasons if bad), None)


class GraphedStep:
    """A trainer's `_step_body` as a replayed CUDA graph; call it with a batch's indices."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.graph: torch.cuda.CUDAGraph | None = None
        self.steps = 0
        self.index: torch.Tensor | None = None
        self.out: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.ema_weight = torch.zeros((), device=trainer.device)

    def __call__(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits, loss to report, hard labels) of one optimisation step on `index`."""
        trainer = self.trainer
        if trainer.average is not None:
            self.ema_weight.fill_(trainer.average.weight(trainer.step))
        if self.graph is None and self.steps < WARMUP:
            side = torch.cuda.Stream(device=trainer.device)
            side.wait_stream(torch.cuda.current_stream(trainer.device))
            with torch.cuda.stream(side):
                out = trainer._step_body(index, self.ema_weight)
            torch.cuda.current_stream(trainer.device).wait_stream(side)
        else:
            if self.graph is None:
                self._capture(index)
            assert self.index is not None and self.graph is not None and self.out is not None
            self.index.copy_(index)
            self.graph.replay()
            out = self.out
        self.steps += 1
        return out

    def _capture(self, index: torch.Tensor) -> None:
        trainer = self.trainer
        self.index = index.clone()
        torch.cuda.synchronize(trainer.device)
        trainer.optimizer.zero_grad(set_to_none=True)  # the graph's backward owns the gradients
        graph = torch.cuda.CUDAGraph()
        default = torch.cuda.default_generators[trainer.device.index or torch.cuda.current_device()]
        if trainer._augment_generator is not default:
            graph.register_generator_state(trainer._augment_generator)
        with torch.cuda.graph(graph):
            self.out = trainer._step_body(self.index, self.ema_weight)
        self.graph = graph
