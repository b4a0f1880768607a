"""GPU training throughput: our trainer against a seed-style PyTorch pipeline, in one run.

Both sides train the same architecture (the shipped `fer_vgg`) with the same augmentations (the
shipped recipe's: flip, rotation, translation, zoom, random resized crop, brightness, contrast,
random erasing) and the same SGD-Nesterov optimiser and loss.

- ours: `fer_core.training.trainer.Trainer`: the uint8 training set lives on the GPU, each batch is augmented
  by one batched affine `grid_sample`, bf16 autocast, channels_last, batch 128 (the recipe's);
  optionally `torch.compile` too; cuDNN times its convolution algorithms (`--cudnn-benchmark`),
  as it does for the baselines.
- baseline: what the seed projects do: torchvision `ImageFolder` over the extracted archive (or a
  CSV `Dataset` of PIL images when given the CSV), per-image PIL transforms, a `DataLoader`
  (`num_workers=0`, the seeds' default), fp32, batch 64. A tuned variant with worker processes
  and pinned memory is measured too, so the ratio is not only against the slowest setting.

Distance to the limit: the model's training FLOPs per image (6 x its conv and linear
multiply-adds on one 48x48 face: forward 2 x MACs, backward twice that) times images per second,
against the chip's bf16 matrix rate measured in the same run (a timed 8192 x 8192 `torch.matmul`),
is each side's utilisation. `--compile-mode` times `torch.compile` variants of ours in one run.

With --time-to-accuracy it also trains the shipped recipe to the end (or until it has reached 73%),
alone on the GPU, and reports minutes to 70% and 73% PublicTest accuracy (the recipe validates
every epoch with flip TTA).

    python -m bench.train_gpu --data ../shared/data/fer2013_kaggle_archive.zip [--json]
        [--time-to-accuracy] [--compile-mode default reduce-overhead max-autotune]
        [--workers 8] [--out bench/results/train_gpu_h200.json]

A CPU smoke check of every code path (minutes, numbers meaningless):

    python -m bench.train_gpu --device cpu --data ../shared/data/fer2013.csv.gz --limit 512
        --epochs 1 --batches 4 --workers 1 --time-to-accuracy --recipe-epochs 1
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench import gpu_machine
from fer_core.data.fer2013 import load_dataset
from fer_core.models.networks import GroupedLinear, build_model, count_parameters
from fer_core.training.config import COMPILE_MODES
from fer_core.training.recipes import Recipe, get_recipe, with_overrides
from fer_core.training.runs import DataSelection, train_run
from fer_core.training.trainer import Callback, Trainer, seed_everything

ROOT = Path(__file__).resolve().parent.parent

RECIPE = get_recipe("shipped")


def training_macs(model: torch.nn.Module, size: int = 48) -> int:
    """Multiply-adds of one forward pass on one size x size face: every convolution and linear
    layer (the grouped network's block-diagonal ones too), counted by forward hooks. Norms,
    activations and pooling are not matrix work and are left out."""
    macs = 0

    def count(module, inputs, output) -> None:
        nonlocal macs
        weight = module.weight.numel()
        if isinstance(module, torch.nn.Conv2d):  # weight (out, in / groups, kh, kw)
            macs += weight * output.shape[-2] * output.shape[-1]
        else:  # Linear (out, in) or GroupedLinear (n, out, in), one row per image
            macs += weight * (output[0].numel() // _out_features(module))

    kinds = (torch.nn.Conv2d, torch.nn.Linear, GroupedLinear)
    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, kinds)]
    was = model.training
    with torch.no_grad():
        model.eval()(torch.zeros(1, 1, size, size, device=next(model.parameters()).device))
    model.train(was)
    for hook in hooks:
        hook.remove()
    return macs


def _out_features(module) -> int:
    weight = module.weight  # Linear (out, in), GroupedLinear (n, out, in)
    return int(weight.shape[0] if weight.ndim == 2 else weight.shape[0] * weight.shape[1])


def matmul_peak(device: torch.device, n: int = 8192, repeats: int = 20) -> dict:
    """The chip's dense matrix rate, measured: bf16 n x n x n products timed with CUDA events
    (on CPU a smaller fp32 product, only so the smoke check runs the same code)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    n = n if device.type == "cuda" else min(n, 1024)
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3):  # warm-up: cuBLAS picks its kernel
        torch.matmul(a, b)
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeats):
            torch.matmul(a, b)
        end.record()
        end.synchronize()
        seconds = start.elapsed_time(end) / 1000
    else:
        tick = time.perf_counter()
        for _ in range(repeats):
            torch.matmul(a, b)
        seconds = time.perf_counter() - tick
    flops = 2 * n**3 * repeats / seconds
    return {"dtype": str(dtype).removeprefix("torch."), "n": n, "tflops": round(flops / 1e12, 2)}


def utilisation(img_per_s: float, flops_per_image: float, peak_tflops: float) -> float:
    """Achieved training FLOP/s as a share of the measured peak."""
    return round(img_per_s * flops_per_image / (peak_tflops * 1e12), 4)


