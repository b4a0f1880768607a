"""Video files: every face tracked through a clip, with its emotion over time.

`analyse_video` decodes a file with PyAV, detects the faces of every frame (or of every Nth),
classifies the faces of a batch of frames in one forward pass, tracks them (`fer_core.vision.track`), and
writes as it goes: `faces.csv` (one row per face per processed frame), `annotated.mp4` (H.264 with
boxes, face ids and labels; no audio) and, at the end, `summary.json`. Frames flow through one at a
time, so memory stays flat whatever the length.

Videos from users are untrusted: size, resolution and length are checked against `VideoLimits`
from the header before decoding, and again while decoding (a header can lie). Every failure is a
`VideoError` with one sentence.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import closing, suppress
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from fer_core.errors import VideoError
from fer_core.predict import Predictor
from fer_core.vision.track import FaceTracker, TrackedFace, TrackerConfig

CSV_NAME, SUMMARY_NAME, VIDEO_NAME = "faces.csv", "summary.json", "annotated.mp4"
VIDEO_TYPES = ("mp4", "mov", "webm", "avi", "mkv", "m4v")
MAX_FPS = 240  # frames beyond max_minutes at this rate mean a lying header
BATCH_BYTES = 64 * 2**20  # the RGB frames of one batch: 8 frames up to 1080p, 2 at 4K
ENCODER = {"preset": "veryfast", "crf": "23"}  # libx264: ~3 ms per 640x480 frame on 2 cores
# Frames are stamped in milliseconds. (The muxer changes the stream's own time base once it
# starts, so frames must not take theirs from the stream.)
TIME_BASE = Fraction(1, 1000)


@dataclass(frozen=True)
class VideoLimits:
    max_megabytes: int = field(default=4096, metadata={"help": "largest file accepted"})
    max_pixels: int = field(
        default=4096 * 2304, metadata={"help": "largest frame accepted (4K UHD fits)"}
    )
    max_minutes: float = field(default=240.0, metadata={"help": "longest video accepted"})


@dataclass(frozen=True)
class VideoOptions:
    every: int = 1  # detect and classify every Nth frame
    batch_frames: int = 8  # frames whose faces share one forward pass
    tta: str = "none"
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    limits: VideoLimits = field(default_factory=VideoLimits)


@dataclass(frozen=True)
class VideoInfo:
    name: str
    width: int  # as displayed: after `turns`
    height: int
    fps: float  # average; 0 when the file does not say
    duration_s: float  # 0 when the file does not say
    frames: int  # as declared by the file; 0 when it does not say
    codec: str
    turns: int = 0  # quarter turns counterclockwise that show the frames upright (phone videos)

    @property
    def expected_frames(self) -> int:
        """The declared frame count, else an estimate from the duration (0 if neither)."""
        return self.frames or round(self.duration_s * self.fps)


@dataclass(frozen=True)
class Frame:
    index: int  # in the file, from 0
    time_s: float  # presentation time from the first frame (variable frame rates included)
    image: np.ndarray  # (H, W, 3) uint8 RGB


@dataclass(frozen=True)
class FrameFaces:
    frame: Frame
    faces: list[TrackedFace]


@dataclass(frozen=True)
class VideoProgress:
    decoded: int  # frames of the file read so far
    total: int  # frames expected (from the header; an estimate)
    processed: int  # frames analysed so far
    elapsed_s: float

    @property
    def fraction(self) -> float:
        return min(1.0, self.decoded / self.total) if self.total else 0.0

    @property
    def processed_per_s(self) -> float:
        return self.processed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float:
        if not self.decoded or self.total <= self.decoded:
            return 0.0
        return self.elapsed_s / self.decoded * (self.total - self.decoded)


# ----------------------------------------------------------------------------- decoding


def _open(path: Path):
    import av

    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise VideoError(f"{path.name}: not a readable video ({_reason(exc)})") from None


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text.splitlines()[0][:120]


def probe(path: str | os.PathLike, limits: VideoLimits | None = None) -> VideoInfo:
    """Size, resolution, frame rate and length from the header, checked against `limits`."""
    path, limits = Path(path), limits or VideoLimits()
    if not path.is_file():
        raise VideoError(f"{path.name}: file not found")
    size = path.stat().st_size
    if size == 0:
        raise VideoError(f"{path.name}: the file is empty")
    if size > limits.max_megabytes * 2**20:
        raise VideoError(f"{path.name}: file is larger than {limits.max_megabytes} MB")
    with _open(path) as container:
        if not container.streams.video:
            raise VideoError(f"{path.name}: the file has no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = container.duration / 1_000_000 if container.duration else 0.0
        info = VideoInfo(
            name=path.name,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=fps,
            duration_s=duration,
            frames=stream.frames,
            codec=stream.codec_context.name,
        )
        check_limits(info, limits)  # before decoding anything
        turns = _turns(container, stream)
    if turns % 2:
        return replace(info, width=info.height, height=info.width, turns=turns)
    return replace(info, turns=turns)


def _turns(container, stream) -> int:
    """Phones store portrait video as landscape frames and a display matrix saying how to turn
    them; it comes with the decoded frames, so this decodes the first one."""
    import av

    try:
        frame = next(container.decode(stream), None)
    except av.FFmpegError:
        return 0  # decoding proper reports it
    return round(frame.rotation / 90) % 4 if frame is not None else 0


def check_limits(info: VideoInfo, limits: VideoLimits) -> None:
    if min(info.width, info.height) < 16:
        raise VideoError(f"{info.name}: frames of {info.width}x{info.height} pixels are too small")
    if info.width * info.height > limits.max_pixels:
        raise VideoError(
            f"{info.name}: video is {info.width}x{info.height} pixels, more than the "
            f"{limits.max_pixels / 1e6:g} megapixels accepted"
        )
    if info.duration_s > limits.max_minutes * 60:
        raise VideoError(
            f"{info.name}: video is {info.duration_s / 60:.0f} minutes long, more than the "
            f"{limits.max_minutes:g} accepted"
        )


class VideoReader:
    """Decoded frames of one file, every Nth as RGB arrays; counts the frames it decoded."""

    def __init__(self, path: str | os.PathLike, limits: VideoLimits | None = None) -> None:
        self.path = Path(path)
        self.limits = limits or VideoLimits()
        self.info = probe(self.path, self.limits)
        self.decoded = 0
        self.last_time_s = 0.0

    def frames(self, every: int = 1) -> Generator[Frame, None, None]:
        import av

        name, info = self.info.name, self.info
        coded = (info.height, info.width) if info.turns % 2 else (info.width, info.height)
        self.decoded, self.last_time_s = 0, 0.0
        with _open(self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame and slice threads: ~2x faster on 2 cores
            try:
                for frame in container.decode(stream):
                    time_s = self._time(frame.time)
                    if self.decoded % every == 0:
                        # A stream may change size midway; every frame comes out at the first size.
                        image = frame.to_ndarray(width=coded[0], height=coded[1], format="rgb24")
                        if info.turns:
                            image = np.ascontiguousarray(np.rot90(image, info.turns))
                        yield Frame(self.decoded, time_s, image)
                    self.decoded += 1
            except av.FFmpegError as exc:
                raise VideoError(
                    f"{name}: the video is truncated or corrupt after frame {self.decoded} "
                    f"({_reason(exc)})"
                ) from None
        if self.decoded == 0:
            raise VideoError(f"{name}: the video has no frames")
        if self.decoded < info.frames * 0.95 - 1:  # the decoder conceals a cut-off end
            raise VideoError(
                f"{name}: the video is truncated: {self.decoded} of the {info.frames} frames "
                "it declares could be decoded"
            )

    def _time(self, pts_time: float | None) -> float:
        """Seconds since the first frame, strictly increasing (broken timestamps are nudged)."""
        if self.decoded == 0:
            self._start, time_s = pts_time or 0.0, 0.0
        else:
            time_s = pts_time - self._start if pts_time is not None else -1.0
            if time_s <= self.last_time_s:  # missing or out of order
                time_s = self.last_time_s + 1 / (self.info.fps or 30.0)
        limit = self.limits.max_minutes * 60
        if time_s > limit or self.decoded > limit * MAX_FPS:
            raise VideoError(
                f"{self.info.name}: video is longer than {self.limits.max_minutes:g} minutes"
            )
        self.last_time_s = time_s
        return time_s


# ----------------------------------------------------------------------------- analysis


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def track_frames(
    frames: Iterable[Frame],
    predictor: Predictor,
    tracker: FaceTracker,
    batch: int = 8,
    tta: str = "none",
) -> Generator[FrameFaces, None, None]:
    """Detect, classify (the faces of `batch` frames in one forward pass) and track."""
    for chunk in _chunks(frames, batch):
        per_frame = predictor.predict_frames([f.image for f in chunk], tta=tta)
        for frame, faces in zip(chunk, per_frame):
            yield FrameFaces(frame, tracker.update(faces, frame.time_s))


def video_predictor(checkpoint: str | os.PathLike | None = None) -> Predictor:
    """The predictor video files use: the webcam's detector settings and no test-time views."""
    from fer_core.models.checkpoint import load_checkpoint
    from fer_core.vision.faces import webcam_detector

    return Predictor(load_checkpoint(checkpoint), tta="none", detector=webcam_detector())


