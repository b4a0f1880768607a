"""Every architecture: output shape, finite outputs, every parameter gets a gradient."""

import pytest
import torch

from fer_core.models import ARCHITECTURES, build_model, count_parameters


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
