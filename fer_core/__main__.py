"""Command line: `python -m fer_core {info,train,evaluate,predict,video,export,download}`.

Bad input gives one clear line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from fer_core.errors import FerError
from fer_core.train import Callback


def _add_data(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument(
        "--data",
        required=required,
        help="fer2013.csv(.gz), the Kaggle archive .zip or its extracted folder; for info and "
        "evaluate also a folder or .zip of labelled photos (<emotion>/<image>)",
    )


def build_parser() -> argparse.ArgumentParser:
    from dataclasses import fields

    from fer_core.augment import TTA_MODES
    from fer_core.data import SPLIT_CHOICES
    from fer_core.faces import DetectorConfig
    from fer_core.models import ARCHITECTURES
    from fer_core.recipes import RECIPES
    from fer_core.track import TrackerConfig
    from fer_core.train import OPTIMIZERS, SCHEDULERS
    from fer_core.video import VideoLimits

    parser = argparse.ArgumentParser(prog="python -m fer_core", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="dataset counts, imbalance, weights, duplicates, blank images")
    _add_data(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("train", help="train a model and write a checkpoint")
    _add_data(p)
    p.add_argument(
        "--recipe",
        default="cpu_default",
        choices=sorted(RECIPES),
        help="named recipe (architecture + settings); flags below override it",
    )
    p.add_argument("--arch", choices=sorted(ARCHITECTURES), help="architecture (overrides recipe)")
    p.add_argument("--width", type=int, help="channel width for architectures that take one")
    p.add_argument(
        "--branches",
        type=int,
        help="fer_vgg only: split after the shared stages into this many branches, averaged",
    )
    p.add_argument(
        "--shared-stages",
        type=int,
        choices=range(4),
        metavar="{0..3}",
        help="fer_vgg with branches: how many of its 4 stages the branches share (default 2)",
    )
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--scheduler", choices=SCHEDULERS)
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--mixup", type=float, dest="mixup_alpha")
    p.add_argument("--cutmix", type=float, dest="cutmix_alpha")
    p.add_argument("--ema", type=float, dest="ema_decay")
    p.add_argument("--sam", type=float, dest="sam_rho", help="SAM radius (0 = off)")
    p.add_argument(
        "--distill",
        type=float,
        help="weight of distillation from the teacher: the peers' average if --peers, else the "
        "EMA weights (0 = off)",
    )
    p.add_argument("--distill-temperature", type=float)
    p.add_argument(
        "--peers",
        type=int,
        help="teacher networks trained alongside the model (one grouped network); the model "
        "distils from their average and is the one saved",
    )
    p.add_argument(
        "--photo-augment",
        action="store_true",
        help="add camera-photo degradations (gamma, blur, down-up sampling, JPEG) to the "
        "recipe's augmentation",
    )
    p.add_argument(
        "--ferplus",
        metavar="CSV",
        help="FER+ vote file (fer2013new.csv): train on soft labels that blend each image's label "
        "with the FER+ annotators' votes",
    )
    p.add_argument(
        "--ferplus-weight",
        type=float,
        default=0.5,
        help="share of the FER+ votes in each soft label (default 0.5; 1 = votes only)",
    )
    p.add_argument(
        "--init",
        metavar="CHECKPOINT",
        help="fine-tune: start from this checkpoint's weights (its architecture replaces the "
        "recipe's)",
    )
    p.add_argument("--early-stopping", type=int)
    p.add_argument("--class-weighting", choices=("none", "inverse", "effective"))
    p.add_argument(
        "--val",
        default="public_test",
        help="validation: public_test (default) or a fraction of train, e.g. 0.1",
    )
    p.add_argument("--limit", type=int, help="train on a stratified subset of N images")
    p.add_argument("--out", default="runs", help="folder for run folders (default: runs)")
    p.add_argument("--run-dir", help="exact run folder (resumes if it holds a run)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA)")
    p.add_argument("--half", action="store_true", help="store the final checkpoint in fp16")
    p.add_argument("--quiet", action="store_true", help="no progress bar (epoch lines only)")

    p = sub.add_parser("evaluate", help="accuracy, macro-F1, per-class report, confusion matrix")
    p.add_argument("--checkpoint", help="checkpoint file (default: the shipped model)")
    _add_data(p)
    p.add_argument("--split", default="public_test", choices=SPLIT_CHOICES)
    p.add_argument(
        "--tta",
        dest="tta",
        action="store_const",
        const="crops",
        help="ten-view test-time augmentation (shifts and flips)",
    )
    p.add_argument(
        "--no-tta", dest="tta", action="store_const", const="none", help="no test-time augmentation"
    )
    p.add_argument("--tta-mode", dest="tta", choices=TTA_MODES, help="explicit TTA mode")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--no-detect",
        action="store_true",
        help="photo sets: treat each photo as one face crop (no face detection)",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--max-mistakes", type=int, default=50, help="mistakes listed in --json")
    p.add_argument("--markdown", action="store_true", help="markdown tables (for a model card)")

    p = sub.add_parser("predict", help="detect faces in images and predict their emotions")
    p.add_argument("images", nargs="+", help="image files (JPEG, PNG, WebP, BMP, TIFF, ...)")
    p.add_argument("--checkpoint", help="checkpoint file (default: the shipped model)")
    p.add_argument("--no-detect", action="store_true", help="treat each image as one face crop")
    p.add_argument("--largest", action="store_true", help="keep only the largest face per image")
    for f in fields(DetectorConfig):
        if "help" in f.metadata:
            p.add_argument(
                "--" + f.name.replace("_", "-"),
                type=type(f.default),
                default=f.default,
                help=f"{f.metadata['help'].replace('%', '%%')} (default %(default)s)",
            )
    p.add_argument("--tta-mode", dest="tta", choices=TTA_MODES, help="test-time views")
    p.add_argument("--json", action="store_true", help="one JSON object per line")

    p = sub.add_parser("video", help="track every face through a video: CSV, summary, MP4")
    p.add_argument("video", help="a video file (MP4, MOV, WebM, AVI, MKV, ...)")
    p.add_argument("--out", help="output folder (default: <video name>_fer in this folder)")
    p.add_argument("--every", type=int, default=1, help="analyse every Nth frame (default: all)")
    p.add_argument(
        "--checkpoint",
        help="checkpoint file (default: the shipped model; checkpoints/fer_model_fast.pt is "
        "about 3x faster)",
    )
    p.add_argument(
        "--smoothing",
        type=float,
        default=TrackerConfig.smoothing_s,
        help="seconds over which a face's probabilities are averaged (0: none; default %(default)s)",
    )
    for f in fields(VideoLimits):
        p.add_argument(
            "--" + f.name.replace("_", "-"),
            type=type(f.default),
            default=f.default,
            help=f"{f.metadata['help']} (default %(default)s)",
        )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")

    p = sub.add_parser(
        "finalize",
        help="calibrate (temperature on --split) and evaluate a checkpoint; write a copy that "
        "carries both",
    )
    p.add_argument("--checkpoint", required=True, help="a run's best.pt")
    _add_data(p)
    p.add_argument("--split", default="public_test", choices=SPLIT_CHOICES)
    p.add_argument("--out", required=True, help="e.g. checkpoints/fer_model.pt")
    p.add_argument("--half", action="store_true", help="store weights in fp16")

    p = sub.add_parser("export", help="export a checkpoint to TorchScript or ONNX")
    p.add_argument("--checkpoint", help="checkpoint file (default: the shipped model)")
    p.add_argument("--format", default="torchscript", choices=("torchscript", "onnx"))
    p.add_argument("--out", required=True)

    p = sub.add_parser("download", help="download FER2013 from Kaggle (needs kagglehub + login)")
    p.add_argument("--dataset", default="msambare/fer2013")
    return parser


# ----------------------------------------------------------------------------- commands


def cmd_info(args) -> int:
    from fer_core.data import load_dataset
    from fer_core.photos import is_photo_set
    from fer_core.report import build_report

    if is_photo_set(args.data):
        return _photo_info(args)
    report = build_report(load_dataset(args.data))
    out = report.to_dict()
    out["splits"] = out.pop("counts")
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{report.source}: {report.n_images} images")
    for split, counts in report.counts.items():
        total = sum(counts.values())
        parts = ", ".join(f"{c} {n}" for c, n in counts.items())
        print(f"  {split:<14} {total:>6}  ({parts})")
    print(f"imbalance ratio (train, largest/smallest): {report.imbalance_ratio:.2f}")
    for scheme, weights in report.class_weights.items():
        print(f"class weights ({scheme}): " + ", ".join(f"{c} {w:.2f}" for c, w in weights.items()))
    print(f"exact duplicates within splits: {report.duplicates_within}")
    print(f"exact duplicates across splits: {report.duplicates_across}")
    print(f"duplicate groups with conflicting labels: {report.conflicting_duplicate_groups}")
    print(f"blank images: {report.blank_by_split}")
    return 0


def _photo_info(args) -> int:
    from fer_core.labels import CLASSES
    from fer_core.photos import read_photo_set

    photos = read_photo_set(args.data)
    counts = dict(zip(CLASSES, photos.class_counts().tolist()))
    _report_skipped(photos)  # on stderr, in every mode
    if args.json:
        out = {"source": photos.source, "kind": "photos", "n_images": len(photos)}
        print(json.dumps(out | {"counts": counts, "skipped_folders": photos.skipped}))
        return 0
    print(f"{photos.source}: {len(photos)} labelled photos")
    print("  " + ", ".join(f"{c} {n}" for c, n in counts.items()))
    return 0


def _report_skipped(photos) -> None:
    if photos.skipped:
        folders = ", ".join(f"{name} ({n})" for name, n in sorted(photos.skipped.items()))
        print(f"skipped folders that name no class: {folders}", file=sys.stderr)


class _ProgressBar(Callback):
    """A tqdm bar per epoch, fed by the trainer's typed callbacks."""

    def __init__(self, show_bar: bool = True) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self.show_bar = show_bar
        self.bar = None

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