# ----------------------------------------------------------------------------- outputs


def csv_header(classes: Iterable[str]) -> list[str]:
    return ["frame", "time_s", "face_id", "box_x", "box_y", "box_w", "box_h", *classes, "label"]


class FacesTable:
    """faces.csv: one row per face per processed frame, with the track's smoothed probabilities."""

    def __init__(self, path: Path, classes: Iterable[str]) -> None:
        self._file = open(path, "w", newline="")  # noqa: SIM115 (closed by close())
        self._writer = csv.writer(self._file)
        self._writer.writerow(csv_header(classes))

    def add(self, result: FrameFaces) -> None:
        for tracked in result.faces:
            face = tracked.face
            box = face.box
            assert box is not None  # only faces with a box are tracked
            self._writer.writerow(
                [
                    result.frame.index,
                    f"{result.frame.time_s:.3f}",
                    tracked.face_id,
                    *box.as_list(),
                    *(f"{p:.4f}" for p in face.probs.values()),
                    face.label,
                ]
            )

    def close(self) -> None:
        self._file.close()


class AnnotatedVideo:
    """annotated.mp4: the processed frames with boxes, face ids and labels. H.264 in yuv420p at
    even dimensions (what browsers play), each frame at its source time (variable rates kept)."""

    def __init__(self, path: Path, info: VideoInfo, every: int) -> None:
        import av

        self.width, self.height = info.width // 2 * 2, info.height // 2 * 2
        self._container = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
        rate = Fraction(info.fps / every if info.fps else 30).limit_denominator(1001)
        stream = self._container.add_stream("libx264", rate=rate, options=ENCODER)
        stream.width, stream.height, stream.pix_fmt = self.width, self.height, "yuv420p"
        stream.codec_context.time_base = stream.time_base = TIME_BASE
        self._stream, self._pts = stream, -1

    def add(self, result: FrameFaces) -> None:
        import av

        from fer_core.vision.draw import annotate

        image = annotate(
            result.frame.image[: self.height, : self.width],
            [t.face for t in result.faces],
            tags=[f"#{t.face_id}" for t in result.faces],
        )
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        self._pts = max(self._pts + 1, round(result.frame.time_s * 1000))
        frame.pts, frame.time_base = self._pts, TIME_BASE
        self._container.mux(self._stream.encode(frame))

    def close(self) -> None:
        self._container.mux(self._stream.encode(None))  # flush the encoder's delayed frames
        self._container.close()


