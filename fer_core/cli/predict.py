"""`predict` (faces and emotions in images), `video` (every face tracked through a clip: CSV,
summary, annotated MP4) and `export` (a checkpoint to TorchScript or ONNX)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fer_core.data.augment import TTA_MODES
from fer_core.errors import FerError
from fer_core.options import add_flags, flag_values
from fer_core.vision.faces import DetectorConfig
from fer_core.vision.track import TrackerConfig
from fer_core.vision.video import VideoLimits


def add_precision_argument(p) -> None:
    from fer_core.models.quantize import PRECISIONS

    p.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="the network's arithmetic: auto (int8 on x86 CPUs where the checkpoint carries an "
        "int8 record, 5-7x faster; else fp32), fp32 or int8",
    )


def register(sub) -> None:
    p = sub.add_parser("predict", help="detect faces in images and predict their emotions")
    p.add_argument("images", nargs="+", help="image files (JPEG, PNG, WebP, BMP, TIFF, ...)")
    p.add_argument("--checkpoint", help="checkpoint file (default: the shipped model)")
    p.add_argument("--no-detect", action="store_true", help="treat each image as one face crop")
    p.add_argument("--largest", action="store_true", help="keep only the largest face per image")
    add_flags(p, DetectorConfig)
    p.add_argument("--tta-mode", dest="tta", choices=TTA_MODES, help="test-time views")
    add_precision_argument(p)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(run=cmd_predict)

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
    add_flags(p, VideoLimits)
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(run=cmd_video)

    p = sub.add_parser("export", help="export a checkpoint to TorchScript or ONNX")
    p.add_argument("--checkpoint", help="checkpoint file (default: the shipped model)")
    p.add_argument("--format", default="torchscript", choices=("torchscript", "onnx"))
    p.add_argument("--out", required=True)
    p.set_defaults(run=cmd_export)


def cmd_predict(args) -> int:
    from fer_core.predict import Predictor
    from fer_core.vision.faces import FaceDetector

    detector = FaceDetector(min_face=args.min_face, max_tilt=args.max_tilt)  # bad values fail first
    predictor = Predictor.from_checkpoint(args.checkpoint, tta=args.tta, precision=args.precision)
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
    from tqdm import tqdm

    from fer_core.vision.video import VideoOptions, analyse_video, probe, video_predictor

    if args.every < 1:
        raise FerError("--every must be 1 or more")
    limits = VideoLimits(**flag_values(args, VideoLimits))
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


def cmd_export(args) -> int:
    from fer_core.models.checkpoint import export, load_checkpoint

    out = export(load_checkpoint(args.checkpoint), args.out, args.format)
    print(out)
    return 0
