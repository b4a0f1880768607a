"""Video-file benchmark: processing speed, memory against length, tracking against ground truth.

    python -m bench.video [--threads 2] [--json]

- speed: 640x480, 30 fps clips of 10 s with one and with three FER2013 faces moving, analysed end
  to end by `fer_core.vision.video.analyse_video` with the video defaults (the webcam's detector settings,
  no test-time augmentation): decoding, detection, classification, tracking, the CSV and the
  annotated H.264 video. Processed frames per second, best of three runs, for the fast and the
  default model.
- memory: a 1-minute and a 10-minute clip (320x240, 10 fps, one face), each analysed in a fresh
  process; its peak resident memory (VmHWM).
- tracking: generated clips with known ground truth (tests/clips.py): two faces crossing (one
  hidden behind the other, or overlapping), crossing four times, a face leaving briefly and for
  long, three faces wandering; id switches, swaps, lost tracks, missed and false detections.

Clips are generated into a temporary folder; the faces are FER2013 PublicTest images read from
../shared/data at run time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch

from bench import cpu_name
from fer_core.models.checkpoint import DEFAULT_CHECKPOINT, FAST_CHECKPOINT
from fer_core.vision.video import (
    CSV_NAME,
    VideoOptions,
    analyse_video,
    load_faces,
    video_predictor,
)
from tests.clips import (
    Clip,
    crossing,
    detectable_faces,
    leave_and_return,
    score_tracking,
    wandering,
    write_clip,
)

ROOT = Path(__file__).resolve().parent.parent
CSV = ROOT.parent / "shared" / "data" / "fer2013.csv.gz"
TARGETS = {"fast_fps_1_face": 25, "default_fps_1_face": 8, "memory_growth_mb": 50}


def fer_faces(n: int, size: int, shape: tuple[int, int]):
    from fer_core.data.fer2013 import load_dataset

    if not CSV.exists():
        sys.exit(f"bench/video.py needs FER2013 faces: {CSV} is missing")
    return detectable_faces(load_dataset(CSV).split("public_test").images, n, size, shape)


def best_run(clip: Path, folder: Path, predictor, every: int = 1, repeat: int = 3):
    """(the summary, the best frames per second of the video covered, of `repeat` runs)."""
    best = 0.0
    for _ in range(repeat):
        started = time.perf_counter()
        summary = analyse_video(clip, folder / "out", predictor, VideoOptions(every=every))
        best = max(best, summary["video"]["frames"] / (time.perf_counter() - started))
    return summary, best


def speed(folder: Path) -> dict:
    """Processed frames per second on 640x480 clips, per model and number of faces."""
    faces = fer_faces(3, 140, (480, 640))
    clips = {
        n: write_clip(folder / f"speed_{n}.mp4", wandering(faces[:n], seconds=10, fps=30))
        for n in (1, 3)
    }
    out: dict = {"clip": "640x480, 30 fps, 10 s (300 frames), faces of 140 px moving"}
    for name, path in (("fast", FAST_CHECKPOINT), ("default", DEFAULT_CHECKPOINT)):
        predictor = video_predictor(path)
        analyse_video(clips[1], folder / "warm", predictor)  # first-call costs out of the timing
        for n, clip in clips.items():
            summary, fps = best_run(clip, folder, predictor)
            out[f"{name}_fps_{n}_face{'s' * (n > 1)}"] = round(fps, 1)
            found = [f for f in summary["faces"] if f["frames_seen"] > 30]
            out[f"{name}_faces_found_{n}"] = len(found)
        out[f"{name}_checkpoint"] = path.name
    _, fps = best_run(clips[1], folder, video_predictor(FAST_CHECKPOINT), every=3)
    out["fast_every_3_video_fps_1_face"] = round(fps, 1)
    return out


def peak_rss_mb(clip: Path, folder: Path) -> float:
    """Peak resident memory of a fresh process that analyses `clip` with the fast model."""
    code = (
        "import sys\n"
        "from fer_core.vision.video import analyse_video, video_predictor\n"
        "analyse_video(sys.argv[1], sys.argv[2], video_predictor(sys.argv[3]))\n"
        "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])\n"
    )
    args = [clip, folder / "mem_out", FAST_CHECKPOINT]
    proc = subprocess.run(  # `-c` imports from its working directory: fer_core from the repo root
        [sys.executable, "-c", code, *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(proc.stdout.split()[-1]) / 1024


def memory(folder: Path) -> dict:
    face = fer_faces(1, 90, (240, 320))
    out: dict = {"clip": "320x240, 10 fps, one face of 90 px moving; fast model"}
    for minutes in (1, 10):
        clip = wandering(face, seconds=60 * minutes, width=320, height=240, size=90, fps=10)
        path = write_clip(folder / f"memory_{minutes}min.mp4", clip)
        started = time.perf_counter()
        out[f"peak_rss_mb_{minutes}_min"] = round(peak_rss_mb(path, folder), 1)
        out[f"seconds_{minutes}_min"] = round(time.perf_counter() - started, 1)
        path.unlink()
    out["growth_mb"] = round(out["peak_rss_mb_10_min"] - out["peak_rss_mb_1_min"], 1)
    return out


def scenarios(faces) -> dict[str, Clip]:
    return {
        "two faces crossing, one hidden behind the other": crossing(faces, offset=0),
        "two faces crossing, overlapping": crossing(faces, offset=40),
        "two faces crossing four times in 8 s": crossing(faces, seconds=8, offset=20, passes=4),
        "a face covered for 0.4 s": leave_and_return(faces[0], away=(1.5, 1.9)),
        "a face gone for 1.5 s (a new id is expected)": leave_and_return(faces[0], (1.0, 2.5)),
        "three faces wandering": wandering(faces[:3], width=640, height=480),
    }


def tracking(folder: Path) -> list[dict]:
    faces = fer_faces(3, 100, (240, 320))
    predictor = video_predictor(FAST_CHECKPOINT)
    rows = []
    for name, clip in scenarios(faces).items():
        path = write_clip(folder / "track.mp4", clip)
        for every in (1, 3):
            analyse_video(path, folder / "track", predictor, VideoOptions(every=every))
            found = load_faces(folder / "track" / CSV_NAME)
            tracked = [
                (r.time_s, r.face_id, (r.box_x, r.box_y, r.box_w, r.box_h))
                for r in found.itertuples()
            ]
            score = score_tracking(clip, tracked, every)
            rows.append({"scenario": name, "every": every, "true_faces": len(clip.actors)} | score)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--json", action="store_true", help="only the final JSON line")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="fer_bench_video_") as tmp:
        folder = Path(tmp)
        result = {"speed": speed(folder), "memory": memory(folder), "tracking": tracking(folder)}
    result["targets"] = TARGETS
    result["machine"] = {
        "cpu": cpu_name(),
        "cpus": os.cpu_count(),
        "threads": args.threads,
        "torch": torch.__version__,
        "opencv": cv2.__version__,
        "nice": os.nice(0),  # on a shared machine the script may run at a higher priority
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
    }
    if not args.json:
        for key, value in {**result["speed"], **result["memory"]}.items():
            print(f"  {key:<28} {value}")
        for row in result["tracking"]:
            print(f"  {row['scenario']} (every {row['every']}): {row['id_switches']} id switches, "
                  f"{row['missed']}/{row['true_boxes']} missed, {row['ids']} ids")  # fmt: skip
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
