"""Labelled photo sets, the FER2013 framing of detected faces, and calibrated probabilities."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch
from conftest import REPO, cli, png_bytes, write_archive
from test_app import app_env  # noqa: F401  (fixture)
from test_faces_predict import scene_with_face

from fer_core.calibration import fit_temperature, reliability
from fer_core.data.photos import is_photo_set, read_photo_set
from fer_core.errors import CheckpointError, DataError
from fer_core.evaluate import compute_metrics
from fer_core.labels import CLASSES
from fer_core.models.checkpoint import FAST_CHECKPOINT, load_checkpoint, save_checkpoint
from fer_core.predict import FacePrediction, Predictor
from fer_core.vision.faces import FRAME_DX, FRAME_DY, FRAME_SCALE, FaceDetector, crop_face

REALPHOTOS = REPO.parent / "shared" / "realphotos"


def photo(seed: int, size=(64, 80)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(*size, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------- reading sets


@pytest.mark.parametrize("as_zip", [False, True])
def test_reads_class_synonyms_in_any_case_and_skips_unknown_folders(tmp_path, as_zip):
    files = {
        "set/Anger/a.jpg": photo(0),
        "set/HAPPINESS/b.png": photo(1),
        "set/happy/c.png": photo(2),
        "set/surprised/d.png": photo(3),
        "set/Neutrality/e.png": photo(4),
        "set/contempt/f.png": photo(5),
        "set/contempt/g.png": photo(6),
        "set/unknown/h.png": photo(7),
    }
    root = write_archive(tmp_path / "photos", files, as_zip)
    photos = read_photo_set(root)
    assert [CLASSES[k] for k in photos.labels] == ["angry", "happy", "neutral", "happy", "surprise"]
    assert photos.skipped == {"contempt": 2, "unknown": 1}
    assert photos.class_counts().tolist() == [1, 0, 0, 2, 0, 1, 1]  # empty classes are zeros
    decoded = [(i, img.shape) for i, img, err in photos.images() if not err]
    assert decoded[0] == (0, (64, 80, 3))
    assert is_photo_set(root)


def test_non_images_are_ignored_and_an_undecodable_photo_is_reported(tmp_path):
    root = tmp_path / "p"
    (root / "sad").mkdir(parents=True)
    (root / "sad" / "ok.png").write_bytes(png_bytes(photo(0)[..., 0]))
    (root / "sad" / "broken.jpg").write_bytes(b"not a jpeg at all")
    (root / "sad" / "notes.txt").write_text("ignored")
    (root / "sad" / ".hidden.png").write_bytes(b"x")
    photos = read_photo_set(root)
    assert photos.names == ("sad/broken.jpg", "sad/ok.png")
    results = list(photos.images())
    assert results[0][1] is None and "not a readable image" in results[0][2]
    assert results[1][1] is not None and results[1][2] == ""


def test_a_folder_without_labelled_photos_is_a_clear_error(tmp_path):
    root = write_archive(tmp_path / "x", {"contempt/a.png": photo(0)}, as_zip=False)
    with pytest.raises(DataError, match=r"no labelled photos.*found only contempt"):
        read_photo_set(root)
    with pytest.raises(DataError, match="not found"):
        read_photo_set(tmp_path / "missing")


def test_unsafe_zip_paths_are_refused(tmp_path):
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("../happy/a.png", png_bytes(photo(0)[..., 0]))
    with pytest.raises(DataError, match="unsafe path"):
        read_photo_set(path)


def test_the_fer2013_archive_layout_is_not_a_photo_set(tmp_path):
    files = {"archive/train/happy/Training_1.png": photo(0)[..., 0]}
    files["archive/test/sad/PublicTest_2.png"] = photo(1)[..., 0]
    assert not is_photo_set(write_archive(tmp_path / "fer", files, as_zip=True))
    assert not is_photo_set(tmp_path / "nothing.csv")


# ----------------------------------------------------------------------------- metrics


def test_photos_without_a_face_count_as_wrong_and_sit_in_no_column():
    y = np.array([0, 0, 3, 3])
    probs = np.eye(7)[[0, 0, 3, 0]]  # the last row has no face: its probs say nothing
    found = np.array([True, False, True, False])
    result = compute_metrics(y, probs, found=found, names=["a", "b", "c", "d"])
    assert result.accuracy == 0.5
    assert result.per_class["angry"]["recall"] == 0.5 and result.per_class["angry"]["support"] == 2
    assert np.asarray(result.confusion_matrix).sum() == 2
    assert result.misclassified == []


# ----------------------------------------------------------------------------- framing


def test_a_fer2013_face_in_a_scene_comes_out_framed_like_the_original(csv_data):
    """A face scaled to 150-220 px and pasted anywhere is cropped back with the frame it had:
    the frame's side and centre unbiased within a few percent (medians; single Haar boxes vary
    by about 8%), and closer in pixels than the crop with the old guessed margin (box + 10%)."""
    faces = csv_data.split("public_test").images[:60]
    detector = FaceDetector()
    side_err, centre_err, pixels, old_pixels = [], [], [], []
    for i, face in enumerate(faces):
        size = 150 + (i * 7) % 70
        at = (20 + (i * 37) % (600 - size), 20 + (i * 53) % (440 - size))
        scene = scene_with_face(face, size=size, at=at)
        boxes = detector.detect(scene)
        if not boxes:
            continue
        box = boxes[0]
        side = box.w / FRAME_SCALE
        cx = box.x + box.w / 2 - FRAME_DX * side
        cy = box.y + box.h / 2 - FRAME_DY * side
        side_err.append(side / size - 1)
        centre_err.append(np.hypot(cx - at[0] - size / 2, cy - at[1] - size / 2) / size)
        pixels.append(np.abs(crop_face(scene, box).astype(float) - face).mean())
        old = crop_face(scene, box, scale=1 / 1.2, offset=(0, 0))
        old_pixels.append(np.abs(old.astype(float) - face).mean())
    assert len(pixels) >= 30
    assert abs(np.median(side_err)) < 0.04 and np.median(centre_err) < 0.04
    assert np.median(pixels) < 38, np.median(pixels)  # gray levels of 255; Haar boxes vary
    assert np.median(pixels) < np.median(old_pixels) - 3


# ----------------------------------------------------------------------------- calibration


def test_temperature_fitting_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    logits = torch.from_numpy(rng.normal(0, 3, size=(20000, 7)))
    true_t = 2.5
    probs = torch.softmax(logits / true_t, 1).numpy()
    labels = np.array([rng.choice(7, p=p / p.sum()) for p in probs])
    fitted = fit_temperature(torch.log_softmax(logits, 1), labels)
    assert fitted == pytest.approx(true_t, rel=0.05)


def test_expected_calibration_error_of_known_cases():
    # 10 predictions at 0.9 confidence of which 9 are right: calibrated, ECE 0.
    probs = np.tile([[0.9, 0.1]], (10, 1))
    labels = np.array([0] * 9 + [1])
    assert reliability(probs, labels).ece == pytest.approx(0.0, abs=1e-12)
    # All wrong at 0.9: ECE 0.9.
    assert reliability(probs, np.ones(10, int)).ece == pytest.approx(0.9)
    curve = reliability(probs, labels)
    assert curve.count == [10] and curve.accuracy == [0.9]


def test_stored_temperature_is_used_and_never_changes_the_label(tmp_path):
    ckpt = load_checkpoint(FAST_CHECKPOINT)
    faces = np.random.default_rng(0).integers(0, 256, size=(16, 48, 48), dtype=np.uint8)
    path = tmp_path / "hot.pt"
    save_checkpoint(path, ckpt.model, ckpt.arch, ckpt.arch_kwargs, mean=ckpt.mean, std=ckpt.std,
                    calibration={"temperature": 3.0})  # fmt: skip
    plain = Predictor(load_checkpoint(path)).probabilities(faces, calibrated=False)
    hot = Predictor(load_checkpoint(path)).probabilities(faces)
    assert (plain.argmax(1) == hot.argmax(1)).all()
    assert hot.max(1).mean() < plain.max(1).mean()  # a higher temperature softens
    expected = torch.softmax(torch.log(torch.from_numpy(plain)) / 3.0, 1).numpy()
    np.testing.assert_allclose(hot, expected, atol=1e-5)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), 1e9, "2", True])
def test_an_absurd_stored_temperature_is_refused(tmp_path, bad):
    ckpt = load_checkpoint(FAST_CHECKPOINT)
    path = tmp_path / "bad.pt"
    save_checkpoint(path, ckpt.model, ckpt.arch, ckpt.arch_kwargs, mean=ckpt.mean, std=ckpt.std,
                    calibration={"temperature": bad})  # fmt: skip
    with pytest.raises(CheckpointError, match="temperature"):
        load_checkpoint(path)


def test_uncertain_faces_name_both_classes():
    def face(probs):
        full = dict.fromkeys(CLASSES, 0.0) | probs
        return FacePrediction(None, full, max(full, key=full.get), np.zeros((48, 48), np.uint8))

    assert not face({"happy": 0.8, "sad": 0.2}).uncertain
    close = face({"sad": 0.52, "angry": 0.45})
    assert close.uncertain and close.runner_up == "angry"
    assert face({"fear": 0.4, "sad": 0.2, "angry": 0.2, "surprise": 0.2}).uncertain


def test_shipped_models_carry_a_fitted_temperature():
    for path in (FAST_CHECKPOINT, REPO / "checkpoints" / "fer_model.pt"):
        cal = load_checkpoint(path).calibration
        assert cal["split"] == "public_test" and 0.5 < cal["temperature"] < 3
        assert cal["ece_after"] <= cal["ece_before"]


# ----------------------------------------------------------------------------- the dev photo sets


def _evaluate(*args: str) -> dict:
    done = cli("evaluate", *args, "--json", "--max-mistakes", "3", check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.slow
def test_evaluate_on_the_ckplus48_dev_crops():
    if not (REALPHOTOS / "ckplus48_dev").is_dir():
        pytest.skip(f"the dev photo sets are not here ({REALPHOTOS}); they are read, never copied")
    out = _evaluate("--data", str(REALPHOTOS / "ckplus48_dev"), "--no-detect")
    assert out["n"] == 474 and out["faces_found"] == 474 and out["no_face"] == []
    assert out["accuracy"] > 0.65  # the shipped model: 71.9% (model card)
    assert set(out["calibration"]) >= {"temperature", "ece_before", "ece_after"}


@pytest.mark.slow
def test_evaluate_on_the_taiwanese_dev_photos_detects_faces():
    if not (REALPHOTOS / "taiwanese_dev").is_dir():
        pytest.skip(f"the dev photo sets are not here ({REALPHOTOS}); they are read, never copied")
    out = _evaluate(
        "--data", str(REALPHOTOS / "taiwanese_dev"), "--checkpoint", str(FAST_CHECKPOINT)
    )
    assert out["n"] == 649 and out["faces_found"] >= 640
    assert out["accuracy"] > 0.4
    assert len(out["no_face"]) == out["n"] - out["faces_found"]
    assert out["misclassified"][0]["name"].endswith(".jpg")


def test_info_on_a_photo_set(tmp_path):
    root = write_archive(tmp_path / "p", {"fear/a.png": photo(0), "nope/b.png": photo(1)}, False)
    done = cli("info", "--data", root, "--json", check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["kind"] == "photos" and out["counts"]["fear"] == 1
    assert out["skipped_folders"] == {"nope": 1}
    assert "skipped folders that name no class: nope (1)" in done.stderr


def test_no_detect_on_fer2013_is_a_clear_error(tmp_path):
    done = cli("evaluate", "--data", tmp_path / "x.csv", "--no-detect", check=False)
    assert done.returncode == 1 and done.stderr.startswith("error: --no-detect")


# ----------------------------------------------------------------------------- the app


@pytest.mark.usefixtures("app_env")
def test_evaluate_page_on_a_labelled_photo_folder(csv_data, tmp_path):
    """Labelled photos on the Evaluate page: FER2013 faces scaled into generated scenes, in
    class folders; metrics with faces found, the reliability diagram, and the mistakes' crops."""
    from test_app import by_label, open_page

    test = csv_data.split("public_test")
    files = {}
    for i in range(14):
        label = CLASSES[int(test.labels[i])]
        files[f"photos/{label}/scene_{i}.png"] = scene_with_face(test.images[i], size=170)
    root = write_archive(tmp_path / "set", files, as_zip=False) / "photos"
    at = open_page("app_pages/evaluate.py", None)
    at.radio[0].set_value("Labelled photos").run()
    at.text_input(key="photo_set_path").set_value(str(root)).run()
    assert any("14 photos" in c.value for c in at.caption)
    by_label(at.button, "▶ Evaluate photos").click().run()
    assert not at.exception, [e.value for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Faces found"].endswith("of 14")
    assert "Mistakes" in [s.value for s in at.subheader]
