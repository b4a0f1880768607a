"""The shipped models: they load, their stored evaluation is what evaluation code computes now."""

import json

import pytest

from fer_core.checkpoint import DEFAULT_CHECKPOINT, FAST_CHECKPOINT, load_checkpoint
from fer_core.evaluate import evaluate_checkpoint
from fer_core.predict import DEFAULT_TTA


@pytest.mark.parametrize("path", [DEFAULT_CHECKPOINT, FAST_CHECKPOINT])
def test_stored_public_test_numbers_reproduce(csv_data, path):
    ckpt = load_checkpoint(path)
    stored = ckpt.metrics["public_test"]
    result, _ = evaluate_checkpoint(ckpt, csv_data, "public_test", tta=DEFAULT_TTA)
    assert result.n == stored["n"] == 3589
    assert result.accuracy == pytest.approx(stored["accuracy"], abs=1e-9)
    assert result.confusion_matrix == stored["confusion_matrix"]


def test_shipped_checkpoints_are_small_and_self_describing():
    total = sum(p.stat().st_size for p in DEFAULT_CHECKPOINT.parent.glob("*.pt"))
    assert total <= 50 * 1024 * 1024
    ckpt = load_checkpoint()
    assert ckpt.classes[3] == "happy" and ckpt.input_size == 48
    assert ckpt.extra.get("command", "").startswith("python -m fer_core train")
    assert json.dumps(ckpt.train_config)  # serialisable record of the recipe


@pytest.mark.parametrize(
    "path, recipe", [(DEFAULT_CHECKPOINT, "shipped"), (FAST_CHECKPOINT, "shipped_fast")]
)
def test_named_recipe_reproduces_the_shipped_config(path, recipe):
    """`--recipe shipped` is exactly the configuration stored in the shipped checkpoint."""
    from fer_core.recipes import get_recipe
    from fer_core.train import TrainConfig

    ckpt = load_checkpoint(path)
    assert TrainConfig.from_dict(ckpt.train_config) == get_recipe(recipe).config
    assert ckpt.arch == get_recipe(recipe).arch
    assert ckpt.arch_kwargs == get_recipe(recipe).arch_kwargs
