"""Generated video clips with known ground truth, for the video tests and bench/video.py.

Faces (FER2013 crops, read at run time, or anything 48x48) move along straight-line paths over a
smooth generated background; `Clip` knows where every face is in every frame. Clips are written
with PyAV to a temporary folder and never kept in the repository.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from fer_core.vision.track import iou_matrix

Point = tuple[float, float]
MS = Fraction(1, 1000)  # frame timestamps (not the stream's time base, which the muxer changes)


@dataclass(frozen=True)
class Actor:
    """A face following straight lines between keyframes (time_s, x, y) of its top-left corner;
    off screen before the first and after the last keyframe, and in the `hidden` intervals."""

    face: np.ndarray  # (48, 48) uint8
    keys: Sequence[tuple[float, float, float]]
    size: int = 120
    hidden: Sequence[tuple[float, float]] = ()

    def at(self, time_s: float) -> Point | None:
        if time_s < self.keys[0][0] or time_s > self.keys[-1][0]:
            return None
        if any(a <= time_s < b for a, b in self.hidden):
            return None
        times = [k[0] for k in self.keys]
        x = float(np.interp(time_s, times, [k[1] for k in self.keys]))
        y = float(np.interp(time_s, times, [k[2] for k in self.keys]))
        return x, y


@dataclass(frozen=True)
class Clip:
    actors: Sequence[Actor]
    width: int = 320
    height: int = 240
    fps: float = 15.0
    seconds: float = 3.0
    times: Sequence[float] | None = None  # explicit frame times: a variable frame rate
    _background: dict = field(default_factory=dict, compare=False, repr=False)

    def frame_times(self) -> list[float]:
        if self.times is not None:
            return list(self.times)
        return [i / self.fps for i in range(round(self.seconds * self.fps))]

    def truth(
        self, time_s: float, min_visible: float = 0.5
    ) -> dict[int, tuple[int, int, int, int]]:
        """Actor index -> box (x, y, w, h) of every face inside the frame at `time_s` and at
        least `min_visible` uncovered by the faces drawn over it."""
        boxes = {}
        placed = [(i, a, a.at(time_s)) for i, a in enumerate(self.actors)]
        placed = [(i, a, (round(at[0]), round(at[1]))) for i, a, at in placed if at is not None]
        for k, (i, actor, (x, y)) in enumerate(placed):
            inside = x + actor.size <= self.width and y + actor.size <= self.height
            if min(x, y) < 0 or not inside:
                continue
            covered = np.zeros((actor.size, actor.size), bool)
            for _, other, (ox, oy) in placed[k + 1 :]:
                covered[
                    max(0, oy - y) : oy - y + other.size, max(0, ox - x) : ox - x + other.size
                ] = True
            if 1 - covered.mean() >= min_visible:
                boxes[i] = (x, y, actor.size, actor.size)
        return boxes

    def background(self) -> np.ndarray:
        if "image" not in self._background:
            yy, xx = np.mgrid[0 : self.height, 0 : self.width]
            gray = 80 + 60 * xx / self.width + 30 * np.sin(yy / 50.0)
            self._background["image"] = gray.astype(np.uint8)
        return self._background["image"]

    def render(self, time_s: float) -> np.ndarray:
        """(H, W, 3) RGB; later actors are drawn over earlier ones."""
        gray = self.background().copy()
        for actor in self.actors:
            at = actor.at(time_s)
            if at is not None:
                _paste(gray, actor.face, actor.size, round(at[0]), round(at[1]))
        return np.repeat(gray[..., None], 3, axis=2)

    def frames(self) -> Iterator[tuple[float, np.ndarray]]:
        for time_s in self.frame_times():
            yield time_s, self.render(time_s)


def _paste(gray: np.ndarray, face: np.ndarray, size: int, x: int, y: int) -> None:
    """Paste a face scaled to size x size with its top-left at (x, y), clipped to the frame."""
    big = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)
    h, w = gray.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + size, w), min(y + size, h)
    if x0 < x1 and y0 < y1:
        gray[y0:y1, x0:x1] = big[y0 - y : y1 - y, x0 - x : x1 - x]


def write_clip(
    path: Path, clip: Clip, codec: str = "libx264", fmt: str | None = None, audio: bool = False
) -> Path:
    """Encode a clip with PyAV; frame times are kept exactly (variable frame rates too). With
    `audio`, a silent AAC track goes alongside."""
    import av

    with av.open(str(path), "w", format=fmt) as container:
        rate = Fraction(clip.fps).limit_denominator(1001)
        options = {"preset": "ultrafast"} if codec == "libx264" else {}
        stream = container.add_stream(codec, rate=rate, options=options)
        stream.width, stream.height, stream.pix_fmt = clip.width, clip.height, "yuv420p"
        stream.codec_context.time_base = stream.time_base = MS
        sound = container.add_stream("aac", rate=16000) if audio else None
        for time_s, image in clip.frames():
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = round(time_s * 1000), MS
            container.mux(stream.encode(frame))
            if sound is not None:
                container.mux(sound.encode(_silence(time_s, 1 / clip.fps)))
        container.mux(stream.encode(None))
        if sound is not None:
            container.mux(sound.encode(None))
    return path


def _silence(time_s: float, seconds: float, rate: int = 16000):
    import av

    frame = av.AudioFrame.from_ndarray(
        np.zeros((1, round(seconds * rate)), np.float32), format="fltp", layout="mono"
    )
    frame.sample_rate, frame.pts, frame.time_base = rate, round(time_s * rate), Fraction(1, rate)
    return frame


def detectable_faces(
    images: np.ndarray, n: int, size: int = 100, shape: tuple[int, int] = (240, 320), limit=400
) -> np.ndarray:
    """The first `n` faces of `images` that the video path's detector finds when scaled to `size`
    pixels in a (height, width) frame, at three places (so that moving faces keep being found)."""
    from fer_core.vision.faces import to_gray, webcam_detector

    detector = webcam_detector()
    h, w = shape
    places = [(0, 0), ((w - size) / 2, (h - size) / 2), (w - size, h - size)]
    chosen = []
    for face in images[:limit]:
        clips = [Clip([Actor(face, [(0, x, y), (1, x, y)], size)], w, h) for x, y in places]
        if all(len(detector.detect(to_gray(c.render(0)))) == 1 for c in clips):
            chosen.append(face)
        if len(chosen) == n:
            return np.stack(chosen)
    raise AssertionError(f"only {len(chosen)} of the first {limit} faces are detected reliably")


# ----------------------------------------------------------------------------- scenarios


def crossing(
    faces: np.ndarray, seconds: float = 3.0, offset: int = 30, passes: int = 1, **clip
) -> Clip:
    """Two faces walking across each other `passes` times, the second passing in front of the
    first (fully hiding it for a moment when `offset`, their vertical distance, is small)."""
    w, h, size = clip.get("width", 320), clip.get("height", 240), clip.pop("size", 100)
    y = (h - size - offset) / 2
    times = np.linspace(0, seconds, passes + 1)
    ends = [0, w - size] * passes + [0]  # left, right, left, ...
    return Clip(
        [
            Actor(faces[0], [(t, ends[k], y) for k, t in enumerate(times)], size),
            Actor(faces[1], [(t, ends[k + 1], y + offset) for k, t in enumerate(times)], size),
        ],
        seconds=seconds,
        **clip,
    )


def leave_and_return(face: np.ndarray, away: tuple[float, float], seconds: float = 4.0, **clip):
    """One face moving slowly about the frame, gone (off screen or covered) during `away`."""
    w, h, size = clip.get("width", 320), clip.get("height", 240), clip.pop("size", 100)
    keys = [(0, 0, (h - size) / 2), (seconds, w - size, (h - size) / 2)]
    return Clip([Actor(face, keys, size, hidden=[away])], seconds=seconds, **clip)


def wandering(faces: np.ndarray, seconds: float = 4.0, **clip) -> Clip:
    """Several faces moving on separate diagonal paths that never touch."""
    w, h, size = clip.pop("width", 640), clip.pop("height", 480), clip.pop("size", 140)
    n = len(faces)
    lane = w / n
    actors = [
        Actor(
            face,
            [
                (0, i * lane, 0),
                (seconds / 2, i * lane + lane - size, h - size),
                (seconds, i * lane, 0),
            ],
            size,
        )
        for i, face in enumerate(faces)
    ]
    return Clip(actors, width=w, height=h, seconds=seconds, **clip)


def _boxes(boxes) -> np.ndarray:
    return np.array(list(boxes), dtype=float).reshape(-1, 4)


def _false_positives(clip: Clip, time_s: float, found: list, matched: set, min_iou=0.3) -> int:
    """Found boxes matching no face, not even one mostly covered by another."""
    present = _boxes(clip.truth(time_s, min_visible=0.0).values())
    extra = _boxes(b for c, (_, b) in enumerate(found) if c not in matched)
    if not len(present):
        return len(extra)
    return int((iou_matrix(extra, present).max(axis=1, initial=0) < min_iou).sum())


def score_tracking(clip: Clip, rows, every: int = 1, min_iou: float = 0.3) -> dict:
    """Compare tracked faces with the clip's ground truth, CLEAR-MOT style.

    rows: (time_s, face_id, (x, y, w, h)) of every tracked face. Each processed frame, tracked
    boxes are matched to the true ones (optimal assignment, IoU >= min_iou). A true face whose
    matched id changes counts an id switch: a swap when the new id belonged to another true face,
    a lost track when it is a new id. A face found while mostly covered by another is neither a
    match nor a false positive."""
    by_time: dict[float, list] = {}
    for time_s, face_id, box in rows:
        by_time.setdefault(round(time_s, 3), []).append((face_id, box))
    last: dict[int, int] = {}
    owner: dict[int, int] = {}  # tracked id -> the true face it first matched
    score = {"frames": 0, "true_boxes": 0, "missed": 0, "false_positives": 0}
    score |= {"id_switches": 0, "swaps": 0, "lost_tracks": 0}
    for time_s in clip.frame_times()[::every]:
        truth = clip.truth(time_s)
        found = by_time.get(round(time_s, 3), [])
        actors = list(truth)
        overlap = iou_matrix(_boxes(truth[a] for a in actors), _boxes(b for _, b in found))
        pairs = [
            (r, c) for r, c in zip(*linear_sum_assignment(-overlap)) if overlap[r, c] >= min_iou
        ]
        score["frames"] += 1
        score["true_boxes"] += len(actors)
        score["missed"] += len(actors) - len(pairs)
        score["false_positives"] += _false_positives(clip, time_s, found, {c for _, c in pairs})
        for r, c in pairs:
            actor, face_id = actors[r], found[c][0]
            if actor in last and last[actor] != face_id:
                score["id_switches"] += 1
                kind = "swaps" if owner.get(face_id, actor) != actor else "lost_tracks"
                score[kind] += 1
            owner.setdefault(face_id, actor)
            last[actor] = face_id
    score["ids"] = len({face_id for time_rows in by_time.values() for face_id, _ in time_rows})
    return score
