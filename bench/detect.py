"""Face-detection probe: recall, false faces and time per photo, for every candidate on the same cases.

The faces are the dev photos of ../shared/realphotos/taiwanese_dev (256x256 head-and-shoulders
shots, read at run time and never stored), scaled and turned to the sizes and tilts people have
in photos and pasted, several per canvas, into generated backgrounds (gradients, clouds,
textures, shapes, text) of the resolutions of phones and cameras. Where a face is in its photo
comes from the plain frontal cascade on the 256x256 photo itself (photos where it finds no single
face are left out). The face-free images are the same generated backgrounds without faces.

A face counts as found when a box's centre lies within 0.3 face sides of the face's centre and
its side is 0.6-1.7 times the face's (candidates frame faces differently). Boxes that match no
face are false faces; `false/img` on face-free images is the target's measure.

    python -m bench.detect [--candidates haar_today,haar_photo,...] [--quick] [--json]
    PYTHONPATH=/tmp/detpkgs python -m bench.detect   # + dlib HOG and MTCNN, where installed

Results (numbers only) go to bench/results/detect.json and, through bench/report.py, into
BENCHMARKS.md. dlib (`dlib-bin`) and MTCNN (`facenet-pytorch`, weights inside its wheel) are not
project dependencies: install them with `pip install --no-deps --target /tmp/detpkgs dlib-bin
facenet-pytorch` to measure them; a candidate that cannot be imported is reported as such.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bench import cpu_name
from fer_core.vision.faces import (
    MIN_FACE_FRAC,
    MIN_FACE_PX,
    Box,
    FaceDetector,
    load_image,
    to_gray,
    webcam_detector,
)

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT.parent / "shared" / "realphotos" / "taiwanese_dev"
RESULTS = ROOT / "bench" / "results" / "detect.json"


@dataclass(frozen=True)
class Case:
    name: str
    canvas: tuple[int, int]  # (w, h); (0, 0): the photos themselves
    face_px: int  # face side (the reference box), +-10%
    tilt: float  # degrees, either way
    per_canvas: int
    canvases: int


CASES = [
    Case("upright, 256x256 photo", (0, 0), 0, 0, 1, 150),
    Case("tilt 10°, 1280x960", (1280, 960), 150, 10, 4, 25),
    Case("tilt 20°, 1280x960", (1280, 960), 150, 20, 4, 25),
    Case("tilt 30°, 1280x960", (1280, 960), 150, 30, 4, 25),
    Case("4000x3000, face ~300 px", (4000, 3000), 300, 0, 6, 12),
    Case("4000x3000, face ~200 px", (4000, 3000), 200, 0, 6, 12),
    Case("4000x3000, face ~150 px", (4000, 3000), 150, 0, 6, 12),
    Case("1920x1080, face ~120 px", (1920, 1080), 120, 0, 6, 20),
    Case("1280x960, face ~80 px", (1280, 960), 80, 0, 6, 20),
    Case("1280x960, face ~64 px", (1280, 960), 64, 0, 6, 20),
    Case("1280x960, face ~48 px", (1280, 960), 48, 0, 6, 20),
]
FACE_FREE = [((640, 480), 40), ((1280, 960), 20), ((1920, 1080), 12), ((4000, 3000), 8)]


# ----------------------------------------------------------------------------- scenes


def background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """(h, w, 3) uint8: one of gradient, clouds, texture, shapes, text, or shapes + text."""
    kind = rng.integers(6)
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, w if rng.random() < 0.5 else h, dtype=np.float32)
    ramp = t[None, :, None] if len(t) == w else t[:, None, None]
    img = np.broadcast_to(c0 + (c1 - c0) * ramp, (h, w, 3)).astype(np.float32)
    if kind in (1, 5):  # clouds: smooth noise at a few octaves
        for cells in (4, 12, 40):
            noise = rng.normal(0, 40 / math.sqrt(cells / 4), (cells, cells * w // h + 1, 3))
            img += cv2.resize(noise.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    if kind == 2:  # texture: stripes or checks plus fine grain
        period = rng.uniform(6, 60)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        a = rng.uniform(0, math.pi)
        wave = np.sin((xx * math.cos(a) + yy * math.sin(a)) * 2 * math.pi / period)
        if rng.random() < 0.5:
            wave = wave * np.sin((xx * math.sin(a) - yy * math.cos(a)) * 2 * math.pi / period)
        img += 50 * wave[..., None] + rng.normal(0, 12, (h, w, 1)).astype(np.float32)
    img = np.ascontiguousarray(np.clip(img, 0, 255), dtype=np.uint8)
    if kind in (3, 5):  # shapes
        for _ in range(rng.integers(10, 40)):
            color = tuple(int(v) for v in rng.integers(0, 256, 3))
            x, y = int(rng.integers(w)), int(rng.integers(h))
            r = int(rng.integers(max(4, min(w, h) // 60), max(8, min(w, h) // 6)))
            shape = rng.integers(3)
            if shape == 0:
                cv2.circle(img, (x, y), r, color, -1 if rng.random() < 0.6 else 3)
            elif shape == 1:
                cv2.rectangle(img, (x, y), (x + r, y + int(r * rng.uniform(0.3, 2))), color, -1)
            else:
                cv2.line(img, (x, y), (int(rng.integers(w)), int(rng.integers(h))), color, 3)
    if kind in (4, 5):  # text
        words = [
            "the",
            "quick",
            "brown",
            "fox",
            "jumps",
            "over",
            "a",
            "lazy",
            "dog",
            "0123456789",
            "FER",
            "Studio",
            "menu",
            "cafe",
        ]
        scale = min(w, h) / 600
        for _ in range(rng.integers(8, 30)):
            text = " ".join(rng.choice(words, rng.integers(1, 5)))
            org = (int(rng.integers(-50, w)), int(rng.integers(20, h)))
            color = tuple(int(v) for v in rng.integers(0, 256, 3))
            size = float(scale * rng.uniform(0.6, 3))
            font = int(rng.choice([0, 1, 2, 3, 4, 6, 7]))
            cv2.putText(img, text, org, font, size, color, max(1, round(size * 2)), cv2.LINE_AA)
    return img


def paste_face(canvas: np.ndarray, photo: np.ndarray, ref: Box, side: float, angle: float,
               centre: tuple[float, float]) -> Box:  # fmt: skip
    """Paste the photo scaled so its face (ref) is `side` px and turned `angle` degrees
    counter-clockwise about the face, with the face's centre at `centre`; returns its box."""
    s = side / ref.w
    ph, pw = photo.shape[:2]
    fx, fy = ref.centre
    m = cv2.getRotationMatrix2D((fx * s, fy * s), angle, 1.0)
    m[:, :2] *= s  # scale, then turn about the scaled face centre
    m[0, 2] += centre[0] - fx * s
    m[1, 2] += centre[1] - fy * s
    h, w = canvas.shape[:2]
    flags = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    warped = cv2.warpAffine(photo, m, (w, h), flags=flags)
    mask = cv2.warpAffine(np.full((ph, pw), 255, np.uint8), m, (w, h), flags=cv2.INTER_NEAREST)
    canvas[mask > 0] = warped[mask > 0]
    return Box(round(centre[0] - side / 2), round(centre[1] - side / 2), round(side),
               round(side), angle)  # fmt: skip


