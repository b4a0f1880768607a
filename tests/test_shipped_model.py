"""The shipped models: they load, their stored evaluation is what evaluation code computes now."""

import json

import numpy as np
import pytest

from fer_core.evaluate import evaluate_checkpoint
from fer_core.models.checkpoint import DEFAULT_CHECKPOINT, FAST_CHECKPOINT, load_checkpoint
from fer_core.predict import DEFAULT_TTA


@pytest.mark.parametrize("path", [DEFAULT_CHECKPOINT, FAST_CHECKPOINT])
def test_stored_public_test_numbers_reproduce(csv_data, path):
    """The stored fp32 evaluation reproduces exactly. The stored default one (int8, as
    predictions run on x86 CPUs) reproduces to within two faces: integer kernels are exact, but
    which kernel requantizes a layer depends on the processor."""
    from fer_core.models.quantize import unavailable

    ckpt = load_checkpoint(path)
    stored = ckpt.metrics["public_test_fp32"]
    assert stored["precision"] == "fp32"
    result, _ = evaluate_checkpoint(ckpt, csv_data, "public_test", tta=DEFAULT_TTA,
                                    precision="fp32")  # fmt: skip
    assert result.n == stored["n"] == 3589
    assert result.accuracy == pytest.approx(stored["accuracy"], abs=1e-9)
    assert result.confusion_matrix == stored["confusion_matrix"]
    default = ckpt.metrics["public_test"]
    assert default["precision"] == "int8"
    assert abs(default["accuracy"] - stored["accuracy"]) < 0.005  # int8 keeps the accuracy
    if unavailable():
        pytest.skip(f"no int8 here: {unavailable()}")
    result, _ = evaluate_checkpoint(ckpt, csv_data, "public_test", tta=DEFAULT_TTA)
    assert result.precision == "int8"
    assert abs(result.accuracy - default["accuracy"]) * result.n <= 2
    moved = np.abs(np.array(result.confusion_matrix) - np.array(default["confusion_matrix"]))
    assert moved.sum() <= 4


def test_shipped_checkpoints_are_small_and_self_describing():
    total = sum(p.stat().st_size for p in DEFAULT_CHECKPOINT.parent.glob("*.pt"))
    assert total <= 50 * 1024 * 1024
    ckpt = load_checkpoint()
    assert ckpt.classes[3] == "happy" and ckpt.input_size == 48
    assert ckpt.extra.get("command", "").startswith("python -m fer_core train")
    assert json.dumps(ckpt.train_config)  # serialisable record of the recipe


@pytest.mark.parametrize(
    "path, recipe, photo_augment",
    [(DEFAULT_CHECKPOINT, "shipped", True), (FAST_CHECKPOINT, "shipped_fast", False)],
)
def test_named_recipe_reproduces_the_shipped_config(path, recipe, photo_augment):
    """Both training stages of a shipped model are recorded in it: stage 1 is exactly `--recipe
    shipped` (or shipped_fast); stage 2 is that recipe with the model card's fine-tuning flags
    (`--init ... --epochs 30 --lr 0.01 [--photo-augment]`)."""
    from dataclasses import replace

    from fer_core.data.augment import with_photo_degradations
    from fer_core.training.config import TrainConfig
    from fer_core.training.recipes import get_recipe

    ckpt = load_checkpoint(path)
    named = get_recipe(recipe)
    stage1 = ckpt.extra["init"]
    assert TrainConfig.from_dict(stage1["train_config"]) == named.config
    assert stage1["command"].startswith("python -m fer_core train")
    augment = (
        with_photo_degradations(named.config.augment) if photo_augment else named.config.augment
    )
    expected = replace(named.config, epochs=30, lr=0.01, augment=augment)
    assert TrainConfig.from_dict(ckpt.train_config) == expected
    command = ckpt.extra["command"]
    assert "--init" in command and "--ferplus" in command
    assert ("--photo-augment" in command) == photo_augment
    assert ckpt.arch == named.arch
    assert ckpt.arch_kwargs == named.arch_kwargs
    # stage 3 of the default model (model card): 0.6 of the way from stage 1 to stage 2
    mixed = ckpt.extra.get("interpolated")
    assert (mixed and mixed["alpha"]) == (0.6 if photo_augment else None)