def cmd_train(args) -> int:
    from dataclasses import replace

    from fer_core.augment import with_photo_degradations
    from fer_core.data import load_dataset
    from fer_core.recipes import get_recipe, with_arch, with_overrides
    from fer_core.runs import BEST_FILE, DataSelection, new_run_dir, train_run

    recipe = with_overrides(
        get_recipe(args.recipe),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        optimizer=args.optimizer,
        scheduler=args.scheduler,
        label_smoothing=args.label_smoothing,
        mixup_alpha=args.mixup_alpha,
        cutmix_alpha=args.cutmix_alpha,
        ema_decay=args.ema_decay,
        sam_rho=args.sam_rho,
        distill=args.distill,
        distill_temperature=args.distill_temperature,
        peers=args.peers,
        early_stopping=args.early_stopping,
        seed=args.seed,
        device=args.device,
        compile=args.compile or None,
    )
    if args.arch:
        recipe = with_arch(recipe, args.arch)
    if args.class_weighting:
        recipe = replace(recipe, class_weighting=args.class_weighting)
    if args.photo_augment:
        config = recipe.config
        recipe = replace(
            recipe, config=replace(config, augment=with_photo_degradations(config.augment))
        )
    options = (
        ("width", args.width),
        ("branches", args.branches),
        ("shared_stages", args.shared_stages),
    )
    arch_kwargs = {key: value for key, value in options if value is not None}
    init = None
    if args.init:
        from fer_core.checkpoint import load_checkpoint

        if args.arch or arch_kwargs:
            raise FerError("--init takes the architecture from its checkpoint; drop --arch and "
                           "--width / --branches / --shared-stages")  # fmt: skip
        init = load_checkpoint(args.init)
        config = replace(recipe.config, mean=init.mean, std=init.std)  # its input normalisation
        recipe = replace(recipe, arch=init.arch, arch_kwargs=dict(init.arch_kwargs), config=config)
    if args.ferplus and not Path(args.ferplus).is_file():
        raise FerError(f"no FER+ file at {args.ferplus}")
    if not 0.0 <= args.ferplus_weight <= 1.0:
        raise FerError("--ferplus-weight must be between 0 and 1")
    data = load_dataset(args.data)
    try:
        val: str | float = float(args.val)
    except ValueError:
        val = args.val
    run_dir = Path(args.run_dir) if args.run_dir else new_run_dir(args.out, recipe.arch)
    command = "python -m fer_core " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    progress = [_ProgressBar(show_bar=not args.quiet)]
    try:
        best, result = train_run(
            data,
            recipe,
            run_dir,
            DataSelection(
                val=val,
                limit=args.limit,
                seed=args.seed,
                ferplus=args.ferplus,
                ferplus_weight=args.ferplus_weight,
            ),
            callbacks=progress,
            arch_kwargs=arch_kwargs,
            command=command,
            init=init,
        )
    except ValueError as exc:
        raise FerError(str(exc)) from None
    if args.half and best.exists():
        _rewrite_half(best)
    print(
        f"best epoch {result.best_epoch}: {result.best_metric:.4f} "
        f"({recipe.config.monitor}), {result.seconds:.0f}s",
        file=sys.stderr,
    )
    print(run_dir / BEST_FILE)
    return 0


