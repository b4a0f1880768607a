"""Every architecture: output shape, finite outputs, every parameter gets a gradient."""

import pytest
import torch

from fer_core.models.networks import (
    ARCHITECTURES,
    build_model,
    count_parameters,
    group_models,
    member_state_dict,
    output_classes,
)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_architecture(arch):
    torch.manual_seed(0)
    model = build_model(arch)
    # Zero-initialised residual scales block gradients at step 0 by design; perturb every norm
    # scale so the check below can demand a non-zero gradient for every parameter.
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
    x = torch.randn(4, 1, 48, 48)
    logits = model(x)
    assert logits.shape == (4, 7)
    assert torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 3, 5, 6])).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert no_grad == []
    feats = model.forward_features(x)
    assert feats.ndim == 4 and model.forward_head(feats).shape == (4, 7)
    assert output_classes(model) == 7  # read from the head, as the trainer does


@pytest.mark.parametrize("arch", ["fer_vgg", "small", "seed_cnn3_colab"])
@pytest.mark.parametrize("num_classes", [3, 7])
def test_output_classes_reads_what_the_network_predicts(arch, num_classes):
    """`output_classes` gives the width of the network's output (for a branched network, of the
    averaged prediction), and None for a network that is not a FerNet."""
    kwargs = {"branches": 3} if arch == "fer_vgg" else {}
    model = build_model(arch, num_classes=num_classes, **kwargs).eval()
    assert output_classes(model) == model(torch.zeros(2, 1, 48, 48)).shape[-1] == num_classes
    assert output_classes(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))) is None


def test_unknown_architecture():
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("resnet9000")


def test_sizes_are_as_documented():
    assert count_parameters(build_model("small")) < 500_000
    assert 10e6 < count_parameters(build_model("fer_resnet")) < 12e6
    # seed 002 flattens 256*2*2 after unpadded convs
    assert (
        build_model("seed_vgg6_unpadded").forward_features(torch.zeros(1, 1, 48, 48)).shape[-1] == 2
    )


GROUPABLE = sorted(a for a in ARCHITECTURES if not a.startswith("fer_resnet"))


@pytest.mark.parametrize("arch", GROUPABLE)
def test_grouped_networks_hold_each_member_exactly(arch):
    """Packing n networks as grouped layers changes nothing: member i of the grouped network
    computes exactly network i, and unpacking gives back its weights."""
    torch.manual_seed(0)
    nets = [build_model(arch).eval() for _ in range(3)]
    for net in nets:  # non-trivial BatchNorm statistics
        for m in net.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    grouped = group_models(nets).eval()
    x = torch.randn(5, 1, 48, 48)
    with torch.no_grad():
        branches = grouped.forward_branches(x)
        for i, net in enumerate(nets):
            assert torch.allclose(branches[:, i], net(x), atol=1e-5)
            state = member_state_dict(grouped, i, net)
            assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
        mean = torch.stack([net(x).softmax(-1) for net in nets]).mean(0)
        assert torch.allclose(grouped(x).exp(), mean, atol=1e-5)


@pytest.mark.parametrize("shared_stages", [0, 1, 2, 3])
def test_branched_fer_vgg_is_a_shared_trunk_with_averaged_branches(shared_stages):
    torch.manual_seed(0)
    model = build_model("fer_vgg", branches=3, shared_stages=shared_stages).eval()
    plain = build_model("fer_vgg").eval()
    x = torch.randn(4, 1, 48, 48)
    with torch.no_grad():
        branches = model.forward_branches(x)
        for i in range(3):  # each branch is a plain fer_vgg: the shared trunk plus its own layers
            plain.load_state_dict(member_state_dict(model, i, plain))
            assert torch.allclose(plain(x), branches[:, i], atol=1e-5)
        assert torch.allclose(model(x).exp(), branches.softmax(-1).mean(1), atol=1e-5)
    trunk = count_parameters(plain.features[: 7 * shared_stages])  # stored once
    assert count_parameters(model) == 3 * count_parameters(plain) - 2 * trunk
    assert model.forward_features(x).shape == (4, 3 * 512, 6, 6)  # Grad-CAM sees every branch


def test_branched_fer_vgg_needs_a_stage_to_branch():
    with pytest.raises(ValueError, match="shared_stages must be 0 to 3"):
        build_model("fer_vgg", branches=2, shared_stages=4)


@pytest.mark.parametrize(
    "kwargs", [{"width": 0}, {"width": 2.5}, {"branches": -1}, {"width": True}]
)
def test_sizes_must_be_positive_whole_numbers(kwargs):
    with pytest.raises(ValueError, match="must be a positive whole number"):
        build_model("fer_vgg", **kwargs)


def test_options_an_architecture_does_not_take_are_refused():
    with pytest.raises(ValueError, match="small takes no branches, shared_stages option"):
        build_model("small", branches=2, shared_stages=1)
    build_model("fer_resnet_slim")  # its default width is an option fer_resnet takes


def test_networks_with_blocks_refuse_grouping():
    with pytest.raises(ValueError, match="cannot run BasicBlock"):
        group_models([build_model("fer_resnet"), build_model("fer_resnet")])
    with pytest.raises(ValueError, match="at least two"):
        group_models([build_model("small")])
