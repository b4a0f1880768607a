"""`info` (what a dataset or photo set holds) and `download` (FER2013 from Kaggle)."""

from __future__ import annotations

import argparse
import json
import sys


def add_data_argument(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument(
        "--data",
        required=required,
        help="fer2013.csv(.gz), the Kaggle archive .zip or its extracted folder; for info and "
        "evaluate also a folder or .zip of labelled photos (<emotion>/<image>)",
    )


def report_skipped(photos) -> None:
    """Folders of a photo set that name no class, once, on stderr (in every output mode)."""
    if photos.skipped:
        folders = ", ".join(f"{name} ({n})" for name, n in sorted(photos.skipped.items()))
        print(f"skipped folders that name no class: {folders}", file=sys.stderr)


def register(sub) -> None:
    p = sub.add_parser("info", help="dataset counts, imbalance, weights, duplicates, blank images")
    add_data_argument(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=cmd_info)

    p = sub.add_parser("download", help="download FER2013 from Kaggle (needs kagglehub + login)")
    p.add_argument("--dataset", default="msambare/fer2013")
    p.set_defaults(run=cmd_download)


def cmd_info(args) -> int:
    from fer_core.data.fer2013 import load_dataset
    from fer_core.data.photos import is_photo_set
    from fer_core.data.report import build_report

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
    from fer_core.data.photos import read_photo_set
    from fer_core.labels import CLASSES

    photos = read_photo_set(args.data)
    counts = dict(zip(CLASSES, photos.class_counts().tolist()))
    report_skipped(photos)
    if args.json:
        out = {"source": photos.source, "kind": "photos", "n_images": len(photos)}
        print(json.dumps(out | {"counts": counts, "skipped_folders": photos.skipped}))
        return 0
    print(f"{photos.source}: {len(photos)} labelled photos")
    print("  " + ", ".join(f"{c} {n}" for c, n in counts.items()))
    return 0


def cmd_download(args) -> int:
    from fer_core.data.fer2013 import download_kaggle

    print(download_kaggle(args.dataset))
    return 0
