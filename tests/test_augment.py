"""Batched augmentation: shapes, ranges, seeded repeatability, test-time views."""

import pytest
import torch

from fer_core.data.augment import (
    AugmentConfig,
    apply_augmentation,
    augment_batch,
    draw_augmentation,
    mix_batch,
    tta_views,
    with_photo_degradations,
)


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


@pytest.mark.parametrize(
    "cfg",
    [
        AugmentConfig(hflip=0.5, rotation=0, translate=0),
        AugmentConfig.strong(),
        with_photo_degradations(AugmentConfig.strong()),
        AugmentConfig(hflip=0, rotation=0, translate=0, gamma=0.3, blur=1.0, jpeg=1.0),
        AugmentConfig(noise=0.1, erasing=0.5, contrast=0.2),
    ],
)
def test_every_drawn_number_is_used_and_drawing_is_separate(cfg):
    """The augmentation takes exactly the numbers drawn for it (it asserts so), and given the
    same draws it is a pure function: the same images out."""
    x = torch.rand(8, 1, 48, 48)
    draws = draw_augmentation(cfg, x.shape, _gen(5))
    a, b = apply_augmentation(x, cfg, draws), apply_augmentation(x, cfg, draws)
    assert torch.equal(a, b) and torch.equal(a, augment_batch(x, cfg, _gen(5)))
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1


def test_no_augmentation_draws_nothing():
    """An unaugmented run leaves its generator alone (on one process it also orders epochs)."""
    g = _gen(1)
    before = g.get_state()
    augment_batch(torch.rand(4, 1, 48, 48), AugmentConfig.none(), g)
    assert torch.equal(g.get_state(), before)
