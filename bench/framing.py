"""Where the photo detector's box falls on FER2013's own faces, so photo crops can match them.

Each FER2013 training face is scaled up to S px and placed in a larger canvas (its border
replicated outwards, or on flat grey), the photo detector runs on the canvas, and the box that
overlaps the face's frame most is expressed relative to that frame: its side (box side / S) and
its centre's offset from the frame's centre (in units of S). The medians over faces and scales
are the framing that `fer_core.vision.faces.crop_face` inverts: a detected box of side b centred at c
is cropped as the square of side b / scale centred at c - offset * side.

    python -m bench.framing --data ../shared/data/fer2013.csv.gz --json
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import cv2
import numpy as np

from fer_core.data.fer2013 import load_dataset
from fer_core.vision.faces import FaceDetector

SCALES = (96, 144, 192, 256)


def canvas_with_face(face: np.ndarray, side: int, background: str) -> tuple[np.ndarray, int]:
    """A (3*side)^2 canvas with the face scaled to side px in its middle; returns (canvas, x0)."""
    big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    if background == "replicate":
        return cv2.copyMakeBorder(big, side, side, side, side, cv2.BORDER_REPLICATE), side
    canvas = np.full((3 * side, 3 * side), 128, np.uint8)
    canvas[side : 2 * side, side : 2 * side] = big
    return canvas, side


def measure(faces: np.ndarray, background: str, detector: FaceDetector) -> dict:
    rows, missed = [], 0
    for side in SCALES:
        for face in faces:
            canvas, x0 = canvas_with_face(face, side, background)
            boxes = detector.detect(canvas)
            best, best_iou = None, 0.0
            for b in boxes:
                ix = max(0, min(b.x + b.w, x0 + side) - max(b.x, x0))
                iy = max(0, min(b.y + b.h, x0 + side) - max(b.y, x0))
                iou = ix * iy / (b.w * b.h + side * side - ix * iy)
                if iou > best_iou:
                    best, best_iou = b, iou
            if best is None or best_iou < 0.3:
                missed += 1
                continue
            centre = x0 + side / 2
            rows.append(
                (
                    best.w / side,
                    (best.x + best.w / 2 - centre) / side,
                    (best.y + best.h / 2 - centre) / side,
                    side,
                )
            )
    table = np.asarray(rows)
    per_scale = {
        int(s): {
            "n": int((table[:, 3] == s).sum()),
            "scale": round(float(np.median(table[table[:, 3] == s, 0])), 4),
            "dx": round(float(np.median(table[table[:, 3] == s, 1])), 4),
            "dy": round(float(np.median(table[table[:, 3] == s, 2])), 4),
        }
        for s in SCALES
        if (table[:, 3] == s).any()
    }
    return {
        "background": background,
        "found": len(rows),
        "missed": missed,
        "scale": round(float(np.median(table[:, 0])), 4),
        "scale_iqr": [round(float(q), 4) for q in np.percentile(table[:, 0], [25, 75])],
        "dx": round(float(np.median(table[:, 1])), 4),
        "dy": round(float(np.median(table[:, 2])), 4),
        "dy_iqr": [round(float(q), 4) for q in np.percentile(table[:, 2], [25, 75])],
        "per_scale": per_scale,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/fer2013.csv.gz")
    parser.add_argument("--faces", type=int, default=1000, help="training faces sampled")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    train = load_dataset(args.data).split("train")
    pick = np.random.default_rng(args.seed).choice(len(train), args.faces, replace=False)
    faces = train.images[np.sort(pick)]
    detector = FaceDetector()
    start = time.perf_counter()
    results = [measure(faces, bg, detector) for bg in ("replicate", "grey")]
    record = {
        "benchmark": "framing",
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "faces": args.faces,
        "scales_px": list(SCALES),
        "detector": "FaceDetector() (Haar, photo settings)",
        "results": results,
        "seconds": round(time.perf_counter() - start, 1),
    }
    if args.json:
        print(json.dumps(record))
        return
    for r in results:
        print(
            f"{r['background']:>9}: found {r['found']}, missed {r['missed']}; box side "
            f"{r['scale']:.3f} of the frame (IQR {r['scale_iqr']}), centre offset "
            f"dx {r['dx']:+.3f} dy {r['dy']:+.3f}"
        )
        for s, v in r["per_scale"].items():
            print(f"           {s:>4} px: n {v['n']}, side {v['scale']:.3f}, dy {v['dy']:+.3f}")


if __name__ == "__main__":
    main()
