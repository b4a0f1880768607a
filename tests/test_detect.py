"""The photo face detector: FER faces scaled up, turned and several to a scene, at known places.

Faces are PublicTest faces that the photo detector finds on their own in a small scene, so these
tests measure what the detector adds (scale, rotation, merging), not how detectable a face is.
"""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from fer_core.errors import FerError
from fer_core.labels import CLASSES
from fer_core.models.checkpoint import save_checkpoint
from fer_core.models.networks import build_model
from fer_core.predict import FacePrediction, Predictor
from fer_core.vision.draw import annotate
from fer_core.vision.faces import (
    FRAME_DY,
    FRAME_SCALE,
    Box,
    DetectorConfig,
    FaceDetector,
    box_from_rotated,
    crop_face,
    merge_boxes,
    rotate_image,
    tilt_angles,
    webcam_detector,
)


def background(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A smooth generated scene: gradient, waves, a few flat shapes and a line of text."""
    h, w = shape
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    scene = (70 + 80 * xx / w + 25 * np.sin(yy / (h / 9.0))).astype(np.uint8)
    for _ in range(6):
        x, y = int(rng.integers(w)), int(rng.integers(h))
        r = int(rng.integers(h // 40, h // 12))
        cv2.circle(scene, (x, y), r, int(rng.integers(256)), -1)
    cv2.putText(scene, "FER Studio 2024", (w // 20, h - h // 20), 0, h / 500, 30, max(1, h // 250))
    return scene


def paste(scene: np.ndarray, face48: np.ndarray, centre, side: int, angle: float = 0.0) -> Box:
    """Paste a FER face scaled to side px, turned angle degrees counter-clockwise, centred at
    `centre`; returns where the detector's box should be (FER's framing, turned with it). The
    face's edge pixels are spread a quarter side around it, so that it has surroundings as in a
    photo rather than the hard edges of a pasted square."""
    big = cv2.resize(face48, (side, side), interpolation=cv2.INTER_CUBIC)
    pad = side // 4
    big = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    half = side / 2 + pad
    m = cv2.getRotationMatrix2D((half, half), angle, 1.0)
    m[0, 2] += centre[0] - half
    m[1, 2] += centre[1] - half
    h, w = scene.shape
    warped = cv2.warpAffine(big, m, (w, h), flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(np.full_like(big, 255), m, (w, h), flags=cv2.INTER_NEAREST)
    scene[mask > 0] = warped[mask > 0]
    a = math.radians(angle)  # the box centre sits FRAME_DY above the frame's, along the face
    cx = centre[0] + FRAME_DY * side * math.sin(a)
    cy = centre[1] + FRAME_DY * side * math.cos(a)
    b = FRAME_SCALE * side
    return Box(round(cx - b / 2), round(cy - b / 2), round(b), round(b), angle)


def matches(found: Box, truth: Box, max_angle: float = 15.0) -> bool:
    (fx, fy), (tx, ty) = found.centre, truth.centre
    return (
        math.hypot(fx - tx, fy - ty) < 0.2 * truth.w
        and 0.75 < found.w / truth.w < 1.33
        and abs(found.angle - truth.angle) <= max_angle
    )


def recall(found: list[Box], truths: list[Box], max_angle: float = 15.0) -> int:
    return sum(any(matches(f, t, max_angle) for f in found) for t in truths)


@pytest.fixture(scope="module")
def faces(csv_data) -> list[np.ndarray]:
    """PublicTest faces the photo detector finds, alone, in a 640x480 scene at 160 px."""
    detector = FaceDetector()
    chosen = []
    for face in csv_data.split("public_test").images[:80]:
        scene = background((480, 640))
        truth = paste(scene, face, (320, 240), 160)
        found = detector.detect(scene)
        if len(found) == 1 and matches(found[0], truth):
            chosen.append(face)
        if len(chosen) == 8:
            return chosen
    pytest.fail(f"only {len(chosen)} detectable faces among the first 80 PublicTest faces")


def test_small_faces_in_a_12_megapixel_photo(faces):
    """Six 200-px faces in 4000x3000: the old single 400-px copy shrank them to 20 px."""
    scene = background((3000, 4000), seed=1)
    truths = [
        paste(scene, face, (700 + 1300 * (i % 3), 800 + 1400 * (i // 3)), 200)
        for i, face in enumerate(faces[:6])
    ]
    found = FaceDetector().detect(scene)
    assert recall(found, truths) >= 5
    assert all(any(matches(b, t) for t in truths) for b in found)  # nothing else is boxed
    before = FaceDetector(max_side=400, min_neighbors=5, confirm=0, equalize=True).detect(scene)
    assert recall(before, truths) <= 2


def test_tilted_faces_are_found_at_their_angle(faces):
    scene = background((960, 1280), seed=2)
    angles = [30, -30, 20, -20, 30, -25]
    truths = [
        paste(scene, face, (220 + 420 * (i % 3), 250 + 460 * (i // 3)), 180, a)
        for i, (face, a) in enumerate(zip(faces, angles))
    ]
    found = FaceDetector().detect(scene)
    # turned copies are searched every 25 degrees: a face at 20 may be found at 0 or 25
    assert recall(found, truths, max_angle=20) >= 5
    for truth in truths:
        for box in found:
            if abs(truth.angle) == 30 and matches(box, truth):
                assert box.angle == math.copysign(25, truth.angle)  # turned the right way
    upright = FaceDetector(max_tilt=0).detect(scene)
    assert recall(upright, truths, max_angle=90) <= 3  # the rotation search finds the rest


def test_turned_copies_search_from_one_and_a_half_times_the_smallest_face(faces):
    """In a 640x480 photo the smallest face searched is 24 px; tilted faces are searched from
    36 px (TILT_MIN_FACE). 30-px faces tilted 30 degrees are found only by the slower search that
    turns its copies down to the smallest face (tilt_min_face=1)."""
    default, everywhere = FaceDetector(), FaceDetector(tilt_min_face=1.0)
    found_default = found_everywhere = 0
    for i in range(8):
        scene = background((480, 640), seed=10 + i)
        truths = [
            paste(scene, faces[(3 * i + j) % len(faces)], (120 + 200 * j, 240), 30, 30 * (-1) ** j)
            for j in range(3)
        ]
        found_default += recall(default.detect(scene), truths, max_angle=20)
        found_everywhere += recall(everywhere.detect(scene), truths, max_angle=20)
    assert found_default == 0 and found_everywhere >= 3


def test_a_turned_face_is_cropped_upright(faces):
    """The crop of a turned face's box is the crop of the same face upright."""
    upright = background((480, 640))
    box = paste(upright, faces[0], (320, 240), 160)
    reference = crop_face(upright, box).astype(float).ravel()

    def likeness(crop: np.ndarray) -> float:
        return float(np.corrcoef(crop.astype(float).ravel(), reference)[0, 1])

    for angle in (30, -30):
        turned = background((480, 640))
        truth = paste(turned, faces[0], (320, 240), 160, angle)
        assert likeness(crop_face(turned, truth)) > 0.97
        plain = likeness(crop_face(turned, Box(truth.x, truth.y, truth.w, truth.h)))
        assert plain < 0.5  # cropped without turning, it is another picture
        (found,) = [b for b in FaceDetector().detect(turned) if matches(b, truth)]
        assert likeness(crop_face(turned, found)) > plain + 0.1  # found 5 degrees off


