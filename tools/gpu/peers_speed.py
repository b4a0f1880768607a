"""Seconds per epoch of the shipped recipe for model variants on synthetic data shaped like
FER2013's Training and PublicTest splits, with a callback that reads the batch progress as the
CLI does. Each argument is NAME=JSON of arch kwargs and config overrides,
e.g. 'b3={"branches": 3}' or 'p3={"peers": 3, "distill": 0.5}'. One JSON line per variant."""

import json
import sys
from dataclasses import fields, replace

import numpy as np

from fer_core.models import build_model, count_parameters
from fer_core.recipes import get_recipe
from fer_core.train import Callback, TrainConfig, Trainer


class Reader(Callback):
    def on_batch_end(self, trainer, progress):
        self.loss = progress.loss


rng = np.random.default_rng(0)
x_train = rng.integers(0, 256, (28709, 48, 48), dtype=np.uint8)
y_train = rng.integers(0, 7, 28709)
x_val = rng.integers(0, 256, (3589, 48, 48), dtype=np.uint8)
y_val = rng.integers(0, 7, 3589)
recipe = get_recipe("shipped")
config_keys = {f.name for f in fields(TrainConfig)}
for arg in sys.argv[1:]:
    name, spec = arg.split("=", 1)
    spec = json.loads(spec)
    overrides = {k: v for k, v in spec.items() if k in config_keys}
    arch_kwargs = {k: v for k, v in spec.items() if k not in config_keys}
    model = build_model("fer_vgg", **arch_kwargs)
    cfg = replace(recipe.config, **{"epochs": 3, **overrides})
    trainer = Trainer(model, cfg, x_train, y_train, x_val, y_val, [Reader()])
    history = trainer.fit().history
    print(json.dumps({
        "variant": name, **spec, "parameters": count_parameters(model),
        "epoch_s": [round(m.seconds, 2) for m in history],
    }), flush=True)  # fmt: skip
