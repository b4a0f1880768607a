"""How long a run will take on this machine, from a few timed training batches and a timed
validation pass, before it starts."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from fer_core.data.fer2013 import FerData
from fer_core.training.recipes import Recipe
from fer_core.training.runs import DataSelection, select_indices
from fer_core.training.trainer import BatchProgress, Callback, Trainer


@dataclass(frozen=True)
class RunEstimate:
    seconds_per_batch: float
    batches_per_epoch: int
    validation_s: float  # one validation pass
    epochs: int
    device: str

    @property
    def total_s(self) -> float:
        return self.epochs * (self.seconds_per_batch * self.batches_per_epoch + self.validation_s)


class _BatchClock(Callback):
    """Times the batches after the first (which pays for one-off set-up)."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_batch_end(self, trainer: Trainer, progress: BatchProgress) -> None:
        self.ends.append(time.perf_counter())


def estimate_run(
    data: FerData,
    recipe: Recipe,
    selection: DataSelection,
    arch_kwargs: dict | None = None,
    batches: int = 3,
) -> RunEstimate:
    """Train `batches` + 1 batches of the run's own configuration on its own images (nothing is
    saved) and time a validation pass over up to 512 of its validation images."""
    from fer_core.inference import predict_logits
    from fer_core.models.networks import build_model

    train_idx, val_idx = select_indices(data, selection)
    config = recipe.config
    sample = train_idx[: config.batch_size * (batches + 1)]
    probe = replace(config, epochs=1, early_stopping=0)
    model = build_model(recipe.arch, **{**recipe.arch_kwargs, **(arch_kwargs or {})})
    empty = np.zeros((0, *data.images.shape[1:]), np.uint8)
    clock = _BatchClock()
    trainer = Trainer(model, probe, data.images[sample], data.labels[sample], empty,
                      np.zeros(0, np.int64), [clock])  # fmt: skip
    trainer.fit()
    per_batch = float(np.diff(clock.ends).mean()) if len(clock.ends) > 1 else 0.0
    shown = data.images[val_idx[:512]]
    start = time.perf_counter()
    if len(shown):
        predict_logits(trainer.eval_model, shown, config.mean, config.std, tta=config.eval_tta,
                       amp=config.amp)  # fmt: skip
    validation = (time.perf_counter() - start) * len(val_idx) / max(1, len(shown))
    return RunEstimate(
        seconds_per_batch=per_batch,
        batches_per_epoch=max(1, len(train_idx) // config.batch_size),
        validation_s=validation,
        epochs=config.epochs,
        device=str(trainer.device),
    )
