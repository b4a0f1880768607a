"""Face tracking across video frames: each person keeps one face id, and its probabilities are
smoothed over time. Video files and the live webcam use the same tracker.

Each frame, the tracks' boxes are moved along their measured velocity to the frame's time, and the
detections are assigned to them by box overlap with an optimal matching (SciPy's
`linear_sum_assignment`, as SORT does). Two faces passing each other therefore keep their ids: the
matching maximises the total overlap instead of letting the first face take the best box, and a
face hidden behind another for a moment is looked for where it was heading. A track that finds no
detection for a while ends (`TrackerConfig`); a face seen again after that gets a new id.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

import numpy as np

from fer_core.predict import FacePrediction


@dataclass(frozen=True)
class TrackerConfig:
    min_iou: float = 0.2  # a detection joins a track only if it overlaps its expected box this much
    max_size_ratio: float = 1.5  # ... and its size differs from the track's by at most this factor
    # A track ends when it has gone undetected for more than max_missed frames in a row and
    # for more than max_gap_s seconds (a face hidden behind another for a second keeps its id).
    max_missed: int = 5
    max_gap_s: float = 1.0
    smoothing_s: float = 0.3  # time constant of the probabilities' moving average; 0 = none


@dataclass(frozen=True)
class TrackedFace:
    face_id: int
    face: FacePrediction  # the detection, with the track's smoothed probabilities and label


@dataclass
class _Track:
    face_id: int
    box: np.ndarray  # (4,) x, y, w, h of the last detection
    velocity: np.ndarray  # (2,) pixels per second of the box's centre
    probs: np.ndarray  # (K,) smoothed probabilities
    time_s: float  # when it was last detected
    hits: int = 1  # frames it was detected in
    missed: int = 0  # frames in a row it was not

    def expected_box(self, time_s: float) -> np.ndarray:
        moved = self.box.copy()
        moved[:2] += self.velocity * (time_s - self.time_s)
        return moved


def _centre(box: np.ndarray) -> np.ndarray:
    return box[:2] + box[2:] / 2


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) and (M, 4) boxes as x, y, w, h -> (N, M) intersection over union."""
    a0, b0 = a[:, None, :2], b[None, :, :2]  # (N, 1, 2), (1, M, 2) top-left corners
    a1, b1 = a0 + a[:, None, 2:], b0 + b[None, :, 2:]  # bottom-right corners
    sides = np.clip(np.minimum(a1, b1) - np.maximum(a0, b0), 0, None)  # (N, M, 2)
    inter = sides[..., 0] * sides[..., 1]
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    return inter / np.maximum(union, 1e-9)


class FaceTracker:
    """Gives every detected face a stable id and time-smoothed probabilities. Not thread-safe:
    one tracker per stream."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._tracks: list[_Track] = []
        self._ids = itertools.count(1)

    @property
    def active_ids(self) -> list[int]:
        return [t.face_id for t in self._tracks]

    def update(self, faces: list[FacePrediction], time_s: float) -> list[TrackedFace]:
        """The faces detected in the frame at `time_s` (seconds, increasing), in the same order,
        each with its track's id. Faces without a box (no-detect mode) are not tracked."""
        boxed: list[int] = []
        rows: list[list[int]] = []
        for i, f in enumerate(faces):
            if f.box is not None:
                boxed.append(i)
                rows.append(f.box.as_list())
        detections = np.array(rows, dtype=float).reshape(-1, 4)
        pairs = self._match(detections, time_s)
        matched = {d: t for t, d in pairs}
        for t in self._tracks:
            t.missed += 1  # reset below for those detected now
        out = []
        for d, i in enumerate(boxed):
            track = matched.get(d)
            if track is None:
                track = self._start(detections[d], faces[i], time_s)
            else:
                self._follow(track, detections[d], faces[i], time_s)
            out.append(TrackedFace(track.face_id, self._smoothed(faces[i], track)))
        self._tracks = [t for t in self._tracks if not self._ended(t, time_s)]
        return out

    def _ended(self, track: _Track, time_s: float) -> bool:
        gap = time_s - track.time_s
        return track.missed > self.config.max_missed and gap > self.config.max_gap_s

    def _match(self, detections: np.ndarray, time_s: float) -> list[tuple[_Track, int]]:
        """Optimal assignment of detections to tracks by the overlap with where each track is
        expected now; pairs below `min_iou`, or of too different sizes, are left unmatched."""
        if not self._tracks or not len(detections):
            return []
        expected = np.stack([t.expected_box(time_s) for t in self._tracks])
        overlap = iou_matrix(expected, detections)  # (tracks, detections)
        ratio = expected[:, None, 2] / detections[None, :, 2]
        overlap[np.maximum(ratio, 1 / ratio) > self.config.max_size_ratio] = 0.0
        from scipy.optimize import linear_sum_assignment  # here: the CLI's other commands skip it

        rows, cols = linear_sum_assignment(-overlap)
        return [
            (self._tracks[r], int(c))
            for r, c in zip(rows, cols)
            if overlap[r, c] >= self.config.min_iou
        ]

    def _start(self, box: np.ndarray, face: FacePrediction, time_s: float) -> _Track:
        probs = np.array(list(face.probs.values()), dtype=float)
        track = _Track(next(self._ids), box, np.zeros(2), probs, time_s)
        self._tracks.append(track)
        return track

    def _follow(self, track: _Track, box: np.ndarray, face: FacePrediction, time_s: float) -> None:
        dt = time_s - track.time_s
        if dt > 0:
            measured = (_centre(box) - _centre(track.box)) / dt
            # The first step takes the measurement; later ones average out detector jitter.
            track.velocity = measured if track.hits == 1 else (track.velocity + measured) / 2
            weight = self._weight(dt)
            new = np.array(list(face.probs.values()), dtype=float)
            track.probs = weight * new + (1 - weight) * track.probs
        track.box, track.time_s, track.missed = box, time_s, 0
        track.hits += 1

    def _weight(self, dt: float) -> float:
        """Weight of the newest frame in the moving average: frames `dt` apart, time constant
        `smoothing_s`, so the smoothing lasts as long whatever the frame rate."""
        tau = self.config.smoothing_s
        return 1.0 if tau <= 0 else 1.0 - math.exp(-dt / tau)

    def _smoothed(self, face: FacePrediction, track: _Track) -> FacePrediction:
        probs = {c: float(p) for c, p in zip(face.probs, track.probs)}
        return replace(face, probs=probs, label=max(probs, key=probs.__getitem__))
