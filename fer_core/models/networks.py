"""Architectures by name: faithful presets of the five seed projects, a small CPU model, and ours.

Every model takes (B, 1, 48, 48) normalised grayscale and returns (B, 7) logits. Each splits
`forward_features` (the last convolutional map, used for Grad-CAM) from `forward_head`.
No pretrained weights anywhere: every network starts from random initialisation.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import torch
from torch import nn

from fer_core.labels import NUM_CLASSES


class FerNet(nn.Module):
    """A feature extractor, a head, and the forward split the app's saliency view relies on."""

    def __init__(self, features: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.features = features
        self.head = head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, C, h, w)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(feats)  # (B, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _conv_bn_relu(c_in: int, c_out: int, kernel: int = 3, padding: int | None = None) -> list:
    padding = kernel // 2 if padding is None else padding
    return [
        nn.Conv2d(c_in, c_out, kernel, padding=padding, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


# ----------------------------------------------------------------------------- seed presets


def seed_cnn4_fc512(num_classes: int = NUM_CLASSES) -> FerNet:
    """Seed 000: 4 x [Conv3x3 + BN + ReLU + MaxPool] (32-64-128-256), FC 2304-512, dropout 0.5."""
    layers: list[nn.Module] = []
    for c_in, c_out in [(1, 32), (32, 64), (64, 128), (128, 256)]:
        layers += [*_conv_bn_relu(c_in, c_out), nn.MaxPool2d(2)]  # 48 -> 24 -> 12 -> 6 -> 3
    head = nn.Sequential(
        nn.Flatten(),
        nn.Linear(256 * 3 * 3, 512),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(512, num_classes),
    )
    return FerNet(nn.Sequential(*layers), head)


def seed_cnn3_colab(num_classes: int = NUM_CLASSES) -> FerNet:
    """Seed 001: [Conv + ReLU + MaxPool] x 3 (32-64-128), dropout, FC 4608-256-7.

    Its README names only the layer kinds; widths follow the common tutorial network it describes.
    """
    layers: list[nn.Module] = []
    for c_in, c_out in [(1, 32), (32, 64), (64, 128)]:
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
    head = nn.Sequential(
        nn.Flatten(),
        nn.Dropout(0.25),
        nn.Linear(128 * 6 * 6, 256),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(256, num_classes),
    )
    return FerNet(nn.Sequential(*layers), head)


def seed_vgg6_unpadded(num_classes: int = NUM_CLASSES) -> FerNet:
    """Seed 002: 3 x ([Conv3x3 + BN + ReLU] x 2 + MaxPool), unpadded convs, Linear(256*2*2 -> 7).

    Unpadded 3x3 convs take 48 -> 44 -> 22 -> 18 -> 9 -> 5 -> 2, which is the 256*2*2 it flattens.
    """
    layers: list[nn.Module] = []
    for c_in, c_out in [(1, 64), (64, 128), (128, 256)]:
        layers += [*_conv_bn_relu(c_in, c_out, padding=0), *_conv_bn_relu(c_out, c_out, padding=0)]
        layers.append(nn.MaxPool2d(2))
    head = nn.Sequential(nn.Flatten(), nn.Linear(256 * 2 * 2, num_classes))
    return FerNet(nn.Sequential(*layers), head)


def seed_cnn4_fc256(num_classes: int = NUM_CLASSES) -> FerNet:
    """Seed 003: 4 x [Conv3x3 + BN + ReLU + MaxPool] (32-64-128-256), FC 2304-256, dropout 0.4."""
    layers: list[nn.Module] = []
    for c_in, c_out in [(1, 32), (32, 64), (64, 128), (128, 256)]:
        layers += [*_conv_bn_relu(c_in, c_out), nn.MaxPool2d(2)]
    head = nn.Sequential(
        nn.Flatten(),
        nn.Linear(256 * 3 * 3, 256),
        nn.ReLU(inplace=True),
        nn.Dropout(0.4),
        nn.Linear(256, num_classes),
    )
    return FerNet(nn.Sequential(*layers), head)


def seed_cnn4_dropout(num_classes: int = NUM_CLASSES, dropout: float = 0.36) -> FerNet:
    """Seed 004: convs 1-64 (3x3), 64-128 (5x5), 128-256, 256-256, each BN + ReLU + pool + dropout;
    FC 2304-256-512 with BatchNorm1d, dropout 0.36."""
    layers: list[nn.Module] = []
    for c_in, c_out, k in [(1, 64, 3), (64, 128, 5), (128, 256, 3), (256, 256, 3)]:
        layers += [*_conv_bn_relu(c_in, c_out, k), nn.MaxPool2d(2), nn.Dropout(dropout)]
    head = nn.Sequential(
        nn.Flatten(),
        nn.Linear(256 * 3 * 3, 256),
        nn.BatchNorm1d(256),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(256, 512),
        nn.BatchNorm1d(512),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(512, num_classes),
    )
    return FerNet(nn.Sequential(*layers), head)


# ----------------------------------------------------------------------------- our models


def _gap_head(channels: int, num_classes: int, dropout: float) -> nn.Module:
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels, num_classes)
    )