def _rewrite_half(path: Path) -> None:
    from fer_core.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    _resave(ckpt, path, ckpt.metrics, half=True)


def _resave(ckpt, path, metrics: dict, half: bool, calibration: dict | None = None) -> None:
    """Write a loaded checkpoint again, with new metrics (and calibration), optionally in fp16."""
    from fer_core.checkpoint import save_checkpoint

    save_checkpoint(path, ckpt.model, ckpt.arch, ckpt.arch_kwargs, mean=ckpt.mean, std=ckpt.std,
                    classes=ckpt.classes, input_size=ckpt.input_size,
                    train_config=ckpt.train_config, history=ckpt.history, metrics=metrics,
                    extra=ckpt.extra, half=half,
                    calibration=ckpt.calibration if calibration is None else calibration)  # fmt: skip


def cmd_evaluate(args) -> int:
    from fer_core.checkpoint import load_checkpoint
    from fer_core.data import load_dataset
    from fer_core.evaluate import evaluate_checkpoint
    from fer_core.photos import is_photo_set
    from fer_core.predict import DEFAULT_TTA

    if is_photo_set(args.data):
        return _evaluate_photos(args)
    if args.no_detect:
        raise FerError("--no-detect applies to photo sets (<emotion>/<image> folders or zips)")
    ckpt = load_checkpoint(args.checkpoint)
    data = load_dataset(args.data)
    if not data.split_mask(args.split).any():
        raise FerError(
            f"the dataset has no {args.split} split (it has: {', '.join(data.available_splits())})"
        )
    result, _ = evaluate_checkpoint(
        ckpt, data, args.split, tta=args.tta or DEFAULT_TTA, device=args.device
    )
    return _print_result(args, result, f"{ckpt.name} on {args.split}")


