"""GPU training throughput: our trainer against a seed-style PyTorch pipeline, in one run.

Both sides train the same architecture (the shipped `fer_vgg`) with the same augmentations (the
shipped recipe's: flip, rotation, translation, zoom, random resized crop, brightness, contrast,
random erasing) and the same SGD-Nesterov optimiser and loss.

- ours: `fer_core.training.trainer.Trainer`: the uint8 training set lives on the GPU, each batch is augmented
  by one batched affine `grid_sample`, bf16 autocast, channels_last, batch 128 (the recipe's);
  optionally `torch.compile` too.
- baseline: what the seed projects do: torchvision `ImageFolder` over the extracted archive (or a
  CSV `Dataset` of PIL images when given the CSV), per-image PIL transforms, a `DataLoader`
  (`num_workers=0`, the seeds' default), fp32, batch 64. A tuned variant with worker processes
  and pinned memory is measured too, so the ratio is not only against the slowest setting.

With --time-to-accuracy it also trains the shipped recipe to the end, alone on the GPU, and reports
minutes to 70% and 73% PublicTest accuracy (the recipe validates every epoch with flip TTA).

    python -m bench.train_gpu --data ../shared/data/fer2013_kaggle_archive.zip [--json]
        [--time-to-accuracy] [--compile] [--workers 8]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fer_core.data.fer2013 import load_dataset
from fer_core.models.networks import build_model, count_parameters
from fer_core.training.recipes import get_recipe
from fer_core.training.runs import DataSelection, train_run
from fer_core.training.trainer import Trainer, seed_everything

ROOT = Path(__file__).resolve().parent.parent

RECIPE = get_recipe("shipped")


def ours(data, epochs: int, compile_model: bool) -> dict:
    """Images per second of our trainer: the last of `epochs` training epochs, no validation."""
    train = data.split("train")
    config = replace(RECIPE.config, epochs=epochs, compile=compile_model, eval_tta="none")
    seed_everything(0)
    model = build_model(RECIPE.arch, **RECIPE.arch_kwargs)
    empty = np.zeros((0, 48, 48), np.uint8)
    trainer = Trainer(model, config, train.images, train.labels, empty, np.zeros(0, np.int64))
    result = trainer.fit()
    torch.cuda.synchronize()
    images = trainer.batches_per_epoch * config.batch_size
    last = result.history[-1].seconds
    return {
        "img_per_s": round(images / last, 1),
        "epoch_s": round(last, 2),
        "first_epoch_s": round(result.history[0].seconds, 2),
        "batch_size": config.batch_size,
        "compile": compile_model,
    }


def baseline_transform(config=RECIPE.config):
    """The recipe's augmentations as the seeds write them: per-image torchvision/PIL transforms."""
    from torchvision import transforms as T

    aug = config.augment
    return T.Compose(
        [
            T.Grayscale(num_output_channels=1),
            T.RandomHorizontalFlip(aug.hflip),
            T.RandomAffine(
                degrees=aug.rotation, translate=(aug.translate, aug.translate), scale=aug.scale
            ),
            T.RandomResizedCrop(48, scale=aug.crop_scale, ratio=aug.crop_ratio),
            T.ColorJitter(brightness=aug.brightness, contrast=aug.contrast),
            T.ToTensor(),
            T.Normalize((config.mean,), (config.std,)),
            T.RandomErasing(p=aug.erasing, scale=aug.erasing_area),
        ]
    )