def small_cnn(num_classes: int = NUM_CLASSES, width: int = 16, dropout: float = 0.2) -> FerNet:
    """A fast model for CPU training: five 3x3 convs, ~0.3M parameters, ~30 MFLOPs per face."""
    w = width
    features = nn.Sequential(
        *_conv_bn_relu(1, w),
        nn.MaxPool2d(2),  # 24
        *_conv_bn_relu(w, 2 * w),
        nn.MaxPool2d(2),  # 12
        *_conv_bn_relu(2 * w, 4 * w),
        *_conv_bn_relu(4 * w, 4 * w),
        nn.MaxPool2d(2),  # 6
        *_conv_bn_relu(4 * w, 8 * w),
    )
    return FerNet(features, _gap_head(8 * w, num_classes, dropout))


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs) with a projection shortcut when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def fer_resnet(
    num_classes: int = NUM_CLASSES,
    width: int = 64,
    blocks: tuple[int, ...] = (2, 2, 2, 2),
    dropout: float = 0.2,
) -> FerNet:
    """Our ResNet for 48x48 faces: a 3x3 stem at full resolution (no early downsampling, which
    throws away most of a 48x48 face), four stages at 48/24/12/6 pixels, global pooling."""
    layers: list[nn.Module] = [*_conv_bn_relu(1, width)]
    c_in = width
    for stage, n_blocks in enumerate(blocks):
        c_out = width * 2**stage
        for i in range(n_blocks):
            layers.append(BasicBlock(c_in, c_out, stride=2 if (i == 0 and stage > 0) else 1))
            c_in = c_out
    features = nn.Sequential(*layers)
    model = FerNet(features, _gap_head(c_in, num_classes, dropout))
    for module in model.modules():  # zero-init the last BN of each block: starts as identity
        if isinstance(module, BasicBlock):
            nn.init.zeros_(module.bn2.weight)
    return model


def fer_vgg(
    num_classes: int = NUM_CLASSES,
    width: int = 64,
    dropout: float = 0.3,
    branches: int = 1,
    shared_stages: int = 2,
) -> FerNet:
    """A VGG-style network in the spirit of Khaireddin & Chen (2021): 4 stages of two 3x3 convs
    with BN, max-pooling between stages, global pooling and a 2-layer head.

    branches > 1: the first `shared_stages` stages form one trunk that then splits into that
    many branches (stages and head, as grouped layers), whose predictions are averaged."""
    if branches > 1:
        if not 0 <= shared_stages <= 3:
            raise ValueError(f"shared_stages must be 0 to 3 (of 4 stages), got {shared_stages}")
        nets = [fer_vgg(num_classes, width, dropout) for _ in range(branches)]
        shared = sum(7 if stage < 3 else 6 for stage in range(shared_stages))  # 2 x CBR + pool
        return group_models(nets, shared=shared)
    layers: list[nn.Module] = []
    c_in = 1
    for stage in range(4):
        c_out = width * 2**stage
        layers += [*_conv_bn_relu(c_in, c_out), *_conv_bn_relu(c_out, c_out)]
        if stage < 3:
            layers.append(nn.MaxPool2d(2))  # 48 -> 24 -> 12 -> 6
        c_in = c_out
    head = nn.Sequential(
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(c_in, 1024),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(1024, num_classes),
    )
    return FerNet(nn.Sequential(*layers), head)


