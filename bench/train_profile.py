"""Where a training step's time goes on the GPU: the PyTorch profiler over steps of our trainer.

For a recipe's network (default the shipped one; `--branches 1` for the single 5.2M `fer_vgg`),
eager and under each `--compile-mode`, it reports per training step at batch 128:

- wall time (timed without the profiler, after warm-up) and images per second;
- GPU busy time: the summed duration of the step's kernels (the profiler's CUDA activity), and
  so the share of the wall time the GPU computes (the rest it waits for the host to queue work);
- kernels launched, split between the batch's augmentation and the optimisation step (forward,
  loss, backward, optimiser, weight average);
- the kernels that take the most GPU time.

    python -m bench.train_profile --data ../shared/data/fer2013_kaggle_archive.zip
        [--branches 1] [--compile-mode reduce-overhead] [--steps 30] [--json]

A CPU smoke check (numbers meaningless): `--device cpu --data ../shared/data/fer2013.csv.gz
--limit 512 --steps 2`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile, record_function

from bench import gpu_machine
from fer_core.data.fer2013 import load_dataset
from fer_core.models.networks import build_model
from fer_core.training.config import COMPILE_MODES
from fer_core.training.recipes import RECIPES
from fer_core.training.trainer import Trainer, mix_plan, seed_everything

ROOT = Path(__file__).resolve().parent.parent
PHASES = ("augment", "step")


def build_trainer(data, recipe_name: str, branches: int | None, device: str, mode: str | None,
                  limit: int | None) -> Trainer:  # fmt: skip
    recipe = RECIPES[recipe_name]
    kwargs = dict(recipe.arch_kwargs)
    if branches is not None:
        kwargs["branches"] = branches
    config = replace(recipe.config, device=device, eval_tta="none", cudnn_benchmark=True,
                     compile=mode is not None, compile_mode=mode or "default")  # fmt: skip
    train = data.split("train")
    seed_everything(0)
    model = build_model(recipe.arch, **kwargs)
    empty = np.zeros((0, 48, 48), np.uint8)
    return Trainer(model, config, train.images[:limit], train.labels[:limit], empty,
                   np.zeros(0, np.int64))  # fmt: skip


class Steps:
    """Training steps of a trainer, one batch after another, as its epoch loop runs them."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        cfg = trainer.config
        n = len(trainer.x_train)
        self.order = torch.randperm(n, generator=trainer.generator, device=trainer.device)
        self.plan = mix_plan(cfg, trainer.batches_per_epoch, 48, 48, 0)
        self.b = 0
        trainer.model.train()

    def __call__(self, marked: bool = False) -> None:
        t, size = self.trainer, self.trainer.config.batch_size
        b = self.b % t.batches_per_epoch
        self.b += 1
        index = self.order[b * size : (b + 1) * size]
        with record_function("augment") if marked else _nothing():
            x, _y, target = t._batch(index, self.plan[b])
        with record_function("step") if marked else _nothing():
            t._step(x, target)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(trainer: Trainer, steps: int, warmup: int) -> dict:
    run = Steps(trainer)
    device = trainer.device
    for _ in range(warmup):
        run()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        run()
    _sync(device)
    wall = (time.perf_counter() - start) / steps
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            run(marked=True)
        _sync(device)
    return {"wall_ms": round(wall * 1000, 3),
            "img_per_s": round(trainer.config.batch_size / wall, 1),
            **kernel_summary(prof, steps, wall)}  # fmt: skip


def kernel_summary(prof, steps: int, wall: float) -> dict:
    """GPU busy time, kernel counts per phase and the top kernels, per step."""
    events = prof.events()
    kernels = [e for e in events if e.device_type.name == "CUDA" and _is_kernel(e)]
    ranges = [e for e in events if e.name in PHASES and e.device_type.name == "CPU"]
    launches = [e for e in events if e.name in ("cudaLaunchKernel", "cudaLaunchKernelExC",
                                               "cuLaunchKernel", "cudaGraphLaunch")]  # fmt: skip
    per_phase: Counter[str] = Counter()
    for launch in launches:
        start = launch.time_range.start
        for r in ranges:
            if r.time_range.start <= start <= r.time_range.end:
                per_phase[r.name] += 1
                break
    busy_us = sum(k.time_range.elapsed_us() for k in kernels) / steps
    by_name: Counter[str] = Counter()
    for k in kernels:
        by_name[k.name[:90]] += k.time_range.elapsed_us()
    graphs = sum(1 for e in launches if e.name == "cudaGraphLaunch") / steps
    return {
        "gpu_busy_ms": round(busy_us / 1000, 3),
        "gpu_busy_share": round(busy_us / 1e6 / wall, 3) if kernels else None,
        "kernels_per_step": round(len(kernels) / steps, 1),
        "launches_per_step": {p: round(per_phase[p] / steps, 1) for p in PHASES},
        "graph_launches_per_step": graphs,
        "top_kernels_ms": [
            [name, round(us / steps / 1000, 4)] for name, us in by_name.most_common(8)
        ],
    }


def _is_kernel(event) -> bool:
    """A kernel on the GPU's timeline: not a copy or fill, and not the GPU-side span of a
    `record_function` range (ours, or the optimiser's own "Optimizer.step#...")."""
    if getattr(event, "is_user_annotation", False) or event.name in PHASES:
        return False
    return not event.name.startswith(("Memcpy", "Memset", "cuda", "Optimizer."))


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    default = ROOT.parent / "shared" / "data" / "fer2013_kaggle_archive.zip"
    parser.add_argument("--data", default=str(default), help="archive .zip, folder or CSV")
    parser.add_argument("--recipe", default="shipped", choices=sorted(RECIPES))
    parser.add_argument("--branches", type=int, help="override the network's branches (1: one)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--compile-mode", nargs="*", choices=COMPILE_MODES, default=[],
                        help="also profile ours under torch.compile in these modes")  # fmt: skip
    parser.add_argument("--steps", type=int, default=30, help="steps timed and profiled")
    parser.add_argument("--warmup", type=int, default=30, help="steps before timing")
    parser.add_argument("--limit", type=int, help="train on the first N faces (smoke)")
    parser.add_argument("--out", help="also write the JSON result to this file")
    parser.add_argument("--json", action="store_true", help="only the final JSON line")
    return parser.parse_args()


def main() -> int:
    args = _arguments()
    if args.device == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"error": "no CUDA GPU: this benchmark needs one (--device cpu: smoke)"}))
        return 1
    data = load_dataset(Path(args.data))
    out: dict = {"recipe": args.recipe, "branches": args.branches, "steps": args.steps}
    for mode in [None, *args.compile_mode]:
        trainer = build_trainer(data, args.recipe, args.branches, args.device, mode, args.limit)
        key = "eager" if mode is None else f"compile_{mode.replace('-', '_')}"
        out[key] = measure(trainer, args.steps, args.warmup)
        if not args.json:
            print(key, json.dumps(out[key]), flush=True)
        del trainer
        torch._dynamo.reset()
    out["machine"] = gpu_machine(args.device == "cuda")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