def test_rotated_boxes_map_back_to_the_photo():
    """A box found in a turned, scaled copy lands on the same spot of the photo."""
    image = np.zeros((300, 500), np.uint8)
    cv2.rectangle(image, (300, 60), (379, 139), 255, -1)  # an 80 px square centred (340, 100)
    for scale in (1.0, 0.5):
        small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        for angle in (25.0, -50.0):
            turned, m = rotate_image(small, angle)
            ys, xs = np.nonzero(turned > 128)
            cx, cy = (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2
            side = 80 * scale
            box = box_from_rotated((cx - side / 2, cy - side / 2, side, side), m, angle, scale)
            assert abs(box.centre[0] - 340) <= 2 and abs(box.centre[1] - 100) <= 2
            assert box.w == 80 and box.angle == -angle


def test_box_corners_and_drawing():
    box = Box(100, 100, 100, 60, 90.0)  # turned a quarter counter-clockwise about (150, 130)
    corners = box.corners()
    assert np.allclose(corners[0], (120, 180)) and np.allclose(corners[2], (180, 80))
    image = np.full((300, 300, 3), 255, np.uint8)
    probs = {c: 0.1 for c in CLASSES} | {"happy": 0.4}
    face = FacePrediction(Box(100, 100, 100, 100, 45.0), probs, "happy", image[:48, :48, 0])
    out = annotate(image, [face])
    top = np.round(face.box.corners()[0]).astype(int)  # the turned box's corner is drawn ...
    assert (out[top[1] - 2 : top[1] + 3, top[0] - 2 : top[0] + 3] != 255).any()
    assert (out[198:203, 198:203] == 255).all()  # ... the upright box's corner is not


def test_merge_keeps_the_best_box_of_each_face():
    a, b, c = Box(0, 0, 100, 100), Box(10, 5, 100, 100, 25.0), Box(30, 30, 40, 40)
    far = Box(300, 0, 80, 80)
    assert merge_boxes([(a, 5), (b, 9), (c, 3), (far, 4)]) == [b, far]


def test_face_free_scenes_have_no_face():
    detector = FaceDetector()
    for seed, shape in enumerate([(480, 640), (960, 1280), (1080, 1920)]):
        assert detector.detect(background(shape, seed)) == []
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (960, 1280), dtype=np.uint8), (0, 0), 3)
    assert detector.detect(texture) == []