# ----------------------------------------------------------------------------- grouped networks


class GroupedLinear(nn.Module):
    """`n` independent Linear layers, each applied to its own block of a (B, n * in) input."""

    def __init__(self, n: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.n = n
        self.weight = nn.Parameter(torch.empty(n, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(n * out_features))  # 1-D: no weight decay on it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        out = torch.einsum("bni,noi->bno", x.reshape(b, self.n, -1), self.weight)
        return out.reshape(b, -1) + self.bias


class GroupedNet(FerNet):
    """`n` copies of one sequential FerNet side by side in a single network, optionally sharing
    their first layers (a common trunk that then branches).

    After the trunk, every convolution becomes a grouped convolution (the first one reads the
    trunk's output, or the image), and every norm and linear layer gets `n` independent blocks,
    so one kernel launch runs all branches: on a GPU that a single 48x48 network leaves mostly
    idle, branches come cheap. Branch i's channels are block i of every grouped layer.
    `forward_branches` gives each branch's logits (B, n, classes); `forward` averages the branches
    in probability and returns the log of that average, so softmax of it is the mean prediction.
    The first `trunk` layers of `features` are the shared trunk.
    """

    def __init__(
        self, features: nn.Sequential, head: nn.Sequential, n: int, trunk: int = 0
    ) -> None:
        super().__init__(features, head)
        self.n = n
        self.trunk = trunk

    def forward_branches(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.features(x))
        return out.reshape(out.shape[0], self.n, -1)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        out = self.head(feats)
        logp = out.reshape(out.shape[0], self.n, -1).float().log_softmax(-1)
        return torch.logsumexp(logp, dim=1) - math.log(self.n)


PER_CHANNEL = (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Dropout)


def _grouped_layer(layer: nn.Module, n: int, first: bool) -> nn.Module:
    if isinstance(layer, nn.Conv2d) and layer.groups == 1:
        c_in = layer.in_channels if first else n * layer.in_channels
        # Conv2d types these tuple[int, ...] (padding may be a str); a Conv2d's are 2-tuples.
        kernel_size = cast("tuple[int, int]", layer.kernel_size)
        stride = cast("tuple[int, int]", layer.stride)
        padding = cast("str | tuple[int, int]", layer.padding)
        dilation = cast("tuple[int, int]", layer.dilation)
        return nn.Conv2d(
            c_in, n * layer.out_channels, kernel_size, stride, padding,
            dilation, groups=1 if first else n, bias=layer.bias is not None,
        )  # fmt: skip
    if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return type(layer)(n * layer.num_features, layer.eps, layer.momentum)
    if isinstance(layer, nn.Linear) and not first and layer.bias is not None:
        return GroupedLinear(n, layer.in_features, layer.out_features)
    if isinstance(layer, PER_CHANNEL):  # the same layer works on any number of channels
        return copy.deepcopy(layer)
    raise ValueError(f"cannot run {type(layer).__name__} layers as grouped branches")


def group_models(models: list[FerNet], shared: int = 0) -> GroupedNet:
    """Pack same-architecture sequential FerNets into one GroupedNet holding their exact weights.
    The first `shared` layers of `features` become one trunk (with the first model's weights)."""
    template, n = models[0], len(models)
    if n < 2:
        raise ValueError("grouping needs at least two networks")
    parts = []
    first = True
    for part in (template.features, template.head):
        if not isinstance(part, nn.Sequential):
            raise ValueError("only sequential networks can run as grouped branches")
        layers: list[nn.Module] = []
        for layer in part:
            if part is template.features and len(layers) < shared:
                layers.append(copy.deepcopy(layer))
                continue
            layers.append(_grouped_layer(layer, n, first))
            first = first and not isinstance(layer, (nn.Conv2d, nn.Linear))
        parts.append(nn.Sequential(*layers))
    grouped = GroupedNet(parts[0], parts[1], n, trunk=shared)
    states = [m.state_dict() for m in models]
    packed = {}
    for key, ref in grouped.state_dict().items():
        values = [s[key] for s in states]
        layout = _layout(ref, values[0])
        if layout == "shared":
            packed[key] = values[0]
        elif layout == "stack":
            packed[key] = torch.stack(values)
        else:
            packed[key] = torch.cat(values)
    grouped.load_state_dict(packed)
    return grouped


def _layout(grouped: torch.Tensor, member: torch.Tensor) -> str:
    """How members' tensors sit in a grouped tensor: "shared" (the trunk, or a scalar buffer),
    "stack" (a new leading axis: GroupedLinear weights) or "cat" (blocks along axis 0)."""
    if grouped.shape == member.shape:
        return "shared"
    return "stack" if grouped.ndim == member.ndim + 1 else "cat"


def member_state_dict(grouped: GroupedNet, index: int, template: FerNet) -> dict:
    """Member `index`'s weights as a plain `template`-shaped state_dict."""
    out = {}
    grouped_state = grouped.state_dict()
    for key, ref in template.state_dict().items():
        value = grouped_state[key]
        layout = _layout(value, ref)
        if layout == "shared":
            out[key] = value
        elif layout == "stack":
            out[key] = value[index]
        else:
            out[key] = value.chunk(grouped.n)[index]
    return out


def fresh_copy(model: nn.Module) -> nn.Module:
    """The same architecture with freshly drawn initial weights (from torch's global RNG)."""
    twin = copy.deepcopy(model)
    for module in twin.modules():
        if module is not twin and hasattr(module, "reset_parameters"):
            # Module.__getattr__ is typed as returning Tensor | Module; this one is a method.
            cast("Callable[[], object]", module.reset_parameters)()
    return twin


# ----------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class ArchSpec:
    build: Callable[..., FerNet]
    description: str
    seed: str | None = None  # which seed project it reproduces, if any
    defaults: dict = field(default_factory=dict)


ARCHITECTURES: dict[str, ArchSpec] = {
    "small": ArchSpec(small_cnn, "Small fast CNN for CPU training"),
    "fer_resnet": ArchSpec(fer_resnet, "Our ResNet-18-style network for 48x48 faces"),
    "fer_resnet_slim": ArchSpec(
        fer_resnet,
        "Our ResNet at half width, for the webcam",
        defaults={"width": 32},
    ),
    "fer_vgg": ArchSpec(fer_vgg, "VGG-style network after Khaireddin & Chen 2021"),
    "seed_cnn4_fc512": ArchSpec(seed_cnn4_fc512, "Seed 000: 4 conv blocks, FC 512", "000"),
    "seed_cnn3_colab": ArchSpec(seed_cnn3_colab, "Seed 001: 3 conv blocks, FC 256", "001"),
    "seed_vgg6_unpadded": ArchSpec(seed_vgg6_unpadded, "Seed 002: 6 unpadded convs", "002"),
    "seed_cnn4_fc256": ArchSpec(seed_cnn4_fc256, "Seed 003: 4 conv blocks, FC 256", "003"),
    "seed_cnn4_dropout": ArchSpec(seed_cnn4_dropout, "Seed 004: 4 conv blocks + dropout", "004"),
}


def build_model(arch: str, **kwargs) -> FerNet:
    """Build an architecture by name; kwargs override its defaults."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}: choose one of {', '.join(ARCHITECTURES)}")
    for key in ("width", "branches"):
        value = kwargs.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive whole number, got {value!r}")
    spec = ARCHITECTURES[arch]
    unknown = sorted(set(kwargs) - set(inspect.signature(spec.build).parameters))
    if unknown:
        raise ValueError(f"{arch} takes no {', '.join(unknown)} option")
    return spec.build(**{**spec.defaults, **kwargs})


def output_classes(model: nn.Module) -> int | None:
    """How many classes a FerNet predicts, read from its head's last linear layer (a grouped
    head's outputs per branch, which the branches average); None for any other network."""
    if not isinstance(model, FerNet) or not isinstance(model.head, nn.Sequential):
        return None
    linear = [m for m in model.head.modules() if isinstance(m, (nn.Linear, GroupedLinear))]
    if not linear:
        return None
    last = linear[-1]
    return last.out_features if isinstance(last, nn.Linear) else int(last.weight.shape[1])


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def parameter_count(arch: str, **kwargs) -> int:
    """How many parameters `build_model(arch, **kwargs)` has, without allocating its weights
    (built on torch's meta device: a few milliseconds even for the largest network)."""
    with torch.device("meta"):
        return count_parameters(build_model(arch, **kwargs))
