"""int8 inference on the CPU: the convolutions in 8-bit integers, 6-10x faster than fp32.

Post-training quantization of the VGG-style networks (blocks of convolution, batch norm and ReLU,
with max-pooling between them; `fer_vgg`, branched or not). `calibrate` folds each batch norm
into its convolution and records, on a thousand training faces, the range of every block's
output (PyTorch's histogram observer): one scale and zero point per block, stored in the
checkpoint by `finalize`. `int8_model` rebuilds the network from the fp32 weights and that
record when a checkpoint is used: per-channel int8 weights, PyTorch's quantized conv+ReLU kernels
(the x86 engine), a file holds one set of weights and the build takes a fraction of a second.

The first block (it reads the 1-channel image) and the head stay in fp32: they cost little, and
quantizing the image lost accuracy (the model card has the measurement). `precision` "auto" uses
int8 where a checkpoint carries a record and the engine is present (x86 processors), fp32
elsewhere (GPUs, Arm, files without a record, other architectures).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from fer_core.models.networks import FerNet

ENGINE = "x86"
RECORD_FORMAT = 2
PRECISIONS = ("auto", "fp32", "int8")
CALIBRATION_FACES = 1024


@contextmanager
def _quiet() -> Iterator[None]:
    """PyTorch warns about the future of its quantized tensors on every call; none of that is
    for the user of this tool."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def unavailable() -> str | None:
    """Why int8 inference cannot run here, or None when it can."""
    if ENGINE not in torch.backends.quantized.supported_engines:
        return f"this processor has no {ENGINE} int8 engine"
    return None


def _blocks(model: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d] | nn.MaxPool2d]:
    """The network's features as (convolution, batch norm) blocks, each followed by a ReLU, and
    max-pooling layers; ValueError for any other shape."""
    features = getattr(model, "features", None)
    layers = list(features) if isinstance(features, nn.Sequential) else []
    blocks: list[tuple[nn.Conv2d, nn.BatchNorm2d] | nn.MaxPool2d] = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, nn.MaxPool2d):
            blocks.append(layer)
            i += 1
        elif (
            isinstance(layer, nn.Conv2d)
            and i + 2 < len(layers)
            and isinstance(norm := layers[i + 1], nn.BatchNorm2d)
            and isinstance(layers[i + 2], nn.ReLU)
        ):
            blocks.append((layer, norm))
            i += 3
        else:
            break
    if i < len(layers) or not blocks or not isinstance(blocks[0], tuple):
        raise ValueError(
            "int8 inference covers VGG-style networks (convolution, batch norm, ReLU and "
            "max-pooling blocks) only"
        )
    return blocks


