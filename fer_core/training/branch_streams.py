"""A branched network's training forward with its branches side by side on the GPU.

`GroupedNet` runs all its branches in one grouped convolution per layer. In channels_last, cuDNN
copies each group's channels out and back around every grouped convolution (`nhwcSliceCKernel`:
0.48 ms of the shipped network's 3.9 ms training step on an H200). `BranchStreams` computes the
same function branch by branch instead: the shared trunk once, then each branch with its own block
of every grouped layer's weights (views: nothing is copied), each branch on a CUDA stream of its
own so that their small kernels run at the same time, forward and backward (autograd runs a
backward op on its forward op's stream). Compiled, the trunk is one graph and every branch runs
the same one (same shapes, other weights), so it also compiles in less time than the grouped
network. The weights, buffers and state_dict are the grouped network's: only the training forward
changes, and validation, checkpoints and inference use the grouped network as before.

Without CUDA the branches run one after another (the arithmetic is the same, which the tests
check on a CPU).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from fer_core.models.networks import PER_CHANNEL, GroupedLinear, GroupedNet

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
_WEIGHTED = (nn.Conv2d, nn.Linear, GroupedLinear)


def unsupported(model: nn.Module) -> str | None:
    """Why `model`'s branches cannot run one by one, or None when they can: the layers after the
    trunk must be as `group_models` makes them (the first weighted layer reads the trunk's
    output whole, every later one its own branch's block)."""
    if not isinstance(model, GroupedNet):
        return "not a branched (grouped) network"
    first = True
    for layer in branch_layers(model):
        if isinstance(layer, nn.Conv2d) and layer.groups != (1 if first else model.n):
            return f"a convolution with {layer.groups} groups in a network of {model.n} branches"
        if isinstance(layer, nn.Linear) and not first:
            return "a linear layer that mixes the branches"
        if isinstance(layer, _NORMS) and (layer.momentum is None or layer.running_mean is None):
            return "batch norm without running statistics at a fixed momentum"
        if not isinstance(layer, (*_WEIGHTED, *_NORMS, *PER_CHANNEL)):
            return f"a {type(layer).__name__} layer among the branches"
        first = first and not isinstance(layer, _WEIGHTED)
    return None


def branch_layers(model: GroupedNet) -> list[nn.Module]:
    """The grouped layers after the shared trunk, features then head."""
    features, head = cast(nn.Sequential, model.features), cast(nn.Sequential, model.head)
    return [*features, *head][model.trunk :]


class BranchStreams:
    """Call it like `GroupedNet.forward_branches`: (B, 1, H, W) -> (B, branches, classes)."""

    def __init__(self, model: GroupedNet, compile_mode: str | None = None) -> None:
        why = unsupported(model)
        if why:
            raise ValueError(f"cannot run the branches one by one: {why}")
        self.model = model
        self.layers = branch_layers(model)
        self.norms = [layer for layer in self.layers if isinstance(layer, _NORMS)]
        trunk = nn.Sequential(*list(cast(nn.Sequential, model.features))[: model.trunk])
        self.trunk: Callable[[torch.Tensor], torch.Tensor] = trunk
        self.branch: Callable[..., torch.Tensor] = self._branch
        if compile_mode is not None:
            if model.trunk:
                self.trunk = torch.compile(trunk, mode=compile_mode)
            self.branch = torch.compile(self._branch, mode=compile_mode)
        self.streams: list[torch.cuda.Stream] | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = self.trunk(x)  # (B, C, h, w), shared by every branch
        n, training = self.model.n, self.model.training
        tensors = self._branch_tensors()
        if training and self.norms:  # what BatchNorm's forward counts (F.batch_norm does not)
            counts = [cast(torch.Tensor, norm.num_batches_tracked) for norm in self.norms]
            torch._foreach_add_(counts, 1)
        if x.device.type != "cuda":
            outs = [self.branch(x, tensors[i], training) for i in range(n)]
            return torch.stack(outs, 1)
        if self.streams is None:
            self.streams = [torch.cuda.Stream(device=x.device) for _ in range(n)]
        here = torch.cuda.current_stream(x.device)
        outs = []
        for i, stream in enumerate(self.streams):
            stream.wait_stream(here)  # the trunk's output is ready
            with torch.cuda.stream(stream):
                outs.append(self.branch(x, tensors[i], training))
            x.record_stream(stream)  # its memory is not reused while a branch still reads it
        for stream, out in zip(self.streams, outs):
            here.wait_stream(stream)
            out.record_stream(here)
        return torch.stack(outs, 1)  # (B, branches, classes)

    def _branch_tensors(self) -> list[list[torch.Tensor | None]]:
        """Branch i's block of every grouped layer's tensors, in layer order: (weight, bias) of
        a convolution or linear layer, (weight, bias, running mean, running var) of a norm.
        Splitting a parameter is one autograd node: backward joins the branches' gradients with
        one copy."""
        n = self.model.n
        per: list[list[torch.Tensor | None]] = [[] for _ in range(n)]
        for layer in self.layers:
            if not isinstance(layer, (*_WEIGHTED, *_NORMS)):
                continue
            parts: list[Sequence[torch.Tensor | None]] = []
            if isinstance(layer, GroupedLinear):
                parts.append(layer.weight.unbind(0))  # (n, out, in): one matrix each
            else:
                parts.append(layer.weight.chunk(n))
            parts.append(layer.bias.chunk(n) if layer.bias is not None else [None] * n)
            if isinstance(layer, _NORMS):
                assert layer.running_mean is not None and layer.running_var is not None
                parts += [layer.running_mean.chunk(n), layer.running_var.chunk(n)]
            for i in range(n):
                per[i] += [part[i] for part in parts]
        return per

    def _branch(
        self, h: torch.Tensor, tensors: list[torch.Tensor | None], training: bool
    ) -> torch.Tensor:
        """One branch: the trunk's output through every grouped layer's block of `tensors`."""
        k = 0
        for layer in self.layers:
            if isinstance(layer, nn.Conv2d):
                weight, bias = tensors[k], tensors[k + 1]
                k += 2
                padding = cast("tuple[int, int]", layer.padding)  # F.conv2d takes a str too
                h = F.conv2d(h, cast(torch.Tensor, weight), bias, layer.stride, padding,
                             layer.dilation)  # fmt: skip
            elif isinstance(layer, _NORMS):
                weight, bias, mean, var = tensors[k : k + 4]
                k += 4
                momentum = cast(float, layer.momentum)  # checked by `unsupported`
                h = F.batch_norm(h, mean, var, weight, bias, training, momentum, layer.eps)
            elif isinstance(layer, (nn.Linear, GroupedLinear)):
                weight, bias = tensors[k], tensors[k + 1]
                k += 2
                h = F.linear(h, cast(torch.Tensor, weight), bias)
            elif isinstance(layer, nn.Dropout):
                h = F.dropout(h, layer.p, training)
            else:
                h = layer(h)
        return h
