"""Face detection on FER faces pasted into generated scenes, image decoding, and the predictor."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from fer_core.errors import ImageError
from fer_core.models.checkpoint import save_checkpoint
from fer_core.models.networks import build_model
from fer_core.predict import Predictor
from fer_core.vision.faces import Box, FaceDetector, crop_face, load_image


def scene_with_face(face48: np.ndarray, size=160, at=(200, 120), shape=(480, 640)) -> np.ndarray:
    """A smooth generated background (gradient + soft shapes) with a FER face scaled in."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    scene = (80 + 60 * xx / w + 30 * np.sin(yy / 50.0)).astype(np.uint8)
    cv2.circle(scene, (560, 80), 40, 200, -1)
    cv2.rectangle(scene, (20, 380), (160, 460), 40, -1)
    x, y = at
    scene[y : y + size, x : x + size] = cv2.resize(
        face48, (size, size), interpolation=cv2.INTER_CUBIC
    )
    return scene


def iou(a: Box, b: Box) -> float:
    ix = max(0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    iy = max(0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    inter = ix * iy
    return inter / (a.w * a.h + b.w * b.h - inter)


def test_detects_fer_faces_pasted_into_a_scene(csv_data):
    faces = csv_data.split("public_test").images[:40]
    detector = FaceDetector()
    found = 0
    for i, face in enumerate(faces):
        at = (60 + (i * 37) % 400, 40 + (i * 53) % 260)
        boxes = detector.detect(scene_with_face(face, at=at))
        truth = Box(at[0], at[1], 160, 160)
        if boxes and max(iou(b, truth) for b in boxes) > 0.4:
            found += 1
        # nothing is ever reported far from the face on the smooth background
        assert all(iou(b, truth) > 0.1 for b in boxes)
    assert found >= 12, f"only {found}/40 pasted FER faces detected"


def test_empty_scene_has_no_face():
    assert FaceDetector().detect(np.full((480, 640), 128, np.uint8)) == []


def test_crop_face_pads_and_resizes():
    gray = np.arange(100 * 100, dtype=np.uint32).reshape(100, 100).astype(np.uint8)
    crop = crop_face(gray, Box(80, 80, 30, 30))  # runs off the image: edge-padded
    assert crop.shape == (48, 48) and crop.dtype == np.uint8
    whole = crop_face(np.full((48, 48), 7, np.uint8), None)
    assert (whole == 7).all()


def _encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_load_image_modes_and_exif():
    rgb = Image.new("RGB", (40, 20), (255, 0, 0))
    assert load_image(_encode(rgb, "PNG")).shape == (20, 40, 3)
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert (load_image(_encode(rgba, "PNG")) == 255).all()  # transparent -> white
    assert load_image(_encode(Image.new("P", (8, 8)), "PNG")).shape == (8, 8, 3)
    assert load_image(_encode(Image.new("CMYK", (8, 8)), "JPEG")).shape == (8, 8, 3)
    sixteen = Image.fromarray(np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    out = load_image(_encode(sixteen, "PNG"))
    assert out.dtype == np.uint8 and out.max() == round(63000 / 257) and out.min() == 0
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    rotated = load_image(_encode(Image.new("RGB", (40, 20)), "JPEG", exif=exif))
    assert rotated.shape == (40, 20, 3)


@pytest.mark.parametrize(
    "blob, message",
    [
        (b"", "empty"),
        (b"hello world", "not a readable"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 20, "not a readable"),
    ],
)
def test_load_image_errors(blob, message):
    with pytest.raises(ImageError, match=message):
        load_image(blob)


def test_decompression_bomb_is_refused():
    header = _encode(Image.new("L", (1, 1)), "PNG")
    # Patch the IHDR size to 100000 x 100000 (the CRC is wrong, but the size check comes first).
    bomb = header[:16] + (100000).to_bytes(4, "big") * 2 + header[24:]
    with pytest.raises(ImageError, match=r"pixels|not a readable"):
        load_image(bomb)


@pytest.fixture(scope="module")
def tiny_predictor(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "small.pt"
    save_checkpoint(path, build_model("small").eval(), "small", mean=0.5, std=0.25)
    return Predictor.from_checkpoint(path)


def test_predictor_on_scene_and_crop(csv_data, tiny_predictor):
    face = csv_data.split("public_test").images[0]
    faces = tiny_predictor.predict_array(scene_with_face(face, at=(200, 120)))
    for f in faces:
        assert set(f.probs) == set(tiny_predictor.classes)
        assert abs(sum(f.probs.values()) - 1) < 1e-4 and f.label == max(f.probs, key=f.probs.get)
    crop = tiny_predictor.predict_array(face, detect=False)
    assert len(crop) == 1 and crop[0].box is None and crop[0].crop.shape == (48, 48)
    assert np.array_equal(crop[0].crop, face)  # a 48x48 crop reaches the model unchanged


def test_predict_frames_batches(csv_data, tiny_predictor):
    face = csv_data.split("public_test").images[0]
    frames = [scene_with_face(face), np.full((480, 640), 90, np.uint8)]
    out = tiny_predictor.predict_frames(frames)
    assert len(out) == 2 and out[1] == []


def test_whole_image_prediction_never_loads_the_detector(tiny_predictor):
    """--no-detect and "treat each image as one face" must work where OpenCV has no cascades."""
    predictor = type(tiny_predictor)(tiny_predictor.ckpt)
    predictor.predict_array(np.full((48, 48), 120, np.uint8), detect=False)
    assert predictor._detector is None
    predictor.predict_array(np.full((120, 160), 120, np.uint8))
    assert predictor._detector is not None


def test_faces_are_numbered_left_to_right(csv_data, tiny_predictor):
    from fer_core.predict import in_reading_order
    from fer_core.vision.draw import annotate

    faces = csv_data.split("public_test").images
    scene = scene_with_face(faces[0], size=200, at=(420, 120))  # the larger face on the right
    scene[150:280, 60:190] = cv2.resize(faces[1], (130, 130), interpolation=cv2.INTER_CUBIC)
    found = tiny_predictor.predict_array(scene)
    assert len(found) == 2 and found[0].box.x > found[1].box.x  # largest first
    ordered = in_reading_order(found)
    assert [f.box.x for f in ordered] == sorted(f.box.x for f in found)
    drawn = annotate(np.dstack([scene] * 3), ordered, tags=["1", "2"])
    assert drawn.shape == (480, 640, 3) and not np.array_equal(drawn[..., 0], scene)