def test_min_face_and_largest(faces, tmp_path):
    scene = background((960, 1280), seed=3)
    big = paste(scene, faces[0], (350, 450), 300)
    small = paste(scene, faces[1], (950, 450), 100)
    assert recall(FaceDetector().detect(scene), [big, small]) == 2
    only_big = FaceDetector(min_face=200).detect(scene)
    assert len(only_big) == 1 and matches(only_big[0], big)
    path = tmp_path / "small.pt"
    save_checkpoint(path, build_model("small").eval(), "small", mean=0.5, std=0.25)
    predictor = Predictor.from_checkpoint(path)
    assert len(predictor.predict_array(scene)) == 2
    (largest,) = predictor.predict_array(scene, largest=True)
    assert matches(largest.box, big)


def test_predict_cli_options(faces, tmp_path, capsys):
    from fer_core.__main__ import main

    ckpt = tmp_path / "small.pt"
    save_checkpoint(ckpt, build_model("small").eval(), "small", mean=0.5, std=0.25)
    scene = background((480, 640))
    paste(scene, faces[0], (200, 240), 160, 30)
    paste(scene, faces[1], (480, 240), 120)
    photo = tmp_path / "scene.png"
    cv2.imwrite(str(photo), scene)
    base = ["predict", str(photo), "--checkpoint", str(ckpt), "--json"]
    assert main(base) == 0
    record = json.loads(capsys.readouterr().out)
    assert sorted(round(f["angle"]) for f in record["faces"]) == [0, 25]
    assert main([*base, "--largest", "--max-tilt", "0"]) == 0
    (face,) = json.loads(capsys.readouterr().out)["faces"]
    assert face["angle"] == 0 and face["box"][2] < 160
    assert main([*base, "--max-tilt", "120"]) == 1
    assert "max_tilt" in capsys.readouterr().err


def test_settings():
    assert tilt_angles(0) == [0.0] and tilt_angles(10) == [0.0]
    assert tilt_angles(30) == [0.0, 25.0, -25.0]
    assert webcam_detector().config.max_side == 320  # one small copy, upright only: fast
    with pytest.raises(FerError):
        DetectorConfig(min_face=-1)
    with pytest.raises(FerError):
        FaceDetector(max_tilt=91)
