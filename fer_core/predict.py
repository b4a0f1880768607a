"""Image -> faces -> emotion probabilities. One `Predictor` serves the CLI, the app and the webcam.

The predictor is safe to share between threads (Streamlit's `cache_resource`): inference runs
under a lock, and face detection keeps one cascade per thread.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np
import torch

from fer_core.checkpoint import Checkpoint, load_checkpoint
from fer_core.faces import Box, FaceDetector, crop_face, load_image, to_gray
from fer_core.inference import predict_proba

DEFAULT_TTA = "flip"  # photo prediction and evaluation; the webcam uses "none" for speed


@dataclass(frozen=True)
class FacePrediction:
    box: Box | None  # None in no-detect mode
    probs: dict[str, float]
    label: str
    crop: np.ndarray  # (48, 48) uint8, exactly what the model saw

    @property
    def confidence(self) -> float:
        return self.probs[self.label]

    def to_dict(self) -> dict:
        return {
            "box": self.box.as_list() if self.box else None,
            "label": self.label,
            "probs": {k: round(v, 6) for k, v in self.probs.items()},
        }


class Predictor:
    def __init__(
        self,
        ckpt: Checkpoint,
        tta: str | None = None,
        detector: FaceDetector | None = None,
        threads: int | None = None,
    ) -> None:
        self.ckpt = ckpt
        self.classes = ckpt.classes
        self.tta = tta or DEFAULT_TTA
        self.detector = detector or FaceDetector()
        self._lock = threading.Lock()
        if threads:
            torch.set_num_threads(threads)

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike | None = None, tta: str | None = None, device: str = "cpu"
    ) -> Predictor:
        return cls(load_checkpoint(path, device=device), tta=tta)

    def probabilities(self, faces: np.ndarray, tta: str | None = None) -> np.ndarray:
        """(N, 48, 48) uint8 crops -> (N, 7) probabilities."""
        if len(faces) == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        with self._lock, torch.inference_mode():
            return predict_proba(
                self.ckpt.model,
                faces,
                self.ckpt.mean,
                self.ckpt.std,
                tta=tta or self.tta,
                batch_size=64,
            )

    def faces_in(
        self, image: np.ndarray, detect: bool = True
    ) -> tuple[list[Box | None], np.ndarray]:
        """Boxes and (N, 48, 48) crops of the faces in an RGB or gray image."""
        gray = to_gray(image)
        boxes: list[Box | None] = list(self.detector.detect(gray)) if detect else [None]
        crops = (
            np.stack([crop_face(gray, b) for b in boxes])
            if boxes
            else np.zeros((0, 48, 48), np.uint8)
        )
        return boxes, crops

    def predict_array(
        self, image: np.ndarray, detect: bool = True, tta: str | None = None
    ) -> list[FacePrediction]:
        """Every face of a decoded image (H, W, 3) RGB or (H, W) gray."""
        boxes, crops = self.faces_in(image, detect)
        return self._package(boxes, crops, self.probabilities(crops, tta))

    def predict_path(self, source, detect: bool = True, tta: str | None = None):
        """Every face of an image file (path, bytes or file object)."""
        return self.predict_array(load_image(source), detect, tta)

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
    """Smooths probabilities across video frames: each face is matched to the previous frame's face
    with the largest box overlap, and its probabilities are an exponential moving average."""

    def __init__(self, alpha: float = 0.4, min_iou: float = 0.3) -> None:
        self.alpha = alpha  # weight of the newest frame; 1 disables smoothing
        self.min_iou = min_iou
        self._previous: list[FacePrediction] = []

    def __call__(self, faces: list[FacePrediction]) -> list[FacePrediction]:
        smoothed = []
        for face in faces:
            match = max(
                (p for p in self._previous if face.box and p.box),
                key=lambda p: box_iou(face.box, p.box),
                default=None,
            )
            if match is not None and box_iou(face.box, match.box) >= self.min_iou:
                probs = {
                    c: self.alpha * face.probs[c] + (1 - self.alpha) * match.probs[c]
                    for c in face.probs
                }
                face = FacePrediction(face.box, probs, max(probs, key=probs.get), face.crop)
            smoothed.append(face)
        self._previous = smoothed
        return smoothed