@dataclass
class _FaceStats:
    first_s: float
    last_s: float
    frames: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # time shown with each label


class SummaryBuilder:
    """Per face id: first and last time, frames seen, and the time spent with each label. A
    processed frame stands for the time until the next one, so variable frame rates and strides
    weigh correctly."""

    def __init__(self, classes: Iterable[str]) -> None:
        self.classes = list(classes)
        self.processed = 0
        self.last_time_s = 0.0
        self._faces: dict[int, _FaceStats] = {}
        self._pending: tuple[float, list[tuple[int, str]]] | None = None

    def add(self, result: FrameFaces) -> None:
        time_s = result.frame.time_s
        self._credit(time_s)
        for tracked in result.faces:
            stats = self._faces.setdefault(tracked.face_id, _FaceStats(time_s, time_s))
            stats.last_s, stats.frames = time_s, stats.frames + 1
        self._pending = (time_s, [(t.face_id, t.face.label) for t in result.faces])
        self.processed += 1
        self.last_time_s = time_s

    def _credit(self, until_s: float) -> None:
        if self._pending is None:
            return
        start, faces = self._pending
        for face_id, label in faces:
            seconds = self._faces[face_id].seconds
            seconds[label] = seconds.get(label, 0.0) + max(0.0, until_s - start)

    def faces(self, end_s: float) -> list[dict]:
        """The per-face records, the last processed frame lasting until `end_s`."""
        self._credit(end_s)
        self._pending = None
        return [self._record(face_id, s) for face_id, s in sorted(self._faces.items())]

    def _record(self, face_id: int, stats: _FaceStats) -> dict:
        total = sum(stats.seconds.values()) or 1.0
        share = {c: round(stats.seconds.get(c, 0.0) / total, 4) for c in self.classes}
        return {
            "face_id": face_id,
            "first_s": round(stats.first_s, 3),
            "last_s": round(stats.last_s, 3),
            "frames_seen": stats.frames,
            "dominant": max(share, key=share.__getitem__),
            "share": share,
        }


class _Outputs:
    """The CSV and the annotated video, written under temporary names that take their final
    names only when the analysis ends without an error (a failed run leaves nothing behind)."""

    def __init__(self, out_dir: Path, info: VideoInfo, every: int, classes) -> None:
        self.final = [out_dir / CSV_NAME, out_dir / VIDEO_NAME]
        self.partial = [p.with_name(f".{p.name}.partial") for p in self.final]
        self.table = FacesTable(self.partial[0], classes)
        self.video = AnnotatedVideo(self.partial[1], info, every)

    def add(self, result: FrameFaces) -> None:
        self.table.add(result)
        self.video.add(result)

    def __enter__(self) -> _Outputs:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.table.close()
        if exc_type is not None:
            with suppress(Exception):  # the error that got us here is the one to report
                self.video.close()
            for partial in self.partial:
                partial.unlink(missing_ok=True)
            return
        self.video.close()
        for partial, final in zip(self.partial, self.final):
            os.replace(partial, final)


