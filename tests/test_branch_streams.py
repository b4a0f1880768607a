"""A grouped network's branches computed one by one (fer_core/training/branch_streams.py): the same
function, gradients and running statistics as the grouped layers, over the same weights. On a
CPU the branches run one after another; the streams are exercised by the compiled CUDA-graph
tests in test_graphed.py on a GPU."""

import copy
from typing import cast

import pytest
import torch
from test_models import GROUPABLE
from torch import nn

from fer_core.models.networks import GroupedNet, build_model, group_models
from fer_core.training.branch_streams import BranchStreams, unsupported

NETWORKS = [f"fer_vgg shared_stages={k}" for k in range(4)] + GROUPABLE


def _grouped(name: str) -> GroupedNet:
    """A branched fer_vgg, or two copies of an architecture packed as one grouped network."""
    torch.manual_seed(0)
    if name.startswith("fer_vgg "):
        shared = int(name.rsplit("=", 1)[1])
        net = build_model("fer_vgg", width=8, branches=3, shared_stages=shared)
    else:
        net = group_models([build_model(name) for _ in range(2)])
    for m in net.modules():  # dropout draws its masks per call: off, so outputs can match
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    return cast(GroupedNet, net)


@pytest.mark.parametrize("name", NETWORKS)
def test_branches_one_by_one_train_exactly_as_the_grouped_layers(name):
    grouped = _grouped(name)
    assert unsupported(grouped) is None, name
    twin = copy.deepcopy(grouped)
    streams = BranchStreams(twin)  # eager: the arithmetic, not the compiler, is under test
    x = torch.randn(6, 1, 48, 48, generator=torch.Generator().manual_seed(1))
    grouped.train()
    twin.train()
    for _ in range(2):  # two steps: the running statistics move twice
        for p in [*grouped.parameters(), *twin.parameters()]:
            p.grad = None
        want, got = grouped.forward_branches(x), streams(x)
        assert got.shape == want.shape == (6, grouped.n, 7)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
        (want.square().sum()).backward()
        (got.square().sum()).backward()
        for (key, p), q in zip(grouped.named_parameters(), twin.parameters(), strict=True):
            # to the gradient's scale: a bias before batch norm has a zero gradient, up to noise
            assert (q.grad - p.grad).abs().max() <= 1e-5 * p.grad.abs().max() + 1e-5, key
    for (key, value), other in zip(grouped.state_dict().items(), twin.state_dict().values()):
        torch.testing.assert_close(other, value, msg=key)  # running stats and batch counts


def test_what_cannot_run_branch_by_branch_says_why():
    assert unsupported(build_model("fer_vgg")) == "not a branched (grouped) network"
    grouped = build_model("fer_vgg", width=8, branches=2)
    no_momentum = copy.deepcopy(grouped)
    [m for m in no_momentum.features if isinstance(m, nn.BatchNorm2d)][-1].momentum = None
    mixing = copy.deepcopy(grouped)
    mixing.head.append(nn.Linear(14, 14))  # reads every branch's logits at once
    for model, why in ((no_momentum, "batch norm without running statistics"),
                       (mixing, "a linear layer that mixes the branches")):  # fmt: skip
        assert why in unsupported(model)
        with pytest.raises(ValueError, match=why):
            BranchStreams(model)
