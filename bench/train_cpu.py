"""CPU training: seconds per epoch over the full train split for the app's default recipe.

Ours: `fer_core.training.trainer.Trainer` with the `cpu_default` recipe (the `small` network, batch 128,
batched augmentation, channels_last), one full epoch over all 28,709 training faces plus the
PublicTest validation the app runs after each epoch. Baseline, in the same run: the seed-style
loop (per-image PIL transforms through a `DataLoader`, batch 64, fp32, `num_workers=0`) on the same
network and augmentations, timed over --batches batches and scaled to an epoch.

    python -m bench.train_cpu [--data ../shared/data/fer2013.csv.gz] [--threads 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from bench import cpu_name
from bench.train_gpu import baseline, baseline_dataset
from fer_core.data.fer2013 import load_dataset
from fer_core.models.networks import build_model, count_parameters
from fer_core.training.recipes import get_recipe
from fer_core.training.runs import DataSelection, select_data
from fer_core.training.trainer import Trainer, seed_everything

ROOT = Path(__file__).resolve().parent.parent

RECIPE = get_recipe("cpu_default")


def ours(data, epochs: int) -> dict:
    x, y, vx, vy = select_data(data, DataSelection())
    config = replace(RECIPE.config, epochs=epochs, device="cpu")
    seed_everything(0)
    trainer = Trainer(build_model(RECIPE.arch), config, x, y, vx, vy)
    history = trainer.fit().history
    seconds = [m.seconds for m in history]
    return {
        "epoch_s": round(min(seconds), 1),
        "epoch_s_all": [round(s, 1) for s in seconds],
        "img_per_s": round(len(x) / min(seconds), 1),
        "val_acc_after": round(history[-1].val_acc, 4),
        "train_images": len(x),
        "val_images": len(vx),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/fer2013.csv.gz"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2, help="epochs of ours (fastest is kept)")
    parser.add_argument("--batches", type=int, default=60, help="baseline batches timed")
    parser.add_argument("--json", action="store_true", help="only the final JSON line")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(args.data)
    n_train = int(data.split_mask("train").sum())
    out: dict = {"arch": RECIPE.arch, "params": count_parameters(build_model(RECIPE.arch))}
    out["ours"] = ours(data, args.epochs)
    with tempfile.TemporaryDirectory() as tmp:
        dataset, kind = baseline_dataset(Path(args.data), data, Path(tmp), RECIPE.config)
        out["baseline"] = baseline(dataset, 0, args.batches, warmup=5, recipe=RECIPE, device="cpu")
    out["baseline"]["source"] = kind
    out["baseline"]["epoch_s_estimate"] = round(n_train / out["baseline"]["img_per_s"], 1)
    out["epoch_s"] = out["ours"]["epoch_s"]
    out["baseline_epoch_s"] = out["baseline"]["epoch_s_estimate"]
    out["ratio"] = round(out["baseline_epoch_s"] / out["epoch_s"], 1)
    out["target_epoch_s"] = 60
    out["machine"] = {
        "cpu": cpu_name(),
        "cpus": os.cpu_count(),
        "threads": args.threads,
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    if not args.json:
        print(
            f"ours {out['epoch_s']} s/epoch (incl. validation) | seed-style "
            f"{out['baseline_epoch_s']} s/epoch (training only, estimated) | x{out['ratio']}"
        )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