def _evaluate_photos(args) -> int:
    from fer_core.evaluate import evaluate_photos
    from fer_core.photos import read_photo_set
    from fer_core.predict import Predictor

    photos = read_photo_set(args.data)
    _report_skipped(photos)
    predictor = Predictor.from_checkpoint(args.checkpoint, tta=args.tta)
    bar = None
    if not args.json and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=len(photos), unit="photo", leave=False)
    result, _, _ = evaluate_photos(
        predictor, photos, detect=not args.no_detect, progress=bar and (lambda d, t: bar.update())
    )
    if bar is not None:
        bar.close()
    name = Path(photos.source).name
    code = _print_result(args, result, f"{predictor.ckpt.name} on {name}")
    if not args.json and not args.markdown:
        print(
            f"faces found in {result.faces_found} of {result.n} photos (the others count as wrong)"
        )
    return code


def _print_result(args, result, title: str) -> int:
    if args.json:
        print(result.to_json(max_mistakes=args.max_mistakes))
        return 0
    if args.markdown:
        print(markdown_report(result))
        return 0
    print(f"{title} ({result.n} images, TTA {result.tta})")
    print(f"accuracy {result.accuracy:.4f}   macro-F1 {result.macro_f1:.4f}")
    print(f"{'class':<10}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}")
    for c, m in result.per_class.items():
        print(
            f"{c:<10}{m['precision']:>10.3f}{m['recall']:>10.3f}{m['f1']:>10.3f}{m['support']:>10}"
        )
    print("confusion matrix (rows true, columns predicted):")
    print(" " * 10 + "".join(f"{c[:7]:>8}" for c in result.classes))
    for c, row in zip(result.classes, result.confusion_matrix):
        print(f"{c:<10}" + "".join(f"{v:>8}" for v in row))
    cal = result.calibration
    if cal:
        print(
            f"expected calibration error {cal['ece_before']:.4f} uncalibrated, "
            f"{cal['ece_after']:.4f} with temperature {cal['temperature']:.3f}"
        )
    return 0