class _ArrayFaces(torch.utils.data.Dataset):
    """A CSV-style dataset: one PIL image per item, as the CSV seeds build them."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def baseline_dataset(data_path: Path, data, workdir: Path, config=RECIPE.config):
    from torchvision.datasets import ImageFolder

    if data_path.suffix.lower() == ".zip":
        with zipfile.ZipFile(data_path) as archive:
            members = [n for n in archive.namelist() if "train/" in n.lower()]
            archive.extractall(workdir, members)
        root = next(p for p in workdir.rglob("train") if p.is_dir())
        return ImageFolder(str(root), transform=baseline_transform(config)), "ImageFolder (PNG)"
    train = data.split("train")
    return _ArrayFaces(train.images, train.labels, baseline_transform(config)), "CSV Dataset (PIL)"


def baseline(
    dataset, workers: int, batches: int, warmup: int = 20, recipe=RECIPE, device="cuda"
) -> dict:
    """Images per second of a seed-style fp32 loop over `batches` batches after `warmup`."""
    device = torch.device(device)
    seed_everything(0)
    model = build_model(recipe.arch, **recipe.arch_kwargs).to(device)
    cfg = recipe.config
    optimizer = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
        weight_decay=cfg.weight_decay,
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=64,
        shuffle=True,
        num_workers=workers,
        pin_memory=workers > 0,
        persistent_workers=workers > 0,
    )
    model.train()
    seen, start = 0, None
    for step, (x, y) in enumerate(loader):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start, seen = time.perf_counter(), 0
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(y)
        if step == warmup + batches:
            break
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"img_per_s": round(seen / seconds, 1), "workers": workers, "batch_size": 64}


def time_to_accuracy(data, workdir: Path, thresholds=(0.70, 0.73)) -> dict:
    """Train the shipped recipe to the end alone; minutes until PublicTest reaches each bar."""
    _, result = train_run(data, RECIPE, workdir / "run", DataSelection(val="public_test"))
    elapsed, reached = 0.0, {}
    for m in result.history:
        elapsed += m.seconds
        for bar in thresholds:
            if m.val_acc >= bar and bar not in reached:
                reached[bar] = (round(elapsed / 60, 2), m.epoch)
    best = max(result.history, key=lambda m: m.val_acc)
    out = {
        "run_minutes": round(result.seconds / 60, 2),
        "epochs": len(result.history),
        "best_public_test": round(best.val_acc, 4),
        "best_epoch": best.epoch,
    }
    for bar in thresholds:
        key = f"{round(bar * 100)}"
        minutes, epoch = reached.get(bar, (None, None))
        out[f"minutes_to_{key}"], out[f"epoch_to_{key}"] = minutes, epoch
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = ROOT.parent / "shared" / "data" / "fer2013_kaggle_archive.zip"
    parser.add_argument("--data", default=str(default), help="archive .zip, folder or CSV")
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed for ours (last one)")
    parser.add_argument("--batches", type=int, default=200, help="batches timed for the baseline")
    parser.add_argument("--workers", type=int, default=8, help="workers of the tuned baseline")
    parser.add_argument("--compile", action="store_true", help="also time ours with compile")
    parser.add_argument("--time-to-accuracy", action="store_true", help="train the recipe fully")
    parser.add_argument("--json", action="store_true", help="only the final JSON line")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(json.dumps({"error": "no CUDA GPU: this benchmark needs one"}))
        return 1
    torch.backends.cudnn.benchmark = True
    data_path = Path(args.data)
    data = load_dataset(data_path)
    log = (lambda *a: None) if args.json else print
    out: dict = {"arch": RECIPE.arch, "params": count_parameters(build_model(RECIPE.arch))}

    out["ours"] = ours(data, args.epochs, compile_model=False)
    log("ours", out["ours"])
    if args.compile:
        out["ours_compile"] = ours(data, args.epochs, compile_model=True)
        log("ours + compile", out["ours_compile"])
    with tempfile.TemporaryDirectory() as tmp:
        dataset, kind = baseline_dataset(data_path, data, Path(tmp))
        out["baseline_source"] = kind
        out["baseline"] = baseline(dataset, 0, args.batches)
        log("baseline (seed default, 0 workers)", out["baseline"])
        out["baseline_tuned"] = baseline(dataset, args.workers, args.batches * 3)
        log(f"baseline ({args.workers} workers, pinned)", out["baseline_tuned"])
        if args.time_to_accuracy:
            out["time_to_accuracy"] = time_to_accuracy(data, Path(tmp))
            log("time to accuracy", out["time_to_accuracy"])

    best_ours = max(out["ours"]["img_per_s"], out.get("ours_compile", {}).get("img_per_s", 0))
    out["ours_img_per_s"] = best_ours
    out["baseline_img_per_s"] = out["baseline"]["img_per_s"]
    out["ratio"] = round(best_ours / out["baseline_img_per_s"], 1)
    out["ratio_vs_tuned_baseline"] = round(best_ours / out["baseline_tuned"]["img_per_s"], 1)
    out["machine"] = {
        "gpu": torch.cuda.get_device_name(0),
        "cpu_count": __import__("os").cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if not args.json:
        print(
            f"\nours {best_ours:,.0f} img/s | seed-style {out['baseline_img_per_s']:,.0f} img/s "
            f"(x{out['ratio']}) | tuned DataLoader {out['baseline_tuned']['img_per_s']:,.0f} "
            f"img/s (x{out['ratio_vs_tuned_baseline']})"
        )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
