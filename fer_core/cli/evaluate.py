"""`evaluate`: accuracy, macro-F1, per-class report and confusion matrix of a checkpoint on a
FER2013 split or a labelled photo set; as text, JSON or markdown tables."""

from __future__ import annotations

import sys
from pathlib import Path

from fer_core.cli.dataset import add_data_argument, report_skipped
from fer_core.cli.predict import add_precision_argument
from fer_core.data.augment import TTA_MODES
from fer_core.data.fer2013 import SPLIT_CHOICES
from fer_core.errors import FerError


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="accuracy, macro-F1, per-class report, confusion matrix")
    p.add_argument("--checkpoint", help="checkpoint file (default: the shipped model)")
    add_data_argument(p)
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
    add_precision_argument(p)
    p.add_argument(
        "--no-detect",
        action="store_true",
        help="photo sets: treat each photo as one face crop (no face detection)",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--max-mistakes", type=int, default=50, help="mistakes listed in --json")
    p.add_argument("--markdown", action="store_true", help="markdown tables (for a model card)")

    p.set_defaults(run=cmd_evaluate)


def cmd_evaluate(args) -> int:
    from fer_core.data.fer2013 import load_dataset
    from fer_core.data.photos import is_photo_set
    from fer_core.evaluate import evaluate_checkpoint
    from fer_core.models.checkpoint import load_checkpoint
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
        ckpt, data, args.split, tta=args.tta or DEFAULT_TTA, device=args.device,
        precision=args.precision,
    )  # fmt: skip
    return _print_result(args, result, f"{ckpt.name} on {args.split}")


def _evaluate_photos(args) -> int:
    from fer_core.data.photos import read_photo_set
    from fer_core.evaluate import evaluate_photos
    from fer_core.predict import Predictor

    photos = read_photo_set(args.data)
    report_skipped(photos)
    predictor = Predictor.from_checkpoint(args.checkpoint, tta=args.tta, precision=args.precision)
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
    print(f"{title} ({result.n} images, TTA {result.tta}, {result.precision})")
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
        f"{result.split} ({result.n} images, test-time augmentation: {result.tta}, "
        f"{result.precision}).",
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
