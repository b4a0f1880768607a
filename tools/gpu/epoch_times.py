"""Solo epoch time of each recipe in the seed comparison, for the table's training-time column.

The comparison runs train concurrently on one GPU, so their wall times include waiting for each
other. This trains each configuration alone for a few epochs (with its per-epoch validation) and
prints one JSON line: {name: seconds of the last epoch}. Training time = epochs run x that.

    python -m tools.gpu.epoch_times --data .gpu/fer.zip [--epochs 3] [--extra NAME:WIDTH:SAM ...]

`shipped` and the --extra configurations use the current shipped recipe (4 branches); the times in
bench/results/experiments.json (epoch_times_h100) were measured when it was one network.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

from fer_core.data.fer2013 import load_dataset
from fer_core.models.networks import build_model
from fer_core.training.recipes import get_recipe, with_arch
from fer_core.training.runs import DataSelection, select_data
from fer_core.training.trainer import Trainer, seed_everything

SEED_ARCHS = [get_recipe(f"seed00{i}").arch for i in range(5)]


def configurations(extra: list[str]):
    shipped = get_recipe("shipped")
    for i, arch in enumerate(SEED_ARCHS):
        yield f"own_{i}", get_recipe(f"seed00{i}"), {}
        yield f"ours_{i}", with_arch(shipped, arch), {}
    yield "shipped", shipped, {}
    for spec in extra:  # name:width:sam
        name, width, sam = spec.split(":")
        recipe = replace(shipped, config=replace(shipped.config, sam_rho=float(sam)))
        yield name, recipe, {"width": int(width)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--extra", nargs="*", default=[], help="name:width:sam_rho")
    args = parser.parse_args()
    data = load_dataset(args.data)
    x, y, vx, vy = select_data(data, DataSelection())
    out = {}
    for name, recipe, kwargs in configurations(args.extra):
        seed_everything(0)
        model = build_model(recipe.arch, **{**recipe.arch_kwargs, **kwargs})
        config = replace(recipe.config, epochs=args.epochs, early_stopping=0)
        result = Trainer(model, config, x, y, vx, vy).fit()
        out[name] = round(result.history[-1].seconds, 3)
        print(name, out[name], file=sys.stderr, flush=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
