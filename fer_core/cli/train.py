"""`train` (a recipe, any of its settings overridden, into a resumable run folder),
`interpolate` (the weights between a fine-tuned checkpoint and the one it started from) and
`finalize` (calibrate and evaluate a run's best checkpoint into a shippable copy).

The training-setting flags are generated from `TrainConfig` and `AugmentConfig`
(`fer_core/options.py`): a new setting is one field there.

`torchrun --nproc-per-node N -m fer_core train ...` trains data-parallel on N processes
(`fer_core/training/distributed.py`); rank 0 names the run folder, writes it and prints.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from fer_core.cli.dataset import add_data_argument
from fer_core.data.augment import AugmentConfig
from fer_core.data.fer2013 import SPLIT_CHOICES
from fer_core.errors import FerError
from fer_core.options import add_flags, flag_values
from fer_core.training.config import TrainConfig
from fer_core.training.trainer import Callback

AUG_PREFIX = "aug-"


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model and write a checkpoint")
    _train_arguments(p)
    p.set_defaults(run=cmd_train)

    p = sub.add_parser(
        "finalize",
        help="calibrate (temperature on --split) and evaluate a checkpoint; write a copy that "
        "carries both",
    )
    p.add_argument("--checkpoint", required=True, help="a run's best.pt")
    add_data_argument(p)
    p.add_argument("--split", default="public_test", choices=SPLIT_CHOICES)
    p.add_argument("--out", required=True, help="e.g. checkpoints/fer_model.pt")
    p.add_argument("--half", action="store_true", help="store weights in fp16")
    p.add_argument(
        "--no-int8",
        dest="int8",
        action="store_false",
        help="store no int8 record (CPU predictions then run in fp32)",
    )
    p.set_defaults(run=cmd_finalize)

    p = sub.add_parser(
        "interpolate",
        help="the weights alpha of the way from one checkpoint to another (a fine-tuned model "
        "and the model it started from); finalize the result",
    )
    p.add_argument("--start", required=True, help="the model fine-tuning started from")
    p.add_argument("--end", required=True, help="the fine-tuned model")
    p.add_argument(
        "--alpha", type=float, required=True, help="0: the start, 1: the end (e.g. 0.75)"
    )
    p.add_argument("--out", required=True, help="the interpolated checkpoint")
    p.add_argument("--half", action="store_true", help="store weights in fp16")
    p.set_defaults(run=cmd_interpolate)


def _train_arguments(p: argparse.ArgumentParser) -> None:
    from fer_core.models.networks import ARCHITECTURES
    from fer_core.training.recipes import RECIPES

    add_data_argument(p)
    p.add_argument(
        "--recipe",
        default="cpu_default",
        choices=sorted(RECIPES),
        help="named recipe (architecture + settings); flags below override it",
    )
    net = p.add_argument_group("network")
    net.add_argument(
        "--arch", choices=sorted(ARCHITECTURES), help="architecture (overrides recipe)"
    )
    net.add_argument("--width", type=int, help="channel width for architectures that take one")
    net.add_argument(
        "--branches",
        type=int,
        help="fer_vgg only: split after the shared stages into this many branches, averaged",
    )
    net.add_argument(
        "--shared-stages",
        type=int,
        choices=range(4),
        metavar="{0..3}",
        help="fer_vgg with branches: how many of its 4 stages the branches share (default 2)",
    )
    net.add_argument(
        "--init",
        metavar="CHECKPOINT",
        help="fine-tune: start from this checkpoint's weights (its architecture replaces the "
        "recipe's)",
    )
    settings = p.add_argument_group("training settings", "each defaults to the recipe's value")
    add_flags(settings, TrainConfig, keep_defaults=False)
    aug = p.add_argument_group("augmentation", "each defaults to the recipe's value")
    aug.add_argument(
        "--photo-augment",
        action="store_true",
        help="add camera-photo degradations (gamma, blur, down-up sampling, JPEG) to the "
        "recipe's augmentation",
    )
    add_flags(aug, AugmentConfig, prefix=AUG_PREFIX, keep_defaults=False)
    _data_arguments(p.add_argument_group("data"))
    out = p.add_argument_group("output")
    out.add_argument("--out", default="runs", help="folder for run folders (default: runs)")
    out.add_argument("--run-dir", help="exact run folder (resumes if it holds a run)")
    out.add_argument("--half", action="store_true", help="store the final checkpoint in fp16")
    out.add_argument("--quiet", action="store_true", help="no progress bar (epoch lines only)")


def _data_arguments(group) -> None:
    group.add_argument(
        "--val",
        default="public_test",
        help="validation: public_test (default) or a fraction of train, e.g. 0.1",
    )
    group.add_argument("--limit", type=int, help="train on a stratified subset of N images")
    group.add_argument(
        "--class-weighting",
        choices=("none", "inverse", "effective"),
        help="loss weight per class from the train split's counts (default: the recipe's)",
    )
    group.add_argument(
        "--ferplus",
        metavar="CSV",
        help="FER+ vote file (fer2013new.csv): train on soft labels that blend each image's label "
        "with the FER+ annotators' votes",
    )
    group.add_argument(
        "--ferplus-weight",
        type=float,
        default=0.5,
        help="share of the FER+ votes in each soft label (default 0.5; 1 = votes only)",
    )


def recipe_from_args(args):
    """(recipe, architecture options, checkpoint to start from or None) of a `train` call."""
    from fer_core.training.recipes import get_recipe, with_arch, with_overrides

    recipe = with_overrides(get_recipe(args.recipe), **flag_values(args, TrainConfig))
    if args.arch:
        recipe = with_arch(recipe, args.arch)
    if args.class_weighting:
        recipe = replace(recipe, class_weighting=args.class_weighting)
    augment = recipe.config.augment
    if args.photo_augment:
        from fer_core.data.augment import with_photo_degradations

        augment = with_photo_degradations(augment)
    augment = replace(augment, **flag_values(args, AugmentConfig, AUG_PREFIX))
    recipe = replace(recipe, config=replace(recipe.config, augment=augment))
    options = ("width", "branches", "shared_stages")
    arch_kwargs = {key: getattr(args, key) for key in options if getattr(args, key) is not None}
    if not args.init:
        return recipe, arch_kwargs, None
    from fer_core.models.checkpoint import load_checkpoint

    if args.arch or arch_kwargs:
        raise FerError("--init takes the architecture from its checkpoint; drop --arch and "
                       "--width / --branches / --shared-stages")  # fmt: skip
    init = load_checkpoint(args.init)
    config = replace(recipe.config, mean=init.mean, std=init.std)  # its input normalisation
    recipe = replace(recipe, arch=init.arch, arch_kwargs=dict(init.arch_kwargs), config=config)
    return recipe, arch_kwargs, init


def cmd_train(args) -> int:
    from fer_core.training import distributed

    try:
        return _train(args)
    finally:
        distributed.shutdown()  # leave torchrun's process group before the process exits


def _train(args) -> int:
    from fer_core.data.fer2013 import load_dataset
    from fer_core.training import distributed
    from fer_core.training.runs import BEST_FILE, DataSelection, train_run

    try:
        recipe, arch_kwargs, init = recipe_from_args(args)
    except (TypeError, ValueError) as exc:  # a setting TrainConfig or AugmentConfig refuses
        raise FerError(str(exc)) from None
    if args.ferplus and not Path(args.ferplus).is_file():
        raise FerError(f"no FER+ file at {args.ferplus}")
    if not 0.0 <= args.ferplus_weight <= 1.0:
        raise FerError("--ferplus-weight must be between 0 and 1")
    data = load_dataset(args.data)
    try:
        val: str | float = float(args.val)
    except ValueError:
        val = args.val
    selection = DataSelection(
        val=val,
        limit=args.limit,
        seed=recipe.config.seed,
        ferplus=args.ferplus,
        ferplus_weight=args.ferplus_weight,
    )
    try:
        ctx, _ = distributed.init(recipe.config.device)  # a no-op without torchrun
    except (RuntimeError, ValueError) as exc:
        raise FerError(str(exc)) from None
    run_dir, command = _run_folder(args, recipe.arch, ctx)
    progress: list[Callback] = [ProgressBar(show_bar=not args.quiet)]
    try:
        best, result = train_run(data, recipe, run_dir, selection, callbacks=progress,
                                 arch_kwargs=arch_kwargs, command=command, init=init)  # fmt: skip
    except ValueError as exc:
        raise FerError(str(exc)) from None
    if not ctx.is_main:
        return 0
    if args.half and best.exists():
        from fer_core.models.checkpoint import load_checkpoint

        ckpt = load_checkpoint(best)
        resave(ckpt, best, ckpt.metrics, half=True)
    print(
        f"best epoch {result.best_epoch}: {result.best_metric:.4f} "
        f"({recipe.config.monitor}), {result.seconds:.0f}s",
        file=sys.stderr,
    )
    print(run_dir / BEST_FILE)
    return 0


def _run_folder(args, arch: str, ctx) -> tuple[Path, str]:
    """(the run folder, the command that trains it). Under torchrun rank 0 names a new folder
    and tells the others, so all processes train into one."""
    from fer_core.training import distributed
    from fer_core.training.runs import new_run_dir

    if args.run_dir:
        run_dir = Path(args.run_dir)
    else:
        run_dir = distributed.broadcast_object(new_run_dir(args.out, arch) if ctx.is_main else None)
    launcher = f"torchrun --nproc-per-node {ctx.world_size}" if ctx.distributed else "python"
    command = f"{launcher} -m fer_core " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    return run_dir, command


class ProgressBar(Callback):
    """A tqdm bar per epoch, fed by the trainer's typed callbacks."""

    def __init__(self, show_bar: bool = True) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self.show_bar = show_bar
        self.bar: Any = None

    def on_batch_end(self, trainer, progress) -> None:
        if not self.show_bar:
            return
        if self.bar is None:
            self.bar = self._tqdm(
                total=progress.batches,
                desc=f"epoch {progress.epoch}/{progress.epochs}",
                file=sys.stderr,
                leave=False,
            )
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{progress.loss:.3f}", eta=f"{progress.eta_s / 60:.1f}m")

    def on_epoch_end(self, trainer, m) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        star = " *" if m.is_best else ""
        print(
            f"epoch {m.epoch:>3}  train loss {m.train_loss:.4f} acc {m.train_acc:.4f}  "
            f"val loss {m.val_loss:.4f} acc {m.val_acc:.4f} f1 {m.val_macro_f1:.4f}  "
            f"lr {m.lr:.2e}  {m.seconds:.1f}s{star}",
            file=sys.stderr,
            flush=True,
        )

    def on_train_end(self, trainer, result) -> None:
        if self.bar is not None:
            self.bar.close()


