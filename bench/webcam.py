"""CPU inference benchmark: per-face photo latency and the webcam path end to end.

Measures, for each shipped model (or --checkpoint): per-face latency at batch 1 and batch 32, with
each test-time-augmentation mode, in fp32 and (where the checkpoint carries an int8 record) int8;
the photo path with default settings (decode-free: detection, crop, classification), and beside
it in the same run the same path with the fp32 network; and the webcam path on a 640x480 frame
with one and with three faces (detection, classification, smoothing, drawing) in frames per
second.

    python -m bench.webcam [--checkpoint PATH] [--threads 2] [--json]

Faces are FER2013 PublicTest images pasted into a generated scene when ../shared/data is present,
otherwise a synthetic face is drawn (timings do not depend on the face's content).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from bench import cpu_name
from fer_core.inference import predict_proba
from fer_core.models.checkpoint import DEFAULT_CHECKPOINT, FAST_CHECKPOINT, load_checkpoint
from fer_core.predict import FaceSmoother, Predictor
from fer_core.vision.draw import annotate
from fer_core.vision.faces import FaceDetector, webcam_detector

ROOT = Path(__file__).resolve().parent.parent


def _faces(n: int) -> np.ndarray:
    csv = ROOT.parent / "shared" / "data" / "fer2013.csv.gz"
    if csv.exists():
        from fer_core.data.fer2013 import load_dataset

        return load_dataset(csv).split("public_test").images[:n]
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (n, 48, 48), dtype=np.uint8)


def frame_with_faces(faces: np.ndarray, size: int = 150) -> np.ndarray:
    """A 640x480 RGB frame: smooth generated background with len(faces) faces scaled in."""
    yy, xx = np.mgrid[0:480, 0:640]
    gray = (80 + 60 * xx / 640 + 30 * np.sin(yy / 50.0)).astype(np.uint8)
    spots = [(40, 150), (245, 150), (450, 150)]
    for face, (x, y) in zip(faces, spots):
        gray[y : y + size, x : x + size] = cv2.resize(
            face, (size, size), interpolation=cv2.INTER_CUBIC
        )
    return np.repeat(gray[..., None], 3, axis=2)


def timed(fn, repeat: int, warmup: int = 10) -> float:
    """Median seconds of fn() over `repeat` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def bench_model(path: Path, faces: np.ndarray, repeat: int) -> dict:
    ckpt = load_checkpoint(path)
    predictor = Predictor(ckpt)
    out: dict = {"checkpoint": path.name, "arch": ckpt.arch, "params": ckpt.num_parameters}
    out["precision"] = predictor.precision  # what the default path runs in
    for precision in ("fp32", "int8") if out["precision"] == "int8" else ("fp32",):
        model = ckpt.inference_model(precision)
        suffix = "" if precision == "fp32" else "_int8"
        for tta in ("none", "flip", "crops"):
            one = timed(
                lambda tta=tta, m=model: predict_proba(m, faces[:1], ckpt.mean, ckpt.std, tta=tta),
                repeat,
            )
            many = timed(
                lambda tta=tta, m=model: predict_proba(m, faces[:32], ckpt.mean, ckpt.std, tta=tta),
                max(3, repeat // 5),
            )
            out[f"ms_per_face_b1_{tta}{suffix}"] = round(one * 1000, 2)
            out[f"ms_per_face_b32_{tta}{suffix}"] = round(many / 32 * 1000, 2)

    frame1, frame3 = frame_with_faces(faces[:1]), frame_with_faces(faces[:3])
    found1 = len(predictor.predict_array(frame1))
    found3 = len(predictor.predict_array(frame3))
    # Photo path, default settings (detection + crop + default TTA), per face.
    photo = timed(lambda: predictor.predict_array(frame1), repeat)
    out["photo_ms_per_face"] = round(photo / max(found1, 1) * 1000, 2)
    out["photo_default_tta"] = predictor.tta
    # the baseline in the same run: the same path with the fp32 network
    fp32 = Predictor(ckpt, precision="fp32")
    photo_fp32 = timed(lambda: fp32.predict_array(frame1), repeat)
    out["photo_ms_per_face_fp32"] = round(photo_fp32 / max(found1, 1) * 1000, 2)

    live = Predictor(ckpt, tta="none", detector=webcam_detector())

    def webcam(frame):
        smoother = FaceSmoother()

        def step():
            faces_found = smoother(live.predict_frames([frame])[0])
            annotate(frame, faces_found, fps=0.0)

        return step

    out["fps_1_face"] = round(1.0 / timed(webcam(frame1), repeat), 1)
    out["fps_3_faces"] = round(1.0 / timed(webcam(frame3), repeat), 1)
    out["webcam_faces_found_1"] = len(live.predict_frames([frame1])[0])
    out["webcam_faces_found_3"] = len(live.predict_frames([frame3])[0])
    out["faces_found_1"], out["faces_found_3"] = found1, found3
    detect = timed(lambda: predictor.faces_in(frame1), repeat)
    out["detect_ms_640x480"] = round(detect * 1000, 2)
    # the baseline in the same run: the photo detector that searched its turned copies down to
    # the smallest face (tilt_min_face=1, the default before)
    before = Predictor(ckpt, detector=FaceDetector(tilt_min_face=1.0))
    photo_before = timed(lambda: before.predict_array(frame1), repeat)
    out["photo_ms_per_face_tilt_all"] = round(photo_before / max(found1, 1) * 1000, 2)
    out["detect_ms_640x480_tilt_all"] = round(
        timed(lambda: before.faces_in(frame1), repeat) * 1000, 2
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", action="append", help="checkpoint(s); default: shipped")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--json", action="store_true", help="only the final JSON line")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    default = [p for p in (DEFAULT_CHECKPOINT, FAST_CHECKPOINT) if p.exists()]
    paths = [Path(p) for p in (args.checkpoint or default)]
    faces = _faces(32)
    results = [bench_model(p, faces, args.repeat) for p in paths]
    machine = {
        "cpu": cpu_name(),
        "threads": args.threads,
        "torch": torch.__version__,
        "opencv": cv2.__version__,
    }
    if not args.json:
        for r in results:
            print(f"\n{r['checkpoint']} ({r['arch']}, {r['params'] / 1e6:.1f}M params)")
            for key, value in r.items():
                if key not in ("checkpoint", "arch", "params"):
                    print(f"  {key:<24} {value}")
    photo, live = results[0], results[-1]  # the shipped model for photos, the fast one for video
    summary = {
        "fps_1_face": live["fps_1_face"],
        "fps_3_faces": live["fps_3_faces"],
        "photo_ms_per_face": photo["photo_ms_per_face"],
        "webcam_model": live["checkpoint"],
        "photo_model": photo["checkpoint"],
        "models": results,
        "machine": machine,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
