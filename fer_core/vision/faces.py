"""Face detection and the crop that turns a face in a photo into the model's 48x48 input.

Images from users are untrusted: `load_image` bounds the pixel count before decoding (no
decompression bombs), honours EXIF orientation, takes the first frame of animations, and converts
every mode (RGBA, palette, CMYK, 16-bit, grayscale) to 8-bit RGB.
"""

from __future__ import annotations

import io
import math
import os
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fer_core.errors import ImageError

MAX_PIXELS = 40_000_000  # ~ a 7000x5700 photo; larger files are refused before decoding
MAX_FILE_BYTES = 50 * 1024 * 1024
FACE_SIZE = 48
# Where the photo detector's box falls on FER2013's own faces (bench/framing.py: 200 training
# faces at 96-256 px in a larger canvas, medians): the box side is 1.00 of the 48x48 frame with
# the face's border replicated around it (0.97 on flat grey), centred. Photo crops invert this,
# so a detected face is framed as FER2013 frames its faces.
FRAME_SCALE = 1.0  # detector box side / FER2013 frame side
FRAME_DX = 0.0  # box centre minus frame centre, in frame sides
FRAME_DY = 0.0


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
            image: Image.Image = Image.open(io.BytesIO(source))
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
    """A face: the w x h rectangle at (x, y), turned by `angle` degrees counter-clockwise (as the
    image is shown) around its centre. angle 0 is an upright face; x, y, w, h are the rectangle
    before turning, so its centre is (x + w/2, y + h/2) whatever the angle."""

    x: int
    y: int
    w: int
    h: int
    angle: float = 0.0

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]

    @property
    def centre(self) -> tuple[float, float]:
        return self.x + self.w / 2, self.y + self.h / 2

    def axes(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """The face's right and down directions in image coordinates (unit vectors; y points down,
        so a counter-clockwise turn moves 'right' upwards)."""
        a = math.radians(self.angle)
        return (math.cos(a), -math.sin(a)), (math.sin(a), math.cos(a))

    def corners(self) -> np.ndarray:
        """(4, 2) float corners: top-left, top-right, bottom-right, bottom-left of the face."""
        (rx, ry), (dx, dy) = self.axes()
        cx, cy = self.centre
        out = []
        for u, v in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
            hu, hv = u * self.w / 2, v * self.h / 2
            out.append((cx + hu * rx + hv * dx, cy + hu * ry + hv * dy))
        return np.asarray(out)


# The photo detector's defaults (bench/detect.py measures them; BENCHMARKS.md has the table).
MIN_FACE_FRAC = 0.05  # automatic smallest face: this share of the photo's shorter side ...
MIN_FACE_PX = 24  # ... but at least this many pixels (the cascade's window)
WORK_FACE_PX = 48  # the smallest face is this big in the copy the cascade sees (or full size)
TILT_STEP = 25.0  # rotated copies every this many degrees; the upright cascade takes ~+-12
# Turned copies look for faces from this many times the smallest face upright copies look for:
# the search over the full-resolution copy at the smallest sizes is most of a photo's time, and
# the turned copies cost as much each (bench/detect.py and bench/webcam.py measure both ways)
TILT_MIN_FACE = 1.5
HAAR_WINDOW = 24
LEVEL_FACE = 36  # each level of the detector's pyramid looks for faces from this many px ...
LEVEL_RANGE = 2.4  # ... to this many times that (levels are halvings)
# A candidate face is confirmed on its own upright patch (the box at CONFIRM_SIDE px, with context
# around it) by three different frontal cascades, each at fine scale steps: real faces give each
# of them dozens of overlapping hits there, the face-like patterns of textures and text a few.
# One with few hits must also pass CONFIRM_STRICT (bench/detect.py: 0.41 false faces per
# face-free image without the confirmation, 0.025 with it, at the same recall).
CONFIRM_CASCADES = (
    "haarcascade_frontalface_default.xml",
    "haarcascade_frontalface_alt.xml",
    "haarcascade_frontalface_alt2.xml",
)
CONFIRM_STRICT = "haarcascade_frontalface_alt_tree.xml"
CONFIRM_SIDE = 64


@dataclass(frozen=True)
class DetectorConfig:
    """What the face detector searches. The fields with `help` are the user's settings (CLI flags
    of `predict`, controls on the Predict page); the others tune the cascade."""

    min_face: int = field(
        default=0,
        metadata={
            "help": "smallest face searched, in pixels of the photo (0: automatic, "
            f"{MIN_FACE_FRAC:.0%} of the photo's shorter side, at least {MIN_FACE_PX} px)"
        },
    )
    max_tilt: float = field(
        default=30.0,
        metadata={
            "help": "rotation search: faces tilted up to this many degrees either way are found "
            f"and cropped upright, from {TILT_MIN_FACE:g} x the smallest face size (0: upright "
            "faces only; faster)"
        },
    )
    min_face_frac: float = MIN_FACE_FRAC
    work_face: int = WORK_FACE_PX
    tilt_step: float = TILT_STEP
    level_range: float = LEVEL_RANGE
    # equalise the copy's histogram first (the webcam's old setting). The cascade normalises
    # each window's contrast itself; equalising the whole photo washed out the faces on bright
    # backgrounds (bench/detect.py: 1920x1080, 120-px faces, recall 94% with it, 100% without)
    equalize: bool = False
    scale_factor: float = 1.1  # the cascade's pyramid step
    tilt_scale_factor: float = 1.2  # its step on the turned copies (coarser: faster)
    tilt_min_face: float = TILT_MIN_FACE
    min_neighbors: int = 3
    # hits each CONFIRM_CASCADES cascade must give a face on its patch; below 2.5x that,
    # CONFIRM_STRICT must find it too (0: no confirmation)
    confirm: int = 10
    # 0: detect at the resolution `min_face` needs. Else (the webcam) on one copy at most this
    # long, for faces down to 5% of its shorter side: fast, but small faces are lost.
    max_side: int = 0
    cascade: str = "haarcascade_frontalface_default.xml"

    def __post_init__(self) -> None:
        if not self.min_face >= 0:
            raise ImageError(f"min_face is {self.min_face}: 0 (automatic) or a size in pixels")
        if not 0 <= self.max_tilt <= 90:
            raise ImageError(f"max_tilt is {self.max_tilt}: 0 to 90 degrees")


_local = threading.local()


def _cascade(name: str):
    """One loaded cascade per file and thread (detectMultiScale is not thread-safe)."""
    import cv2.data  # explicit: cv2's stubs do not declare the data submodule

    cache = _local.__dict__.setdefault("cascades", {})
    if name not in cache:
        path = Path(cv2.data.haarcascades) / name
        if not path.exists():
            raise ImageError(
                f"OpenCV's Haar cascade {name} is missing (opencv-python-headless 5.x ships "
                "none); install opencv-python-headless<5"
            )
        cascade = cv2.CascadeClassifier(str(path))
        if cascade.empty():
            raise ImageError(f"cannot load the Haar cascade at {path}")
        cache[name] = cascade
    return cache[name]


def rotate_image(image: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """The image turned `angle` degrees counter-clockwise on a canvas that holds all of it (the
    new corners filled with the mean grey), and the (2, 3) affine map from image to canvas."""
    import cv2

    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = math.ceil(h * sin + w * cos), math.ceil(h * cos + w * sin)
    m[0, 2] += (nw - w) / 2
    m[1, 2] += (nh - h) / 2
    fill = float(image.mean()) if image.size else 0.0
    out = cv2.warpAffine(
        image, m, (nw, nh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=fill
    )
    return out, m


def box_from_rotated(box: tuple, m: np.ndarray, angle: float, scale: float = 1.0) -> Box:
    """A box (x, y, w, h) found in `rotate_image(image, angle)` (whose map is m), in the image's
    own coordinates divided by `scale` (the image was a copy scaled by it): an upright face in
    the turned copy is a face turned by -angle in the photo."""
    import cv2

    x, y, w, h = box
    back = cv2.invertAffineTransform(m)
    cx, cy = back @ np.array([x + w / 2, y + h / 2, 1.0])
    w, h = w / scale, h / scale
    return Box(round(cx / scale - w / 2), round(cy / scale - h / 2), round(w), round(h), -angle)


def pyramid(image: np.ndarray, largest: int) -> list[np.ndarray]:
    """The image and its halvings (area-averaged), until a face `largest` px wide fills the
    shorter side. The cascade's own pyramid shrinks by interpolation, which aliases a large face;
    here each face is searched at a size near the cascade's in one of the levels."""
    import cv2

    levels = [image]
    while min(levels[-1].shape[:2]) > largest:
        h, w = levels[-1].shape[:2]
        levels.append(cv2.resize(levels[-1], (w // 2, h // 2), interpolation=cv2.INTER_AREA))
    return levels


def tilt_angles(max_tilt: float, step: float = TILT_STEP) -> list[float]:
    """The rotated copies searched: 0, then +-step, +-2 step, ... while within max_tilt + ~12
    degrees (the upright cascade's own tolerance)."""
    angles = [0.0]
    k = 1
    while max_tilt > 0 and (k - 1) * step + step / 2 < max_tilt:
        angles += [k * step, -k * step]
        k += 1
    return angles


def _overlap(a: Box, b: Box) -> float:
    """Intersection over the smaller box (of the rectangles as if upright): a face found in two
    rotated copies, or a smaller box inside a face, counts as the same face."""
    ix = max(0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    iy = max(0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    smaller = min(a.w * a.h, b.w * b.h)
    return ix * iy / smaller if smaller else 0.0


def merge_boxes(
    found: list[tuple[Box, float]],
    overlap: float = 0.5,
    accept: Callable[[Box], bool] | None = None,
) -> list[Box]:
    """Non-maximum suppression over (box, score) from every scale and rotation: the best-scored
    box of each face that `accept` takes wins, boxes that overlap it (`_overlap` > overlap) are
    dropped. A box that `accept` refuses suppresses nothing."""
    kept: list[Box] = []
    for box, _score in sorted(found, key=lambda bs: -bs[1]):
        if all(_overlap(box, k) <= overlap for k in kept) and (accept is None or accept(box)):
            kept.append(box)
    return kept


class FaceDetector:
    """OpenCV's frontal-face Haar cascade over the whole photo: on a copy scaled so that the
    smallest face searched is WORK_FACE_PX wide (large photos are not shrunk to a thumbnail) and
    its area-averaged halvings for larger faces, on turned copies for tilted heads (from
    TILT_MIN_FACE x the smallest face); boxes merged
    across scales and rotations, each confirmed by more cascades on its upright patch.
    Thread-safe (one cascade per thread)."""

    def __init__(self, config: DetectorConfig | None = None, **overrides) -> None:
        self.config = replace(config or DetectorConfig(), **overrides)
        _cascade(self.config.cascade)  # fail now, not on the first photo, if it is missing

    def working_scale(self, shape: tuple[int, ...]) -> tuple[float, int]:
        """(scale of the copy the cascade sees, its minSize in that copy) for an image shape."""
        h, w = shape[:2]
        c = self.config
        if c.max_side:
            scale = min(1.0, c.max_side / max(h, w))
            return scale, max(20, int(min(h, w) * scale * 0.05))
        min_face = c.min_face or max(MIN_FACE_PX, round(c.min_face_frac * min(h, w)))
        scale = min(1.0, c.work_face / min_face)
        # minSize a little under the smallest face, so that one at exactly min_face is seen
        # at the pyramid levels on both sides of its size
        return scale, max(HAAR_WINDOW, round(0.8 * min_face * scale))

    def detect(self, gray: np.ndarray) -> list[Box]:
        """Boxes of every face in a (H, W) uint8 image, largest first."""
        import cv2

        c = self.config
        h, w = gray.shape[:2]
        scale, min_size = self.working_scale(gray.shape)
        small = gray
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            small = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        if min(small.shape[:2]) < min_size:
            return []
        if c.equalize:
            small = cv2.equalizeHist(small)
        cascade = _cascade(c.cascade)
        found: list[tuple[Box, float]] = []
        # each level finds faces of LEVEL_FACE (the first: min_size) to `largest` px, the last
        # any larger: a face is seen at 1.5-4 times the cascade's window in one of them
        largest = round(c.level_range * max(min_size, LEVEL_FACE))
        levels = [small] if c.max_side else pyramid(small, largest)
        for k, level in enumerate(levels):
            lo = min_size if k == 0 else LEVEL_FACE
            hi = largest if k < len(levels) - 1 else 0
            level_scale = scale * level.shape[1] / small.shape[1]
            for angle in tilt_angles(0.0 if c.max_side else c.max_tilt, c.tilt_step):
                smallest = lo if angle == 0 or k else round(c.tilt_min_face * lo)
                if hi and smallest > hi:
                    continue
                turned, m = (level, None) if angle == 0 else rotate_image(level, angle)
                boxes, neighbours = cascade.detectMultiScale2(
                    turned,
                    scaleFactor=c.scale_factor if angle == 0 else c.tilt_scale_factor,
                    minNeighbors=c.min_neighbors,
                    minSize=(smallest, smallest),
                    maxSize=(hi, hi),
                )
                for b, n in zip(boxes, neighbours):
                    if m is None:
                        box = Box(*(round(v / level_scale) for v in b))
                    else:
                        box = box_from_rotated(tuple(b), m, angle, level_scale)
                    found.append((box, float(n)))
        accept = (lambda b: confirmed(gray, b, c.confirm)) if c.confirm else None
        boxes = merge_boxes(found, accept=accept)
        return sorted(boxes, key=lambda b: -b.w * b.h)


def confirmed(gray: np.ndarray, box: Box, need: int) -> bool:
    """Whether the face in `box` is confirmed on its upright patch: each of CONFIRM_CASCADES
    gives at least `need` hits near its centre, and either 2.5 x that or CONFIRM_STRICT finds
    it too (textures and text that pass three cascades rarely pass that one)."""
    import cv2

    side = round(1.6 * CONFIRM_SIDE)
    patch = cv2.equalizeHist(crop_face(gray, box, scale=1 / 1.6, offset=(0.0, 0.0), size=side))
    fewest = math.inf
    for name in CONFIRM_CASCADES:
        fewest = min(fewest, _hits(patch, name))
        if fewest < need:
            return False  # most candidates end here, after one or two cascades
    return fewest >= 2.5 * need or _hits(patch, CONFIRM_STRICT) > 0


def _hits(patch: np.ndarray, cascade: str) -> int:
    """The most overlapping hits of a cascade on a face near the centre of a confirmation
    patch (face CONFIRM_SIDE px), at fine scale steps."""
    found, hits = _cascade(cascade).detectMultiScale2(
        patch,
        scaleFactor=1.05,
        minNeighbors=1,
        minSize=(CONFIRM_SIDE * 5 // 8, CONFIRM_SIDE * 5 // 8),
        maxSize=(CONFIRM_SIDE * 3 // 2, CONFIRM_SIDE * 3 // 2),
    )
    centre, near = patch.shape[0] / 2, CONFIRM_SIDE / 4
    return max(
        (
            int(n)
            for (x, y, w, h), n in zip(found, hits)
            if abs(x + w / 2 - centre) < near and abs(y + h / 2 - centre) < near
        ),
        default=0,
    )


def webcam_detector() -> FaceDetector:
    """Faster settings for live video: one 320-px copy, coarser scale steps, no rotation search
    (~15 ms per 640x480 frame)."""
    return FaceDetector(
        DetectorConfig(scale_factor=1.2, min_neighbors=4, max_side=320, confirm=0, equalize=True)
    )


def crop_face(
    gray: np.ndarray,
    box: Box | None,
    scale: float = FRAME_SCALE,
    offset: tuple[float, float] = (FRAME_DX, FRAME_DY),
    size: int = FACE_SIZE,
) -> np.ndarray:
    """The size x size input for the face in `box`: the square frame around it in which the box
    has side `scale` and its centre sits `offset` (in frame sides) from the frame's centre, as on
    FER2013's faces. A turned box (angle != 0) is cropped upright: the frame turns with the face.
    With box None, the centred square of the whole image (a face crop). The frame is edge-padded
    where it leaves the image."""
    import cv2

    h, w = gray.shape[:2]
    if box is not None and box.angle:
        return _crop_turned(gray, box, scale, offset, size)
    if box is None:
        side = min(h, w)
        cx, cy = w / 2, h / 2
        if max(h, w) <= 2 * side:  # a face crop: keep all of it (pad, do not cut)
            side = max(h, w)
    else:
        side = max(box.w, box.h) / scale
        cx = box.x + box.w / 2 - offset[0] * side
        cy = box.y + box.h / 2 - offset[1] * side
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    x1, y1 = x0 + round(side), y0 + round(side)
    pad = max(0, -x0, -y0, x1 - w, y1 - h)
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0, x1, y1 = x0 + pad, y0 + pad, x1 + pad, y1 + pad
    crop = gray[y0:y1, x0:x1]
    interpolation = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interpolation)


def _crop_turned(
    gray: np.ndarray, box: Box, scale: float, offset: tuple[float, float], size: int
) -> np.ndarray:
    """crop_face for a turned box: the frame is sampled along the face's own axes at full
    resolution (only the frame's pixels), then resized like an upright crop."""
    import cv2

    side = max(box.w, box.h) / scale
    (rx, ry), (dx, dy) = box.axes()
    cx, cy = box.centre
    cx -= (offset[0] * rx + offset[1] * dx) * side
    cy -= (offset[0] * ry + offset[1] * dy) * side
    n = max(1, round(side))
    # patch pixel (u, v) samples the image at centre + (u - (n-1)/2) right + (v - (n-1)/2) down,
    # in pixel-centre coordinates (hence the -0.5)
    half = (n - 1) / 2
    m = np.array(
        [
            [rx, dx, cx - 0.5 - half * (rx + dx)],
            [ry, dy, cy - 0.5 - half * (ry + dy)],
        ]
    )
    patch = cv2.warpAffine(
        gray,
        m,
        (n, n),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    interpolation = cv2.INTER_AREA if n > size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interpolation)
