"""Image -> faces -> emotion probabilities. One `Predictor` serves the CLI, the app and the webcam.

The predictor is safe to share between threads (Streamlit's `cache_resource`): inference and
saliency run under one lock, and face detection keeps one cascade per thread.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch

from fer_core.inference import predict_proba
from fer_core.models.checkpoint import Checkpoint, load_checkpoint
from fer_core.saliency import saliency_map
from fer_core.vision.faces import Box, FaceDetector, crop_face, load_image, to_gray

DEFAULT_TTA = "flip"  # photo prediction and evaluation; the webcam uses "none" for speed
# A face is called uncertain when its calibrated top probability is below UNCERTAIN_BELOW, or the
# runner-up is within UNCERTAIN_GAP of it: the UI and the CLI then name both classes.
UNCERTAIN_BELOW = 0.5
UNCERTAIN_GAP = 0.15


@dataclass(frozen=True)
class FacePrediction:
    box: Box | None  # None in no-detect mode
    probs: dict[str, float]
    label: str
    crop: np.ndarray  # (48, 48) uint8, exactly what the model saw

    @property
    def confidence(self) -> float:
        return self.probs[self.label]

    @property
    def runner_up(self) -> str:
        return sorted(self.probs, key=self.probs.__getitem__)[-2]

    @property
    def uncertain(self) -> bool:
        """A low top probability, or two classes close together."""
        gap = self.confidence - self.probs[self.runner_up]
        return self.confidence < UNCERTAIN_BELOW or gap < UNCERTAIN_GAP

    def to_dict(self) -> dict:
        return {
            "box": self.box.as_list() if self.box else None,
            "angle": round(self.box.angle, 1) if self.box else None,  # degrees, counter-clockwise
            "label": self.label,
            "uncertain": self.uncertain,
            "probs": {k: round(v, 6) for k, v in self.probs.items()},
        }


def in_reading_order(faces: list[FacePrediction]) -> list[FacePrediction]:
    """Faces left to right by the centre of their box (top to bottom where two share a column),
    the order a group photo's faces are numbered in; faces without a box keep their place."""
    if len(faces) < 2 or any(f.box is None for f in faces):
        return list(faces)

    def centre(face: FacePrediction) -> tuple[float, float]:
        box = cast(Box, face.box)  # every face has one (checked above)
        return (box.x + box.w / 2, box.y + box.h / 2)

    return sorted(faces, key=centre)