def markdown_report(result) -> str:
    """Accuracy, per-class report and confusion matrix as markdown tables."""
    lines = [
        f"Accuracy **{result.accuracy:.2%}**, macro-F1 **{result.macro_f1:.4f}** on "
        f"{result.split} ({result.n} images, test-time augmentation: {result.tta}).",
        "",
        "| class | precision | recall | F1 | support |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for c, m in result.per_class.items():
        lines.append(
            f"| {c} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |"
        )
    lines += [
        "",
        "Confusion matrix (rows: true class, columns: predicted):",
        "",
        "| true \\ predicted | " + " | ".join(result.classes) + " |",
        "| --- |" + " ---: |" * len(result.classes),
    ]
    for c, row in zip(result.classes, result.confusion_matrix):
        lines.append(f"| **{c}** | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)


def cmd_predict(args) -> int:
    from fer_core.faces import FaceDetector
    from fer_core.predict import Predictor

    detector = FaceDetector(min_face=args.min_face, max_tilt=args.max_tilt)  # bad values fail first
    predictor = Predictor.from_checkpoint(args.checkpoint, tta=args.tta)
    failed = 0
    for image in args.images:
        try:
            faces = predictor.predict_path(
                image, detect=not args.no_detect, detector=detector, largest=args.largest
            )
            record = {"image": image, "faces": [f.to_dict() for f in faces]}
        except FerError as exc:
            failed += 1
            record = {"image": image, "error": str(exc)}
            # One line on stderr in every mode (--json too): an exit status 1 carries its reason.
            where = "" if record["error"].startswith(image) else f"{image}: "
            print(f"error: {where}{record['error']}", file=sys.stderr)
        if args.json:
            print(json.dumps(record), flush=True)
        elif "faces" not in record:
            continue
        elif not record["faces"]:
            print(f"{image}: no face found (try --no-detect for a face crop)")
        else:
            for i, face in enumerate(record["faces"]):
                top = sorted(face["probs"].items(), key=lambda kv: -kv[1])[:3]
                probs = ", ".join(f"{c} {p:.2f}" for c, p in top)
                label = (
                    f"uncertain, {top[0][0]} or {top[1][0]}" if face["uncertain"] else face["label"]
                )
                turned = f" turned {face['angle']:g}°" if face["angle"] else ""
                print(f"{image}: face {i + 1} at {face['box']}{turned}: {label} ({probs})")
    return 1 if failed == len(args.images) else 0


def cmd_video(args) -> int:
    from dataclasses import fields

    from tqdm import tqdm

    from fer_core.track import TrackerConfig
    from fer_core.video import VideoLimits, VideoOptions, analyse_video, probe, video_predictor

    if args.every < 1:
        raise FerError("--every must be 1 or more")
    limits = VideoLimits(**{f.name: getattr(args, f.name) for f in fields(VideoLimits)})
    tracker = TrackerConfig(smoothing_s=max(0.0, args.smoothing))
    options = VideoOptions(every=args.every, tracker=tracker, limits=limits)
    info = probe(args.video, limits)  # a bad file fails before the model loads
    predictor = video_predictor(args.checkpoint)
    out = Path(args.out or f"{Path(args.video).stem}_fer")
    # disable=None: a bar on a terminal only, none in pipes and logs
    with tqdm(
        total=info.expected_frames or None, unit="frame", file=sys.stderr, disable=None
    ) as bar:
        summary = analyse_video(
            args.video, out, predictor, options, on_progress=lambda p: bar.update(p.decoded - bar.n)
        )
    if args.json:
        print(json.dumps(summary))
        return 0
    print(video_report(summary, out))
    return 0


def video_report(summary: dict, out: Path) -> str:
    """The summary of `analyse_video` as a few lines for people."""
    v = summary["video"]
    lines = [
        f"{v['file']}: {v['width']}x{v['height']}, {v['fps']:g} fps, {v['duration_s']:.1f} s; "
        f"{v['frames_processed']} of {v['frames']} frames analysed in {summary['analysis_s']} s"
    ]
    for face in summary["faces"]:
        top = sorted(face["share"].items(), key=lambda kv: -kv[1])[:3]
        shares = ", ".join(f"{share:.0%} {c}" for c, share in top if share > 0)
        lines.append(
            f"face {face['face_id']}: {face['first_s']:.2f}-{face['last_s']:.2f} s, "
            f"{face['frames_seen']} frames, mostly {face['dominant']} ({shares})"
        )
    if not summary["faces"]:
        lines.append("no face found")
    names = ", ".join(str(out / n) for n in ("faces.csv", "summary.json", "annotated.mp4"))
    return "\n".join([*lines, f"wrote {names}"])


def cmd_finalize(args) -> int:
    """Fit the calibration temperature and store it, then evaluate with the default settings and
    store that evaluation inside a copy of the file, so the app can show a model's numbers
    without the dataset (no number is ever typed in)."""
    from fer_core.checkpoint import load_checkpoint
    from fer_core.data import load_dataset
    from fer_core.evaluate import evaluate_checkpoint, fit_calibration
    from fer_core.predict import DEFAULT_TTA

    data = load_dataset(args.data)
    source = load_checkpoint(args.checkpoint)
    _resave(source, args.out, source.metrics, half=args.half)
    written = load_checkpoint(args.out)  # calibrate and evaluate exactly the weights written
    calibration = fit_calibration(written, data, args.split, tta=DEFAULT_TTA)
    _resave(written, args.out, source.metrics, half=args.half, calibration=calibration)
    shipped = load_checkpoint(args.out)
    result, _ = evaluate_checkpoint(shipped, data, args.split, tta=DEFAULT_TTA)
    record = result.to_dict(max_mistakes=0)
    record.pop("misclassified")
    record["checkpoint"] = Path(args.out).name
    metrics = {**source.metrics, args.split: record}
    _resave(shipped, args.out, metrics, half=args.half, calibration=calibration)
    print(json.dumps(record))
    return 0


def cmd_export(args) -> int:
    from fer_core.checkpoint import export, load_checkpoint

    out = export(load_checkpoint(args.checkpoint), args.out, args.format)
    print(out)
    return 0


def cmd_download(args) -> int:
    from fer_core.data import download_kaggle

    print(download_kaggle(args.dataset))
    return 0


COMMANDS = {
    "info": cmd_info,
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "predict": cmd_predict,
    "video": cmd_video,
    "finalize": cmd_finalize,
    "export": cmd_export,
    "download": cmd_download,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except FerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
