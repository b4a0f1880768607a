"""Real photos, side by side: our default photo pipeline and the `fer` package on the dev sets.

Both run in this one call on the same photos: taiwanese_dev with face detection (the largest face
of each 256x256 photo), ckplus48_dev without (each 48x48 image is the face). The `fer` package runs
in its own virtual environment (it needs TensorFlow; see bench/fer_peer.py for how to build it),
twice: with its documented defaults, and with the two settings that favour it (RGB input on
taiwanese_dev, no padding around ckplus48_dev's crops), which give the figures quoted in
../shared/realphotos/README.md. The peer number a target is held against is the better of the two.

    python -m bench.realphotos --peer-python /work/peer-venv/bin/python --json

Reports per set: accuracy, accuracy on the subset where human observers agree with the posed
label (taiwanese_dev: `observer_agrees == yes`, plus every neutral photo, which raters could not
choose), per-sequence accuracy on ckplus48_dev (a sequence's 3 frames by majority), macro-F1,
faces found, and ms per photo (decode, detection and classification; 2 threads).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from bench import cpu_name
from fer_core.data.photos import read_photo_set
from fer_core.evaluate import compute_metrics
from fer_core.labels import CLASSES
from fer_core.models.checkpoint import DEFAULT_CHECKPOINT
from fer_core.predict import Predictor

ROOT = Path(__file__).resolve().parent.parent

SETS = (("taiwanese_dev", True), ("ckplus48_dev", False))
FAVOURABLE = {"taiwanese_dev": ["--rgb"], "ckplus48_dev": ["--no-offsets"]}


def set_metadata(folder: Path) -> dict[str, dict]:
    """labels.csv rows keyed by relpath."""
    with open(folder / "labels.csv", newline="") as handle:
        return {row["relpath"]: row for row in csv.DictReader(handle)}


def score(names: list[str], truth: list[str], pred: list[str | None], meta: dict) -> dict:
    """Accuracy, agreed-subset accuracy, per-sequence accuracy and macro-F1 for one set."""
    right = np.asarray([p == t for p, t in zip(pred, truth)])
    out = {"n": len(names), "accuracy": round(float(right.mean()), 4)}
    out["faces_found"] = sum(p is not None for p in pred)
    first = meta[names[0]]
    if "observer_agrees" in first:
        agreed = np.asarray(
            [meta[n]["observer_agrees"] == "yes" or meta[n]["label"] == "neutral" for n in names]
        )
        out["agreed_n"] = int(agreed.sum())
        out["agreed_accuracy"] = round(float(right[agreed].mean()), 4)
    if "sequence" in first:
        votes: dict[str, list[bool]] = defaultdict(list)
        for n, r in zip(names, right):
            votes[meta[n]["sequence"]].append(bool(r))
        by_sequence = [sum(v) * 2 > len(v) for v in votes.values()]
        out["sequences"] = len(by_sequence)
        out["sequence_accuracy"] = round(float(np.mean(by_sequence)), 4)
    y = np.asarray([CLASSES.index(t) for t in truth])
    found = np.asarray([p is not None for p in pred])
    onehot = np.zeros((len(pred), len(CLASSES)))
    for i, p in enumerate(pred):
        if p is not None:
            onehot[i, CLASSES.index(p)] = 1.0
    result = compute_metrics(y, onehot, CLASSES, found=found)
    out["macro_f1"] = round(result.macro_f1, 4)
    out["per_class_recall"] = {c: round(m["recall"], 4) for c, m in result.per_class.items()}
    out["confusion_matrix"] = result.confusion_matrix
    return out


def run_ours(folder: Path, detect: bool, checkpoint: str | None) -> dict:
    photos = read_photo_set(folder)
    predictor = Predictor.from_checkpoint(checkpoint)
    predictor.probabilities(np.zeros((1, 48, 48), np.uint8))  # warm-up, out of the timing
    pred, times = [], []
    for i in range(len(photos)):
        start = time.perf_counter()
        faces = predictor.predict_path(photos.read(i), detect=detect)
        times.append((time.perf_counter() - start) * 1000)
        pred.append(faces[0].label if faces else None)  # faces come largest first
    truth = [CLASSES[k] for k in photos.labels]
    out = score(list(photos.names), truth, pred, set_metadata(folder))
    return out | {"ms_per_photo": round(statistics.median(times), 1)}


def run_peer(python: str, folder: Path, detect: bool, extra: list[str]) -> dict:
    command = [python, str(ROOT / "bench" / "fer_peer.py"), "--root", str(folder), *extra]
    if not detect:
        command.append("--no-detect")
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    names = [r["path"] for r in rows]
    out = score(names, [n.split("/")[0] for n in names], [r["label"] for r in rows],
                set_metadata(folder))  # fmt: skip
    return out | {"ms_per_photo": round(statistics.median(r["ms"] for r in rows), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(ROOT.parent / "shared" / "realphotos"))
    parser.add_argument("--peer-python", help="python of a venv with the `fer` package")
    parser.add_argument("--checkpoint", help="default: the shipped model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="only the final JSON line")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(args.root)
    if not root.is_dir():
        print(f"error: no photo sets at {root}", file=sys.stderr)
        return 1
    record = {"benchmark": "realphotos", "sets": {}}
    for name, detect in SETS:
        entry = {"detect": detect, "ours": run_ours(root / name, detect, args.checkpoint)}
        if args.peer_python:
            entry["fer_default"] = run_peer(args.peer_python, root / name, detect, [])
            entry["fer_favourable"] = run_peer(args.peer_python, root / name, detect,
                                               FAVOURABLE[name])  # fmt: skip
            best = max(entry["fer_default"]["accuracy"], entry["fer_favourable"]["accuracy"])
            entry["margin_over_fer"] = round(entry["ours"]["accuracy"] - best, 4)
        record["sets"][name] = entry
        if not args.json:
            print(name, json.dumps({k: v["accuracy"] for k, v in entry.items() if "ours" in k
                                    or "fer" in k}))  # fmt: skip
    record["checkpoint"] = Path(args.checkpoint or DEFAULT_CHECKPOINT).name
    record["machine"] = {
        "cpu": cpu_name(),
        "threads": args.threads,
        "torch": torch.__version__,
    }
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
