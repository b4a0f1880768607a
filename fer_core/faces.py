"""Face detection and the crop that turns a face in a photo into the model's 48x48 input.

Images from users are untrusted: `load_image` bounds the pixel count before decoding (no
decompression bombs), honours EXIF orientation, takes the first frame of animations, and converts
every mode (RGBA, palette, CMYK, 16-bit, grayscale) to 8-bit RGB.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fer_core.errors import ImageError

MAX_PIXELS = 40_000_000  # ~ a 7000x5700 photo; larger files are refused before decoding
MAX_FILE_BYTES = 50 * 1024 * 1024
FACE_SIZE = 48
# FER2013's crops include a little forehead and chin beyond the Haar box.
DEFAULT_MARGIN = 0.1


def load_image(
    source: str | os.PathLike | bytes | io.IOBase, name: str | None = None
) -> np.ndarray:
    """Decode an image file (path, bytes or file object) into (H, W, 3) uint8 RGB.

    Errors are `ImageError`s that start with `name` (default: the path, else "image").
    """
    if name is None:
        name = str(source) if isinstance(source, (str, os.PathLike)) else "image"
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"{name}: file not found")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ImageError(f"{name}: file is larger than {MAX_FILE_BYTES // 2**20} MB")
        source = path.read_bytes()
    if isinstance(source, io.IOBase):
        source = source.read(MAX_FILE_BYTES + 1)
    if not isinstance(source, bytes):
        raise ImageError(f"{name}: unsupported input type {type(source).__name__}")
    if len(source) == 0:
        raise ImageError(f"{name}: the file is empty")
    if len(source) > MAX_FILE_BYTES:
        raise ImageError(f"{name}: file is larger than {MAX_FILE_BYTES // 2**20} MB")
    try:
        with warnings.catch_warnings():
            # No warning reaches the user's stderr: PIL warns about corrupt metadata (EXIF, TIFF
            # tags) that it then skips, and from ~89 megapixels, where the MAX_PIXELS check below
            # refuses sooner, with the size in the message. Above ~179 megapixels PIL refuses.
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(source))
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageError(
                    f"{name}: image is {width}x{height} pixels, more than the "
                    f"{MAX_PIXELS // 1_000_000} megapixels accepted"
                )
            image.seek(0)  # first frame of an animation
            image.load()
            image = ImageOps.exif_transpose(image) or image
            return to_rgb(image)
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: image declares too many pixels (decompression bomb)") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not a readable image (unknown or unsupported format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise ImageError(f"{name}: not a readable image ({detail})") from None


def to_rgb(image: Image.Image) -> np.ndarray:
    """Any PIL mode -> (H, W, 3) uint8 RGB. Transparency is composited on white."""
    if image.mode.startswith("I;16"):  # 16-bit grayscale: full range down to 8 bits
        array = np.asarray(image, dtype=np.float64) / 257.0
        gray = np.clip(np.round(array), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode in ("I", "F"):  # 32-bit int or float: no fixed range, stretch min..max
        array = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(array.min()), float(array.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        gray = np.clip(np.round((array - lo) * scale), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB or (H, W) gray -> (H, W) uint8 gray (ITU-R 601 luma, as PIL's 'L')."""
    if rgb.ndim == 2:
        return rgb
    import cv2

    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    w: int
    h: int

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]


class FaceDetector:
    """OpenCV's bundled frontal-face Haar cascade. Thread-safe (one cascade per thread)."""

    def __init__(
        self,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size_frac: float = 0.05,
        max_side: int = 400,
    ) -> None:
        import cv2

        self.path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        if not self.path.exists():
            raise ImageError(
                "OpenCV's Haar cascade is missing (opencv-python-headless 5.x ships none); "
                "install opencv-python-headless<5"
            )
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size_frac = min_size_frac
        # Detect on a copy whose longest side is at most max_side: 640x480 -> 400x300 takes
        # 43 ms instead of 88 ms on 2 cores, with the same recall (bench/webcam.py).
        self.max_side = max_side
        self._local = threading.local()

    def _cascade(self):
        import cv2

        cascade = getattr(self._local, "cascade", None)
        if cascade is None:
            cascade = cv2.CascadeClassifier(str(self.path))
            if cascade.empty():
                raise ImageError(f"cannot load the Haar cascade at {self.path}")
            self._local.cascade = cascade
        return cascade

    def detect(self, gray: np.ndarray) -> list[Box]:
        """Boxes of every face in a (H, W) uint8 image, largest first."""
        import cv2

        h, w = gray.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        small = (
            gray
            if scale == 1.0
            else cv2.resize(
                gray,
                (max(1, round(w * scale)), max(1, round(h * scale))),
                interpolation=cv2.INTER_AREA,
            )
        )
        small = cv2.equalizeHist(small)
        side = max(20, int(min(small.shape[:2]) * self.min_size_frac))
        if min(small.shape[:2]) < side:
            return []
        found = self._cascade().detectMultiScale(
            small,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(side, side),
        )
        boxes = [
            Box(round(x / scale), round(y / scale), round(bw / scale), round(bh / scale))
            for (x, y, bw, bh) in (found if len(found) else [])
        ]
        return sorted(boxes, key=lambda b: -b.w * b.h)


def webcam_detector() -> FaceDetector:
    """Faster settings for live video: 320 px, coarser scale steps (~15 ms per 640x480 frame)."""
    return FaceDetector(scale_factor=1.2, min_neighbors=4, max_side=320)


def crop_face(
    gray: np.ndarray, box: Box | None, margin: float = DEFAULT_MARGIN, size: int = FACE_SIZE
) -> np.ndarray:
    """A square crop around `box` (or the centred square of the whole image when None),
    enlarged by `margin` on each side, edge-padded where it leaves the image, resized to size."""
    import cv2

    h, w = gray.shape[:2]
    if box is None:
        side = min(h, w)
        cx, cy = w / 2, h / 2
        if max(h, w) <= 2 * side:  # a face crop: keep all of it (pad, do not cut)
            side = max(h, w)
    else:
        side = max(box.w, box.h) * (1 + 2 * margin)
        cx, cy = box.x + box.w / 2, box.y + box.h / 2
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    x1, y1 = x0 + round(side), y0 + round(side)
    pad = max(0, -x0, -y0, x1 - w, y1 - h)
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0, x1, y1 = x0 + pad, y0 + pad, x1 + pad, y1 + pad
    crop = gray[y0:y1, x0:x1]
    interpolation = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interpolation)