def _folded(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of the convolution with the batch norm's running statistics folded in:
    new tensors, the modules untouched."""
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    assert bn.running_mean is not None and bn.running_var is not None
    weight, bias = fuse_conv_bn_weights(
        conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
    )
    return weight.detach(), bias.detach()


def _conv(x: torch.Tensor, conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor):
    """`conv` applied with other weights (its folded ones)."""
    return torch.nn.functional.conv2d(
        x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups
    )


def calibrate(
    model: nn.Module,
    images: np.ndarray,
    mean: float,
    std: float,
    faces: int = CALIBRATION_FACES,
    seed: int = 0,
) -> dict:
    """The int8 record of `model`: the scale and zero point of every block's output, observed
    on `faces` of the (N, 48, 48) uint8 `images` (training faces, drawn with `seed`) and their
    mirror images, as the default test-time augmentation shows them. Raises ValueError for a
    network it does not cover, RuntimeError where int8 cannot run here."""
    from torch.ao.quantization.observer import HistogramObserver

    from fer_core.inference import to_input

    reason = unavailable()
    if reason:
        raise RuntimeError(reason)
    blocks = _blocks(model)
    folded = [_folded(*b) if isinstance(b, tuple) else None for b in blocks]
    with _quiet():
        observers = [
            HistogramObserver(reduce_range=True) if isinstance(b, tuple) else None for b in blocks
        ]
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(images), min(faces, len(images)), replace=False))
    with _quiet(), torch.inference_mode():
        for start in range(0, len(chosen), 64):
            x = to_input(torch.from_numpy(images[chosen[start : start + 64]]), mean, std)
            x = torch.cat([x, x.flip(-1)])
            for block, weights, observer in zip(blocks, folded, observers):
                if isinstance(block, tuple) and weights is not None and observer is not None:
                    x = torch.relu(_conv(x, block[0], *weights))
                    observer(x)
                else:
                    x = cast(nn.MaxPool2d, block)(x)
        scales = [o.calculate_qparams() if o is not None else None for o in observers]
    return {
        "format": RECORD_FORMAT,
        "engine": ENGINE,
        "faces": len(chosen),
        "seed": int(seed),
        # per block: [scale, zero point] of its output, or None for a pooling layer
        "activations": [None if s is None else [float(s[0]), int(s[1])] for s in scales],
    }


class Int8Network(nn.Module):
    """A VGG-style `model` with its blocks after the first in int8: fp32 first block, quantize,
    int8 conv+ReLU blocks and max-pooling, dequantize, then the fp32 model's own head (shared,
    not copied)."""

    def __init__(self, model: nn.Module, record: dict) -> None:
        import torch.ao.nn.intrinsic.quantized as nniq
        import torch.ao.nn.quantized as nnq
        from torch.ao.quantization.observer import PerChannelMinMaxObserver

        super().__init__()
        blocks = _blocks(model)
        activations = record.get("activations")
        if (
            record.get("format") != RECORD_FORMAT
            or not isinstance(activations, list)
            or len(activations) != len(blocks)
            or any((a is None) != isinstance(b, nn.MaxPool2d) for a, b in zip(activations, blocks))
            or not all(_qparams_ok(a) for a in activations if a is not None)
        ):
            raise ValueError("the int8 record does not fit this network")
        self._fp32 = [model]  # a list: the fp32 model is not a submodule of this one
        torch.backends.quantized.engine = ENGINE
        first = cast("tuple[nn.Conv2d, nn.BatchNorm2d]", blocks[0])
        self._first_conv = [first[0]]  # its stride and padding (a list: not a submodule)
        first_weight, first_bias = _folded(*first)
        self.register_buffer("first_weight", first_weight)  # buffers: they say the device
        self.register_buffer("first_bias", first_bias)
        scale, zero = activations[0]
        self.quantize = nnq.Quantize(scale, zero, torch.quint8)
        layers: list[nn.Module] = []
        for block, qparams in zip(blocks[1:], activations[1:]):
            if not isinstance(block, tuple):
                layers.append(nn.MaxPool2d(block.kernel_size, block.stride, block.padding))
                continue
            conv = block[0]
            folded_weight, folded_bias = _folded(*block)  # one block's fp32 copy at a time
            observer = PerChannelMinMaxObserver(
                dtype=torch.qint8, qscheme=torch.per_channel_symmetric
            )
            observer(folded_weight)
            w_scale, w_zero = observer.calculate_qparams()
            weight = torch.quantize_per_channel(
                folded_weight, w_scale.double(), w_zero, 0, torch.qint8
            )
            q = nniq.ConvReLU2d(
                conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                conv.padding, conv.dilation, conv.groups, bias=True,
            )  # fmt: skip
            q.set_weight_bias(weight, folded_bias)
            q.scale, q.zero_point = float(qparams[0]), int(qparams[1])
            layers.append(q)
        self.body = nn.Sequential(*layers)
        self.dequantize = nnq.DeQuantize()
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = cast(torch.Tensor, self.first_weight), cast(torch.Tensor, self.first_bias)
        x = torch.relu(_conv(x, self._first_conv[0], weight, bias))
        x = x.contiguous(memory_format=torch.channels_last)  # the int8 kernels work in NHWC
        x = self.dequantize(self.body(self.quantize(x)))
        return cast("FerNet", self._fp32[0]).forward_head(x)


def _qparams_ok(qparams) -> bool:
    return (
        isinstance(qparams, (list, tuple))
        and len(qparams) == 2
        and isinstance(qparams[0], float)
        and 0 < qparams[0] < 1e6
        and isinstance(qparams[1], int)
        and 0 <= qparams[1] <= 255
    )


def int8_model(model: nn.Module, record: dict) -> nn.Module:
    """The int8 network of fp32 `model` and its `calibrate` record (CPU, eval mode). Raises
    ValueError for a record that does not fit the network, RuntimeError where int8 cannot run."""
    reason = unavailable()
    if reason:
        raise RuntimeError(reason)
    with _quiet():
        return Int8Network(model, record)


def resolve_precision(precision: str, device: torch.device, has_record: bool) -> str:
    """ "auto" -> "int8" on a CPU where a checkpoint has a record and the engine exists, else
    "fp32"; "int8" where it cannot run raises ValueError with the reason."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return "fp32"
    reason = (
        "int8 runs on the CPU only"
        if device.type != "cpu"
        else "the checkpoint carries no int8 record (`python -m fer_core finalize` adds one)"
        if not has_record
        else unavailable()
    )
    if reason is None:
        return "int8"
    if precision == "int8":
        raise ValueError(f"int8 inference is not available: {reason}")
    return "fp32"