class Predictor:
    def __init__(
        self,
        ckpt: Checkpoint,
        tta: str | None = None,
        detector: FaceDetector | None = None,
        threads: int | None = None,
        precision: str = "auto",
    ) -> None:
        self.ckpt = ckpt
        self.classes = ckpt.classes
        self.tta = tta or DEFAULT_TTA
        self._precision = precision
        if precision != "auto":
            ckpt.inference_model(precision)  # an impossible request fails here, not later
        self._detector = detector
        self._lock = threading.Lock()
        if threads:
            torch.set_num_threads(threads)

    @property
    def model(self):
        """The network predictions run: int8 on CPUs where the checkpoint allows it, built on
        first use (`Checkpoint.inference_model`)."""
        return self.ckpt.inference_model(self._precision)

    @property
    def precision(self) -> str:
        """What the network runs in: "int8" or "fp32" (`Checkpoint.inference_model`)."""
        return self.ckpt.precision(self._precision)

    @property
    def detector(self) -> FaceDetector:
        """The photo face detector, loaded on first use: whole-image prediction needs none."""
        if self._detector is None:
            self._detector = FaceDetector()
        return self._detector

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike | None = None,
        tta: str | None = None,
        device: str = "cpu",
        precision: str = "auto",
    ) -> Predictor:
        return cls(load_checkpoint(path, device=device), tta=tta, precision=precision)

    def probabilities(
        self, faces: np.ndarray, tta: str | None = None, calibrated: bool = True
    ) -> np.ndarray:
        """(N, 48, 48) uint8 crops -> (N, 7) probabilities, calibrated with the checkpoint's
        temperature unless calibrated=False."""
        if len(faces) == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        with self._lock, torch.inference_mode():
            return predict_proba(
                self.model,
                faces,
                self.ckpt.mean,
                self.ckpt.std,
                tta=tta or self.tta,
                batch_size=64,
                temperature=self.ckpt.temperature if calibrated else 1.0,
            )

    def saliency(self, faces: np.ndarray, target=None) -> np.ndarray:
        """(N, 48, 48) uint8 crops -> (N, 48, 48) saliency maps in [0, 1] (`saliency_map`) for
        `target` (a class index per face; default the predicted class), under the lock that
        predictions take: the backward pass never overlaps one on the shared model. Maps are
        of the fp32 network (gradients need it), whatever precision predictions run in."""
        with self._lock:
            return saliency_map(self.ckpt.model, faces, self.ckpt.mean, self.ckpt.std, target)

    def faces_in(
        self,
        image: np.ndarray,
        detect: bool = True,
        detector: FaceDetector | None = None,
        largest: bool = False,
    ) -> tuple[list[Box | None], np.ndarray]:
        """Boxes and (N, 48, 48) crops of the faces in an RGB or gray image, largest first;
        `detector` replaces the predictor's own for this call, `largest` keeps one face."""
        gray = to_gray(image)
        boxes: list[Box | None] = [None]
        if detect:
            found: list[Box | None] = list((detector or self.detector).detect(gray))
            boxes = found[: 1 if largest else None]
        crops = (
            np.stack([crop_face(gray, b) for b in boxes])
            if boxes
            else np.zeros((0, 48, 48), np.uint8)
        )
        return boxes, crops

    def predict_array(
        self,
        image: np.ndarray,
        detect: bool = True,
        tta: str | None = None,
        detector: FaceDetector | None = None,
        largest: bool = False,
    ) -> list[FacePrediction]:
        """Every face of a decoded image (H, W, 3) RGB or (H, W) gray (or only the largest)."""
        boxes, crops = self.faces_in(image, detect, detector, largest)
        return self._package(boxes, crops, self.probabilities(crops, tta))

    def predict_path(
        self,
        source,
        detect: bool = True,
        tta: str | None = None,
        detector: FaceDetector | None = None,
        largest: bool = False,
    ) -> list[FacePrediction]:
        """Every face of an image file (path, bytes or file object)."""
        return self.predict_array(load_image(source), detect, tta, detector, largest)

    def predict_frames(
        self, frames: list[np.ndarray], tta: str = "none", detect: bool = True
    ) -> list[list[FacePrediction]]:
        """Batched prediction over several frames (webcam): one forward pass for all faces."""
        per_frame = [self.faces_in(f, detect) for f in frames]
        crops = [c for _, c in per_frame]
        all_crops = np.concatenate(crops) if crops else np.zeros((0, 48, 48), np.uint8)
        probs = self.probabilities(all_crops, tta)
        out, start = [], 0
        for boxes, c in per_frame:
            out.append(self._package(boxes, c, probs[start : start + len(c)]))
            start += len(c)
        return out

    def _package(self, boxes, crops, probs) -> list[FacePrediction]:
        return [
            FacePrediction(
                box=box,
                probs={c: float(p) for c, p in zip(self.classes, row)},
                label=self.classes[int(np.argmax(row))],
                crop=crop,
            )
            for box, crop, row in zip(boxes, crops, probs)
        ]


def box_iou(a: Box, b: Box) -> float:
    ix = max(0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    iy = max(0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    inter = ix * iy
    union = a.w * a.h + b.w * b.h - inter
    return inter / union if union else 0.0


class FaceSmoother:
    """Smoothing across frames for callers of the old API: `fer_core.vision.track.FaceTracker` stepping
    one unit of time per call, so that `alpha` stays the weight of the newest frame."""

    def __init__(self, alpha: float = 0.4, min_iou: float = 0.3) -> None:
        import math

        from fer_core.vision.track import FaceTracker, TrackerConfig

        tau = 0.0 if alpha >= 1 else math.inf if alpha <= 0 else -1 / math.log(1 - alpha)
        self._tracker = FaceTracker(TrackerConfig(min_iou=min_iou, smoothing_s=tau))
        self._calls = 0

    def __call__(self, faces: list[FacePrediction]) -> list[FacePrediction]:
        self._calls += 1
        tracked = iter(self._tracker.update(faces, float(self._calls)))
        return [next(tracked).face if f.box is not None else f for f in faces]
