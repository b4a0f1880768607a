"""Peer benchmark: the PyPI `fer` package (mini-Xception + OpenCV Haar detector) on a photo folder.

Standalone: it imports nothing from this repository, only the standard library, numpy, cv2
and fer, and runs in its own virtual environment (fer pulls TensorFlow; it is not one of the
project's requirements). Build that environment once, outside the repo:

    python3 -m venv /work/peer-venv
    /work/peer-venv/bin/pip install --no-deps fer==22.5.1
    /work/peer-venv/bin/pip install tensorflow-cpu 'opencv-contrib-python-headless<5' \
        pandas tqdm Pillow requests 'moviepy<2'

(--no-deps skips fer's facenet-pytorch/torch, ffmpeg and matplotlib, which the default
pipeline never uses; moviepy<2 because fer 22.5.1 imports moviepy.editor on import; OpenCV 5
wheels no longer ship the Haar cascade files that fer's default detector loads. The emotion
weights ship inside the fer wheel: nothing is downloaded at run time.)

    /work/peer-venv/bin/python bench/fer_peer.py --root DIR [--no-detect] [--limit N]

DIR holds <class>/<image>. For each image, sorted by relative path, it runs fer's default
photo pipeline, FER() (Haar cascade, mtcnn=False) .detect_emotions(BGR image), keeps the
largest face and prints one JSON line to stdout:
    {"path": "<class>/<file>", "label": top emotion or null, "probs": {...} or null, "ms": ...}
"ms" times detect_emotions alone (detection + classification, not the file read). With
--no-detect the whole image is the face: face_rectangles=[(0, 0, w, h)]. Two settings that
favour fer, used for the figures in ../shared/realphotos/README.md: --rgb feeds the image in RGB
order (as PIL decodes it; fer then converts with red and blue swapped), --no-offsets classifies
exactly the given box (fer's default pads it by 10 px on each side). A summary
(accuracy against the folder names, faces found, median ms) goes to stderr.
"""

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
for _var in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
    os.environ.setdefault(_var, "1")  # the machine is shared: one thread unless told otherwise
warnings.filterwarnings("ignore")  # Keras 3's input-structure warning on every call

import cv2  # noqa: E402

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
# fer's own label names (FER._get_labels) -> ours; they happen to be the same seven words.
CLASSES = {
    name: name for name in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
}


def images(root: Path) -> list:
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.glob("*/*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="folder of <class>/<image>")
    parser.add_argument("--no-detect", action="store_true", help="the whole image is the face")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--rgb", action="store_true", help="pass the image in RGB order")
    parser.add_argument("--no-offsets", action="store_true", help="FER(offsets=(0, 0))")
    args = parser.parse_args()

    out, sys.stdout = sys.stdout, sys.stderr  # stdout carries the JSON lines and nothing else
    cv2.setNumThreads(1)
    from fer import FER  # imports TensorFlow: after the environment above is set

    # The defaults: Haar cascade, mtcnn=False, a 10 px margin around each face.
    detector = FER(offsets=(0, 0)) if args.no_offsets else FER()
    paths = images(args.root)[: args.limit]
    right = found = 0
    times = []
    for rel in paths:
        image = cv2.imread(str(args.root / rel), cv2.IMREAD_COLOR)  # BGR, as fer expects
        if image is None:
            print(f"cannot read {rel}", file=sys.stderr)
            faces, ms = [], 0.0
        else:
            if args.rgb:
                image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            h, w = image.shape[:2]
            rects = [(0, 0, w, h)] if args.no_detect else None
            start = time.perf_counter()
            faces = detector.detect_emotions(image, face_rectangles=rects)
            ms = (time.perf_counter() - start) * 1000
            times.append(ms)
        label = probs = None
        if len(faces):
            face = max(faces, key=lambda f: int(f["box"][2]) * int(f["box"][3]))
            probs = {CLASSES[k]: float(v) for k, v in face["emotions"].items()}
            label = max(probs, key=probs.get)
            found += 1
        right += label == rel.split("/")[0]
        print(
            json.dumps({"path": rel, "label": label, "probs": probs, "ms": round(ms, 2)}),
            file=out,
            flush=True,
        )

    n = len(paths)
    print(
        f"fer peer on {args.root}: {right}/{n} = {100 * right / max(n, 1):.1f}% right, "
        f"faces found {found}/{n}, median {statistics.median(times) if times else 0:.1f} ms",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