def analyse_video(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    predictor: Predictor,
    options: VideoOptions | None = None,
    on_progress: Callable[[VideoProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """Analyse a video into `out_dir` (faces.csv, annotated.mp4, summary.json); returns the
    summary. When `should_stop()` turns true the analysis ends early, keeping what it processed,
    and the summary says `"complete": false`."""
    options = options or VideoOptions()
    if options.every < 1:
        raise VideoError("the frame stride (every) must be 1 or more")
    reader = VideoReader(path, options.limits)
    info, out = reader.info, Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = SummaryBuilder(predictor.classes)
    started = time.perf_counter()
    tracker = FaceTracker(options.tracker)
    batch = max(1, min(options.batch_frames, BATCH_BYTES // (info.width * info.height * 3)))
    frames = reader.frames(options.every)
    complete = True
    with (
        _Outputs(out, info, options.every, predictor.classes) as outputs,
        closing(frames),
        closing(track_frames(frames, predictor, tracker, batch, options.tta)) as results,
    ):
        for result in results:
            outputs.add(result)
            summary.add(result)
            if on_progress is not None:
                done = result.frame.index + 1
                elapsed = time.perf_counter() - started
                total = max(info.expected_frames, done)
                on_progress(VideoProgress(done, total, summary.processed, elapsed))
            if should_stop is not None and should_stop():
                complete = False
                break
    record = _summary(reader, summary, options, predictor, complete, time.perf_counter() - started)
    _write_json(out / SUMMARY_NAME, record)
    return record


def _summary(
    reader: VideoReader,
    summary: SummaryBuilder,
    options: VideoOptions,
    predictor: Predictor,
    complete: bool,
    seconds: float,
) -> dict:
    info = reader.info
    # The last processed frame stands for `every` frames, or for what is left of the video.
    end = summary.last_time_s + options.every / (info.fps or 30.0)
    if info.duration_s > summary.last_time_s:
        end = min(end, info.duration_s)
    return {
        "video": {
            "file": info.name,
            "width": info.width,
            "height": info.height,
            "fps": round(info.fps, 3),
            "duration_s": round(info.duration_s or end, 3),
            "codec": info.codec,
            "frames": reader.decoded,
            "frames_processed": summary.processed,
            "every": options.every,
        },
        "model": {
            "checkpoint": predictor.ckpt.name,
            "tta": options.tta,
            "detector": "webcam settings",
            "smoothing_s": options.tracker.smoothing_s,
        },
        "complete": complete,
        "analysis_s": round(seconds, 2),
        "faces": summary.faces(end),
    }


def _write_json(path: Path, record: dict) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(record, indent=1))
    os.replace(partial, path)


# ----------------------------------------------------------------------------- reading results


def load_faces(path: str | os.PathLike):
    """faces.csv as a pandas DataFrame."""
    import pandas as pd

    return pd.read_csv(path)


def timeline(faces, face_id: int, classes: Iterable[str], max_points: int = 1500):
    """One face's probabilities over time, averaged into at most `max_points` time bins (a chart
    of an hour of video stays light): a DataFrame with time_s and one column per class."""
    rows = faces[faces["face_id"] == face_id]
    columns = ["time_s", *classes]
    if len(rows) <= max_points:
        return rows[columns].reset_index(drop=True)
    bins = np.linspace(rows["time_s"].min(), rows["time_s"].max(), max_points + 1)
    which = np.clip(np.digitize(rows["time_s"], bins) - 1, 0, max_points - 1)
    return rows[columns].groupby(which).mean().reset_index(drop=True)


def label_segments(faces, face_id: int, classes: Iterable[str], max_points: int = 600) -> list:
    """When one face showed which emotion: (start_s, end_s, label) runs of its most likely class,
    from its binned timeline; a gap in the detections ends a run."""
    classes = list(classes)
    rows = timeline(faces, face_id, classes, max_points)
    times = rows["time_s"].to_numpy()
    labels = [classes[i] for i in rows[classes].to_numpy().argmax(axis=1)]
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1 / 30
    runs: list[list] = []
    for time_s, label in zip(times, labels):
        if runs and runs[-1][2] == label and time_s <= runs[-1][1] + step / 2:
            runs[-1][1] = time_s + step
        else:
            runs.append([time_s, time_s + step, label])
    return [tuple(run) for run in runs]