def resave(
    ckpt, path, metrics: dict, half: bool, calibration: dict | None = None, int8: dict | None = None
) -> None:
    """Write a loaded checkpoint again, with new metrics (and calibration and int8 record),
    optionally in fp16."""
    from fer_core.models.checkpoint import save_checkpoint

    save_checkpoint(path, ckpt.model, ckpt.arch, ckpt.arch_kwargs, mean=ckpt.mean, std=ckpt.std,
                    classes=ckpt.classes, input_size=ckpt.input_size,
                    train_config=ckpt.train_config, history=ckpt.history, metrics=metrics,
                    extra=ckpt.extra, half=half,
                    calibration=ckpt.calibration if calibration is None else calibration,
                    int8=ckpt.int8 if int8 is None else int8)  # fmt: skip


def cmd_finalize(args) -> int:
    """Record the int8 activation ranges (on training faces), fit the calibration temperature,
    then evaluate with the default settings, and store all three inside a copy of the file, so
    the app can show a model's numbers without the dataset (no number is ever typed in). Where
    the default runs in int8, the fp32 network's evaluation is stored too (`<split>_fp32`)."""
    from fer_core.data.fer2013 import load_dataset
    from fer_core.evaluate import evaluate_checkpoint, fit_calibration
    from fer_core.models.checkpoint import load_checkpoint
    from fer_core.models.quantize import calibrate, unavailable
    from fer_core.predict import DEFAULT_TTA

    data = load_dataset(args.data)
    source = load_checkpoint(args.checkpoint)
    resave(source, args.out, source.metrics, half=args.half, int8={})
    written = load_checkpoint(args.out)  # calibrate and evaluate exactly the weights written
    int8: dict = {}
    train = data.split("train")
    reason = unavailable() or ("" if len(train) else "the dataset has no Training split")
    if args.int8 and not reason:
        try:
            int8 = calibrate(written.model, train.images, written.mean, written.std)
        except ValueError as exc:  # an architecture int8 does not cover
            reason = str(exc)
    if args.int8 and reason:
        print(f"no int8 record stored: {reason}", file=sys.stderr)
    resave(written, args.out, source.metrics, half=args.half, int8=int8)
    written = load_checkpoint(args.out)
    calibration = fit_calibration(written, data, args.split, tta=DEFAULT_TTA)
    resave(written, args.out, source.metrics, half=args.half, calibration=calibration)
    shipped = load_checkpoint(args.out)
    metrics = dict(source.metrics)
    precisions = ["auto", "fp32"] if shipped.precision() == "int8" else ["auto"]
    for precision in precisions:
        result, _ = evaluate_checkpoint(
            shipped, data, args.split, tta=DEFAULT_TTA, precision=precision
        )
        record = result.to_dict(max_mistakes=0)
        record.pop("misclassified")
        record["checkpoint"] = Path(args.out).name
        metrics[args.split if precision == "auto" else f"{args.split}_fp32"] = record
        if precision == "auto":
            print(json.dumps(record))
        else:
            print(f"the fp32 network: accuracy {record['accuracy']:.4f}", file=sys.stderr)
    resave(shipped, args.out, metrics, half=args.half)
    return 0


def cmd_interpolate(args) -> int:
    """Write the checkpoint between --start and --end; `finalize` then calibrates and evaluates
    it (the file carries neither)."""
    from fer_core.models.checkpoint import interpolate, load_checkpoint

    mixed = interpolate(load_checkpoint(args.start), load_checkpoint(args.end), args.alpha)
    resave(mixed, args.out, {}, half=args.half)
    print(f"wrote {args.out}: {args.alpha:g} of the way from {args.start} to {args.end}")
    return 0