def ours(
    data, epochs: int, device: str, compile_mode: str | None, limit: int | None,
    recipe: Recipe = RECIPE, cuda_graph: bool = False,
) -> dict:  # fmt: skip
    """Images per second of our trainer: the last of `epochs` training epochs, no validation.
    compile_mode: a torch.compile mode, or None for eager; cuda_graph: the step as a CUDA graph.
    cuDNN times its algorithms (the trainer's --cudnn-benchmark), as for the baselines."""
    train = data.split("train")
    images, labels = train.images[:limit], train.labels[:limit]
    config = replace(recipe.config, epochs=epochs, eval_tta="none", device=device,
                     compile=compile_mode is not None, compile_mode=compile_mode or "default",
                     cuda_graph=cuda_graph, cudnn_benchmark=True)  # fmt: skip
    seed_everything(0)
    model = build_model(recipe.arch, **recipe.arch_kwargs)
    empty = np.zeros((0, 48, 48), np.uint8)
    trainer = Trainer(model, config, images, labels, empty, np.zeros(0, np.int64))
    result = trainer.fit()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    seen = trainer.batches_per_epoch * config.batch_size
    last = result.history[-1].seconds
    return {
        "img_per_s": round(seen / last, 1),
        "epoch_s": round(last, 2),
        "first_epoch_s": round(result.history[0].seconds, 2),
        "batch_size": config.batch_size,
        "compile": compile_mode,
        "cuda_graph": cuda_graph,
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
    torch.backends.cudnn.benchmark = True  # as in every measurement of it (a Trainer sets its own)
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
        pin_memory=workers > 0 and device.type == "cuda",
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


class _StopAtLastBar(Callback):
    """Stop the run once validation has reached the highest bar: the rest is not timed."""

    def __init__(self, bar: float) -> None:
        self.bar = bar

    def on_epoch_end(self, trainer, metrics) -> None:
        if metrics.val_acc >= self.bar:
            trainer.request_stop()


def time_to_accuracy(
    data, workdir: Path, recipe: Recipe = RECIPE, limit: int | None = None,
    thresholds=(0.70, 0.73),
) -> dict:  # fmt: skip
    """Train the shipped recipe alone, to its end or the highest bar; minutes until PublicTest
    reaches each bar."""
    _, result = train_run(data, recipe, workdir / "run", DataSelection(limit=limit),
                          [_StopAtLastBar(max(thresholds))])  # fmt: skip
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


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    default = ROOT.parent / "shared" / "data" / "fer2013_kaggle_archive.zip"
    parser.add_argument("--data", default=str(default), help="archive .zip, folder or CSV")
    parser.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke check")
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed for ours (last one)")
    parser.add_argument("--batches", type=int, default=200, help="batches timed for the baseline")
    parser.add_argument("--workers", type=int, default=8, help="workers of the tuned baseline")
    parser.add_argument("--limit", type=int, help="train on the first N training faces (smoke)")
    parser.add_argument(
        "--branches", type=int,
        help="the shipped network with this many branches (1: the single 5.2M fer_vgg)",
    )  # fmt: skip
    parser.add_argument(
        "--compile-mode", nargs="+", choices=COMPILE_MODES, default=[],
        help="also time ours under torch.compile in each of these modes",
    )  # fmt: skip
    parser.add_argument("--compile", action="store_true", help="same as --compile-mode default")
    parser.add_argument(
        "--cuda-graph", action="store_true", help="also time ours with the step as a CUDA graph"
    )
    parser.add_argument("--time-to-accuracy", action="store_true", help="train the recipe fully")
    parser.add_argument("--recipe-epochs", type=int, help="time-to-accuracy: epochs (smoke)")
    parser.add_argument("--recipe-compile-mode", choices=COMPILE_MODES,
                        help="time-to-accuracy: train under torch.compile in this mode")  # fmt: skip
    parser.add_argument("--recipe-cuda-graph", action="store_true",
                        help="time-to-accuracy: train with the step as a CUDA graph")  # fmt: skip
    parser.add_argument("--out", help="also write the JSON result to this file")
    parser.add_argument("--json", action="store_true", help="only the final JSON line")
    args = parser.parse_args()
    args.recipe = RECIPE
    if args.branches is not None:
        kwargs = {**RECIPE.arch_kwargs, "branches": args.branches}
        args.recipe = replace(RECIPE, arch_kwargs=kwargs)
    try:  # TrainConfig refuses settings that cannot train together: say so before any timing
        args.timed_recipe = _timed_recipe(args)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def _timed_recipe(args) -> Recipe:
    """The recipe --time-to-accuracy trains, with its --recipe-* settings."""
    recipe = with_overrides(args.recipe, device=args.device, cudnn_benchmark=True)
    if args.recipe_compile_mode:
        recipe = with_overrides(recipe, compile=True, compile_mode=args.recipe_compile_mode)
    if args.recipe_cuda_graph:
        recipe = with_overrides(recipe, cuda_graph=True)
    return with_overrides(recipe, epochs=args.recipe_epochs)


def _compiled_variants(args, data, out: dict, log) -> None:
    """Ours under each asked-for compile mode, and with --cuda-graph the step as a CUDA graph
    (alone and around the compiled forward); a variant that fails is recorded, not fatal."""
    modes = list(dict.fromkeys([*(["default"] if args.compile else []), *args.compile_mode]))
    variants = [(f"ours_compile_{mode.replace('-', '_')}", f"ours + compile ({mode})", mode, False)
                for mode in modes]  # fmt: skip
    if args.cuda_graph:
        variants += [("ours_cuda_graph", "ours + CUDA graph", None, True),
                     ("ours_cuda_graph_compiled", "ours + CUDA graph + compile (default)",
                      "default", True)]  # fmt: skip
    for key, label, mode, cuda_graph in variants:
        try:
            out[key] = ours(data, args.epochs, args.device, mode, args.limit, args.recipe,
                            cuda_graph=cuda_graph)  # fmt: skip
        except Exception as exc:  # a benchmark reports a failed variant, it does not stop
            out[key] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        torch._dynamo.reset()  # each variant compiles afresh
        log(label, out[key])


def _baselines(args, data, out: dict, log) -> None:
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        dataset, kind = baseline_dataset(Path(args.data), data, Path(tmp))
        if args.limit is not None:
            dataset = torch.utils.data.Subset(dataset, range(min(args.limit, len(dataset))))
        out["baseline_source"] = kind
        out["baseline"] = baseline(dataset, 0, args.batches, warmup=min(20, args.batches),
                                   recipe=args.recipe, device=device)  # fmt: skip
        log("baseline (seed default, 0 workers)", out["baseline"])
        out["baseline_tuned"] = baseline(dataset, args.workers, args.batches * 3,
                                         warmup=min(20, args.batches), recipe=args.recipe,
                                         device=device)  # fmt: skip
        log(f"baseline ({args.workers} workers, pinned)", out["baseline_tuned"])
        if args.time_to_accuracy:
            out["time_to_accuracy"] = time_to_accuracy(data, Path(tmp), args.timed_recipe,
                                                       args.limit)  # fmt: skip
            log("time to accuracy", out["time_to_accuracy"])


def _summarise(out: dict) -> None:
    """Best of ours, the ratios to the baselines, and every variant's utilisation."""
    flops, peak = out["train_flops_per_image"], out["peak"]["tflops"]
    for value in out.values():
        if isinstance(value, dict) and "img_per_s" in value:
            value["utilisation"] = utilisation(value["img_per_s"], flops, peak)
    timed = [v for k, v in out.items() if k.startswith("ours") and "img_per_s" in v]
    best = max(timed, key=lambda v: v["img_per_s"])
    out["ours_img_per_s"] = best["img_per_s"]
    out["ours_best_compile"] = best["compile"]
    out["ours_best_cuda_graph"] = best.get("cuda_graph", False)
    out["ours_utilisation"] = best["utilisation"]
    out["baseline_img_per_s"] = out["baseline"]["img_per_s"]
    out["ratio"] = round(best["img_per_s"] / out["baseline_img_per_s"], 1)
    out["ratio_vs_tuned_baseline"] = round(
        best["img_per_s"] / out["baseline_tuned"]["img_per_s"], 1
    )


def main() -> int:
    args = _arguments()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"error": "no CUDA GPU: this benchmark needs one (--device cpu: smoke)"}))
        return 1
    data = load_dataset(Path(args.data))
    log = (lambda *a: None) if args.json else print
    model = build_model(args.recipe.arch, **args.recipe.arch_kwargs)
    macs = training_macs(model)
    out: dict = {"arch": args.recipe.arch, "arch_kwargs": args.recipe.arch_kwargs,
                 "params": count_parameters(model), "forward_macs_per_image": macs,
                 "train_flops_per_image": 6 * macs, "peak": matmul_peak(device)}  # fmt: skip
    log("model", {k: out[k] for k in ("params", "forward_macs_per_image")}, "peak", out["peak"])
    out["ours"] = ours(data, args.epochs, args.device, None, args.limit, args.recipe)
    log("ours", out["ours"])
    _compiled_variants(args, data, out, log)
    _baselines(args, data, out, log)
    _summarise(out)
    out["machine"] = gpu_machine(device.type == "cuda")
    if not args.json:
        print(
            f"\nours {out['ours_img_per_s']:,.0f} img/s ({out['ours_utilisation']:.1%} of "
            f"{out['peak']['tflops']} {out['peak']['dtype']} TFLOP/s) | seed-style "
            f"{out['baseline_img_per_s']:,.0f} img/s (x{out['ratio']}) | tuned DataLoader "
            f"{out['baseline_tuned']['img_per_s']:,.0f} img/s (x{out['ratio_vs_tuned_baseline']})"
        )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
