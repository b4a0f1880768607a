"""Batched augmentation: shapes, ranges, seeded repeatability, test-time views."""

import pytest
import torch

from fer_core.data.augment import AugmentConfig, augment_batch, mix_batch, tta_views


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_identity_config_changes_nothing():
    x = torch.rand(8, 1, 48, 48)
    assert torch.equal(augment_batch(x, AugmentConfig.none(), _gen()), x)


def test_flip_only_flips():
    x = torch.rand(64, 1, 48, 48)
    y = augment_batch(x, AugmentConfig(hflip=1.0, rotation=0, translate=0), _gen())
    assert torch.equal(y, x.flip(-1))


def test_strong_augmentation_is_seeded_and_in_range():
    x = torch.rand(16, 1, 48, 48)
    a = augment_batch(x, AugmentConfig.strong(), _gen(3))
    b = augment_batch(x, AugmentConfig.strong(), _gen(3))
    c = augment_batch(x, AugmentConfig.strong(), _gen(4))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1


def test_random_erasing_erases():
    x = torch.zeros(32, 1, 48, 48)
    y = augment_batch(x, AugmentConfig(hflip=0, rotation=0, translate=0, erasing=1.0), _gen())
    assert ((y > 0).flatten(1).any(1)).all()


def test_mixup_and_cutmix_targets_sum_to_one():
    x = torch.rand(8, 1, 48, 48)
    t = torch.nn.functional.one_hot(torch.arange(8) % 7, 7).float()
    for mixup, cutmix in [(0.4, 0.0), (0.0, 1.0), (0.4, 1.0)]:
        xm, tm = mix_batch(x, t, mixup, cutmix, _gen())
        assert xm.shape == x.shape and torch.allclose(tm.sum(1), torch.ones(8))


@pytest.mark.parametrize("mode, views", [("none", 1), ("flip", 2), ("crops", 10)])
def test_tta_views(mode, views):
    x = torch.rand(3, 1, 48, 48)
    v = tta_views(x, mode)
    assert v.shape == (views, 3, 1, 48, 48) and torch.equal(v[0], x)
