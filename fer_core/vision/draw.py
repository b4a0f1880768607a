"""Drawing predictions onto images: boxes, labels, and a frames-per-second badge (RGB uint8)."""

from __future__ import annotations

import numpy as np

from fer_core.predict import FacePrediction

# One colour per class, RGB, readable on photos.
COLORS: dict[str, tuple[int, int, int]] = {
    "angry": (230, 57, 70),
    "disgust": (106, 153, 78),
    "fear": (155, 93, 229),
    "happy": (255, 183, 3),
    "sad": (33, 158, 188),
    "surprise": (251, 133, 0),
    "neutral": (160, 160, 160),
}


def annotate(
    image: np.ndarray,
    faces: list[FacePrediction],
    fps: float | None = None,
    tags: list[str] | None = None,
) -> np.ndarray:
    """A copy of an RGB (or gray) image with each face boxed and labelled; `tags` (one per face,
    e.g. a face id) go before the labels."""
    import cv2

    out = image.copy() if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    h, w = out.shape[:2]
    thick = max(1, round(min(h, w) / 240))
    for i, face in enumerate(faces):
        color = COLORS.get(face.label, (255, 255, 255))
        if face.box is None:
            x, y, bw, bh = 0, 0, w - 1, h - 1
        else:
            x, y, bw, bh = face.box.as_list()
        if face.box is not None and face.box.angle:
            # a face found turned: its box at its real angle, the label above its upright bounds
            corners = face.box.corners()
            cv2.polylines(out, [np.round(corners).astype(np.int32)], True, color, thick + 1)
            x, y = (round(float(v)) for v in corners.min(0))
            bw, bh = (round(float(v)) - o for v, o in zip(corners.max(0), (x, y)))
        else:
            cv2.rectangle(out, (x, y), (x + bw, y + bh), color, thick + 1)
        # "?" marks an uncertain face (a low top probability or a close runner-up)
        text = f"{face.label}{'?' if face.uncertain else ''} {face.confidence:.0%}"
        if tags is not None:
            text = f"{tags[i]} {text}"
        scale, weight = _label_size(text, bw, h, w)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, weight)
        ty = y - 4 if y - th - base - 4 >= 0 else min(h - 1, y + bh + th + base + 4)
        cv2.rectangle(out, (x, ty - th - base - 2), (x + tw + 6, ty + 2), color, -1)
        cv2.putText(
            out,
            text,
            (x + 3, ty - base),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (0, 0, 0),
            weight,
            cv2.LINE_AA,
        )
    if fps is not None:
        cv2.putText(
            out,
            f"{fps:.1f} fps",
            (8, 24),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.7,
            (0, 255, 0),
            2,
            cv2.LINE_AA,
        )
    return out


def _label_size(text: str, face_width: int, h: int, w: int) -> tuple[float, int]:
    """(font scale, stroke) for a face's label: about as wide as the face, never smaller than
    readable (0.4) nor larger than the image warrants."""
    fit = face_width / (19.0 * max(len(text), 1))  # HERSHEY_SIMPLEX is ~19 px a char at scale 1
    scale = min(max(0.4, fit), max(0.6, min(h, w) / 400))
    return scale, max(1, round(scale * 1.6))