def face_canvases(case: Case, photos: list[tuple[np.ndarray, Box]], rng: np.random.Generator):
    """Yield (rgb canvas, truth boxes) for a case."""
    order = rng.permutation(len(photos))
    k = 0
    for _ in range(case.canvases):
        if case.canvas == (0, 0):
            photo, ref = photos[order[k % len(order)]]
            k += 1
            yield photo, [ref]
            continue
        w, h = case.canvas
        canvas = background(rng, w, h)
        cols = math.ceil(math.sqrt(case.per_canvas * w / h))
        rows = math.ceil(case.per_canvas / cols)
        cells = rng.permutation(rows * cols)[: case.per_canvas]
        truth = []
        for cell in cells:
            photo, ref = photos[order[k % len(order)]]
            k += 1
            r, c = divmod(int(cell), cols)
            side = case.face_px * rng.uniform(0.9, 1.1)
            angle = case.tilt * rng.choice([-1, 1])
            cx = (c + 0.5 + rng.uniform(-0.15, 0.15)) * w / cols
            cy = (r + 0.5 + rng.uniform(-0.15, 0.15)) * h / rows
            truth.append(paste_face(canvas, photo, ref, side, angle, (cx, cy)))
        yield canvas, truth


def match(boxes: list[tuple], truth: list[Box]) -> tuple[int, int]:
    """(faces found, false boxes): greedy one-to-one by centre distance."""
    free = list(range(len(boxes)))
    found = 0
    for t in truth:
        tx, ty = t.centre
        best, best_d = None, 0.3 * t.w
        for i in free:
            x, y, w, h = boxes[i][:4]
            d = math.hypot(x + w / 2 - tx, y + h / 2 - ty)
            if d <= best_d and 0.6 <= math.sqrt(w * h) / t.w <= 1.7:
                best, best_d = i, d
        if best is not None:
            free.remove(best)
            found += 1
    return found, len(free)


# ----------------------------------------------------------------------------- candidates


def _ours(detector: FaceDetector) -> Callable[[np.ndarray], list[tuple]]:
    return lambda rgb: [b.as_list() for b in detector.detect(to_gray(rgb))]


def _min_face(shape) -> float:
    """The automatic smallest face of the photo detector, given to every candidate alike."""
    return max(MIN_FACE_PX, MIN_FACE_FRAC * min(shape[:2]))


def _dlib_hog() -> Callable[[np.ndarray], list[tuple]]:
    import dlib

    detector = dlib.get_frontal_face_detector()

    def detect(rgb: np.ndarray) -> list[tuple]:
        gray = to_gray(rgb)
        s = min(1.0, 80 / (0.8 * _min_face(gray.shape)))  # its 80x80 window
        small = gray if s == 1 else cv2.resize(gray, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        return [
            (r.left() / s, r.top() / s, r.width() / s, r.height() / s) for r in detector(small, 0)
        ]

    return detect


def _mtcnn() -> Callable[[np.ndarray], list[tuple]]:
    import torch
    from facenet_pytorch import MTCNN

    torch.set_num_threads(2)
    net = MTCNN(keep_all=True, device="cpu", min_face_size=40, post_process=False)

    def detect(rgb: np.ndarray) -> list[tuple]:
        s = min(1.0, 40 / (0.8 * _min_face(rgb.shape)))
        small = rgb if s == 1 else cv2.resize(rgb, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        boxes, probs = net.detect(small)
        if boxes is None:
            return []
        return [
            (x0 / s, y0 / s, (x1 - x0) / s, (y1 - y0) / s)
            for (x0, y0, x1, y1), p in zip(boxes, probs)
            if p >= 0.9
        ]

    return detect


CANDIDATES: dict[str, tuple[str, Callable[[], Callable]]] = {
    "haar_today": (
        "before: Haar (frontalface_default) on one copy 400 px long, upright only",
        lambda: _ours(FaceDetector(max_side=400, min_neighbors=5, confirm=0, equalize=True)),
    ),
    "haar_photo": (
        "FaceDetector(), the photo default: frontalface_default on a copy where the smallest "
        "face searched (5% of the shorter side) is 48 px and its halvings, and on copies turned "
        "±25° (for faces from 1.5 times that size); boxes merged, each confirmed by three cascades "
        "(weak ones by a fourth) on its upright patch",
        lambda: _ours(FaceDetector()),
    ),
    "haar_photo_tilt_all": (
        "FaceDetector(tilt_min_face=1): the same with the turned copies searched down to the "
        "smallest face too (the photo default before)",
        lambda: _ours(FaceDetector(tilt_min_face=1.0)),
    ),
    "haar_photo_upright": (
        "FaceDetector(max_tilt=0): the same, upright only (no turned copies)",
        lambda: _ours(FaceDetector(max_tilt=0)),
    ),
    "haar_photo_alt2": (
        "the same with frontalface_alt2 as the searching cascade",
        lambda: _ours(FaceDetector(cascade="haarcascade_frontalface_alt2.xml")),
    ),
    "haar_photo_unconfirmed": (
        "the same without the confirmation (minNeighbors 5 instead of 3)",
        lambda: _ours(FaceDetector(confirm=0, min_neighbors=5)),
    ),
    "haar_photo_equalized": (
        "the same on a histogram-equalised copy (as the detector before)",
        lambda: _ours(FaceDetector(equalize=True)),
    ),
    "haar_webcam": (
        "webcam_detector(): one copy 320 px long, coarse steps, upright only",
        lambda: _ours(webcam_detector()),
    ),
    "dlib_hog": (
        "dlib 20's HOG frontal detector (`dlib-bin`), on a copy where the smallest face "
        "searched is 100 px (its window is 80)",
        _dlib_hog,
    ),
    "mtcnn": (
        "MTCNN (`facenet-pytorch` 2.6, weights inside its wheel) on a copy where the smallest "
        "face searched is 50 px, faces with p ≥ 0.9",
        _mtcnn,
    ),
}


# ----------------------------------------------------------------------------- the run


def reference_faces(root: Path, limit: int | None) -> tuple[list[tuple[np.ndarray, Box]], int]:
    """(rgb photo, its face box) for each photo where the plain cascade (the previous settings
    at the photo's own resolution) finds one face."""
    detector = FaceDetector(max_tilt=0, min_neighbors=5, confirm=0, equalize=True)
    paths = sorted(root.glob("*/*.jpg"))[:limit]
    kept = []
    for path in paths:
        rgb = load_image(path)
        boxes = detector.detect(to_gray(rgb))
        if len(boxes) == 1 and boxes[0].w >= 60:
            kept.append((rgb, boxes[0]))
    return kept, len(paths)


def run(
    names: list[str], quick: bool, photos_root: Path, seed: int, only: list[str] | None = None
) -> dict:
    """Every candidate on every case (or those whose name contains one of `only`)."""
    photos, n_photos = reference_faces(photos_root, 120 if quick else None)
    detectors, missing = {}, {}
    for name in names:
        try:
            detectors[name] = CANDIDATES[name][1]()
        except ImportError as exc:
            missing[name] = f"not installed ({exc.name})"
    for fn in detectors.values():  # warm-up (first-call allocations, lazy loads)
        fn(photos[0][0])
    tally = {n: {} for n in detectors}
    cases = []
    for ci, case in enumerate(CASES):
        if only and not any(o in case.name for o in only):
            continue
        if quick:
            case = Case(case.name, case.canvas, case.face_px, case.tilt, case.per_canvas,
                        max(3, case.canvases // 5))  # fmt: skip
        rng = np.random.default_rng(seed + ci)
        n_faces = n_images = 0
        for canvas, truth in face_canvases(case, photos, rng):
            n_faces += len(truth)
            n_images += 1
            for name, fn in detectors.items():
                start, cpu = time.perf_counter(), time.process_time()
                boxes = fn(canvas)
                seconds = time.perf_counter() - start
                cpu = time.process_time() - cpu
                found, false = match(boxes, truth)
                t = tally[name].setdefault(case.name, [0, 0, 0.0, 0.0])
                t[0], t[1], t[2], t[3] = t[0] + found, t[1] + false, t[2] + seconds, t[3] + cpu
        cases.append({"name": case.name, "canvas": list(case.canvas), "face_px": case.face_px,
                      "tilt": case.tilt, "images": n_images, "faces": n_faces})  # fmt: skip
        print(f"{case.name}: {n_images} images, {n_faces} faces", file=sys.stderr)
    free_images = 0
    for fi, ((w, h), count) in enumerate(FACE_FREE if not only or "face-free" in only else []):
        rng = np.random.default_rng(seed + 100 + fi)
        for _ in range(max(2, count // 5) if quick else count):
            canvas = background(rng, w, h)
            free_images += 1
            for name, fn in detectors.items():
                start, cpu = time.perf_counter(), time.process_time()
                boxes = fn(canvas)
                seconds = time.perf_counter() - start
                cpu = time.process_time() - cpu
                t = tally[name].setdefault("face-free", [0, 0, 0.0, 0.0])
                t[1], t[2], t[3] = t[1] + len(boxes), t[2] + seconds, t[3] + cpu
    results = []
    for name in names:
        entry = {"name": name, "description": CANDIDATES[name][0]}
        if name in missing:
            results.append(entry | {"error": missing[name]})
            continue
        per_case = {}
        for case in cases:
            found, false, seconds, cpu = tally[name][case["name"]]
            per_case[case["name"]] = {
                "recall": round(found / case["faces"], 4),
                "found": found,
                "false_per_image": round(false / case["images"], 3),
                "ms_per_image": round(1000 * seconds / case["images"], 1),
                "cpu_ms_per_image": round(1000 * cpu / case["images"], 1),
            }
        entry["cases"] = per_case
        entry["face_free"] = None
        if free_images:
            _, false, seconds, cpu = tally[name]["face-free"]
            entry["face_free"] = {
                "images": free_images,
                "false": false,
                "false_per_image": round(false / free_images, 3),
                "ms_per_image": round(1000 * seconds / free_images, 1),
                "cpu_ms_per_image": round(1000 * cpu / free_images, 1),
            }
        results.append(entry)
    return {
        "benchmark": "detect",
        "photos": f"{photos_root.name}: {len(photos)} of {n_photos} dev photos (one face found)",
        "cases": cases,
        "face_free_images": {
            f"{w}x{h}": (max(2, c // 5) if quick else c) for (w, h), c in FACE_FREE
        },
        "candidates": results,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--threads", type=int, default=2, help="OpenCV / torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", help="comma-separated parts of case names (and 'face-free')")
    parser.add_argument("--quick", action="store_true", help="a fifth of the canvases; not saved")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--json", action="store_true", help="only the final JSON line")
    args = parser.parse_args()
    if not args.photos.is_dir():
        print(f"skipped: the dev photos are not at {args.photos}", file=sys.stderr)
        return 0
    cv2.setNumThreads(args.threads)
    names = [n.strip() for n in args.candidates.split(",") if n.strip()]
    unknown = sorted(set(names) - set(CANDIDATES))
    if unknown:
        parser.error(f"unknown candidates: {', '.join(unknown)} (known: {', '.join(CANDIDATES)})")
    start, load = time.perf_counter(), os.getloadavg()[0]
    only = [c.strip() for c in args.cases.split(",")] if args.cases else None
    record = run(names, args.quick, args.photos, args.seed, only)
    record["seconds"] = round(time.perf_counter() - start, 1)
    extra = os.environ.get("PYTHONPATH")  # where dlib and MTCNN were installed, if anywhere
    record["command"] = (f"PYTHONPATH={extra} " if extra else "") + " ".join(
        ["python -m bench.detect", *sys.argv[1:]]
    )
    record["machine"] = {"cpu": cpu_name(),
                         "threads": args.threads, "opencv": cv2.__version__,
                         "load_average": f"{load:.1f} before, {os.getloadavg()[0]:.1f} after"}  # fmt: skip
    if not args.quick and not only:
        args.out.write_text(json.dumps(record, indent=1) + "\n")
    if not args.json:
        for c in record["candidates"]:
            print(f"\n{c['name']}: {c['description']}")
            if "error" in c:
                print(f"  {c['error']}")
                continue
            for case, r in c["cases"].items():
                print(f"  {case:<26} recall {r['recall']:6.1%}  false/img "
                      f"{r['false_per_image']:5.2f}  {r['ms_per_image']:7.1f} ms "
                      f"(cpu {r['cpu_ms_per_image']:.0f})")  # fmt: skip
            f = c["face_free"]
            if f is None:
                continue
            print(f"  {'face-free':<26} false/img {f['false_per_image']:5.3f} "
                  f"({f['false']} in {f['images']})  {f['ms_per_image']:7.1f} ms")  # fmt: skip
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
