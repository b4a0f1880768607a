"""The real app through Streamlit's AppTest: every page, an upload, a training run started and stopped."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest
from conftest import CSV_PATH, REPO
from PIL import Image
from streamlit.testing.v1 import AppTest
from test_faces_predict import scene_with_face

from fer_core.labels import CLASSES
from fer_core.models.checkpoint import DEFAULT_CHECKPOINT

PAGES = [
    "app_pages/home.py",
    "app_pages/data.py",
    "app_pages/train.py",
    "app_pages/evaluate.py",
    "app_pages/predict.py",
]


@pytest.fixture()
def app_env(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_APP_DIR", str(tmp_path / "app"))
    monkeypatch.setenv("FER_ICE_SERVERS", "[]")
    return tmp_path


def open_page(page: str, data: str | None) -> AppTest:
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=300)
    if data is not None:
        at.session_state["data_path"] = data
    at.run()
    if page != "app_pages/home.py":
        at.switch_page(page)
        at.run()
    return at


def by_label(widgets, label: str):
    for widget in widgets:
        if widget.label == label:
            return widget
    raise AssertionError(f"no widget labelled {label!r}: {[w.label for w in widgets]}")


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [str(m.value) for m in at.metric] + [m.label for m in at.metric]
    return "\n".join(parts)


def test_shipped_model_exists():
    assert DEFAULT_CHECKPOINT.exists(), "the shipped model must be committed in checkpoints/"


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_with_data(app_env, csv_data, page):
    at = open_page(page, str(CSV_PATH))
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_data(app_env, monkeypatch, page):
    monkeypatch.delenv("FER_DATA", raising=False)
    at = open_page(page, None)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_home_shows_model_card_numbers(app_env, csv_data):
    at = open_page("app_pages/home.py", str(CSV_PATH))
    assert "PublicTest accuracy" in texts(at)


def test_evaluate_without_data_shows_stored_evaluation(app_env, monkeypatch):
    monkeypatch.delenv("FER_DATA", raising=False)
    at = open_page("app_pages/evaluate.py", None)
    assert "Stored evaluation" in "\n".join(s.value for s in at.subheader)
    assert "Accuracy" in texts(at)


def test_evaluate_button_computes_metrics_and_mistakes(app_env, csv_data):
    at = open_page("app_pages/evaluate.py", str(CSV_PATH))
    assert any("stored with this model" in i.value for i in at.info)
    by_label(at.button, "▶ Evaluate").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Accuracy" in texts(at) and "Mistakes" in [s.value for s in at.subheader]
    assert any("predicted as" in c.value for c in at.caption)  # a confusion cell's mistakes
    # the finished evaluation is kept on disk: another session (or a restart) shows it at once
    assert len(list((app_env / "app" / "evaluations").glob("*.json"))) == 1
    again = open_page("app_pages/evaluate.py", str(CSV_PATH))
    assert not again.exception
    assert "Mistakes" in [s.value for s in again.subheader]
    assert not any("stored with this model" in i.value for i in again.info)
    # the largest confusion cell holds more than one page of faces: page 2 shows the next 24
    pager = next(n for n in again.number_input if n.label.startswith("Page (of "))
    pager.set_value(2)
    again.run()
    assert not again.exception
    assert any("25-48 shown" in c.value for c in again.caption)


def matrix_chart(at: AppTest):
    """The Evaluate page's confusion-matrix element and its Plotly figure."""
    for chart in at.get("plotly_chart"):
        figure = json.loads(chart.proto.spec)
        if any(trace["type"] == "heatmap" for trace in figure["data"]):
            return chart, figure
    raise AssertionError("no confusion matrix on the page")


def marked_cell(at: AppTest) -> tuple[str, str] | None:
    """(true, predicted) of the cell outlined on the confusion matrix."""
    figure = matrix_chart(at)[1]
    classes = next(t["x"] for t in figure["data"] if t["type"] == "heatmap")
    shapes = figure["layout"].get("shapes", [])
    if not shapes:
        return None
    (shape,) = shapes
    row, col = round((shape["y0"] + shape["y1"]) / 2), round((shape["x0"] + shape["x1"]) / 2)
    return classes[row], classes[col]


def click_cell(at: AppTest, true: str, pred: str) -> None:
    """Rerun with the selection event Streamlit's frontend sends for a click on a confusion cell
    (AppTest cannot click a Plotly chart; tests/test_browser_evaluate.py clicks a real one)."""
    chart, _ = matrix_chart(at)
    states = at._tree.get_widget_states()
    state = states.widgets.add()
    state.id = chart.proto.id
    point = {"curve_number": 1, "x": pred, "y": true}
    selection = {"points": [point], "point_indices": [], "box": [], "lasso": []}
    state.string_value = json.dumps({"selection": selection})
    at._run(states)


def browsed_cell(at: AppTest) -> tuple[str, str]:
    return by_label(at.selectbox, "True class").value, by_label(at.selectbox, "Predicted as").value


def image_captions(at: AppTest) -> list[str]:
    return [caption for image in at.image for caption in image.captions]


def test_confusion_matrix_clicks_and_dropdowns_pick_the_same_cell(app_env, csv_data):
    """A click on a cell shows its mistakes and outlines it; the dropdowns follow the click and
    move the outline; a diagonal cell is explained; a face opens large with its saliency."""
    at = open_page("app_pages/evaluate.py", str(CSV_PATH))
    by_label(at.selectbox, "Test-time augmentation").set_value("none")
    by_label(at.button, "▶ Evaluate").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert marked_cell(at) == browsed_cell(at)  # at first the cell with the most mistakes
    click_cell(at, "fear", "sad")
    assert not at.exception, [e.value for e in at.exception]
    assert browsed_cell(at) == ("fear", "sad") == marked_cell(at)
    assert any("of class **fear** predicted as **sad**" in c.value for c in at.caption)
    by_label(at.selectbox, "Predicted as").set_value("neutral").run()
    assert browsed_cell(at) == ("fear", "neutral") == marked_cell(at)
    assert any("of class **fear** predicted as **neutral**" in c.value for c in at.caption)
    click_cell(at, "happy", "happy")
    assert marked_cell(at) == ("happy", "happy")
    assert any("predicted right" in i.value for i in at.info)
    click_cell(at, "sad", "fear")
    assert browsed_cell(at) == ("sad", "fear")
    assert sum("saliency for" in c for c in image_captions(at)) == 0
    at.button(key=next(b.key for b in at.button if b.key and "_zoom_" in b.key)).click().run()
    assert not at.exception, [e.value for e in at.exception]
    captions = image_captions(at)
    assert any("saliency for fear" in c for c in captions), captions
    assert any("saliency for sad" in c for c in captions), captions


def test_bad_dataset_path_is_a_friendly_error(app_env):
    at = open_page("app_pages/data.py", "/nonexistent/fer2013.csv")
    assert not at.exception
    assert any("not found" in e.value for e in at.error)


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_upload_gives_predictions(app_env, csv_data):
    at = open_page("app_pages/predict.py", None)
    face = csv_data.split("public_test").images[0]
    uploader = at.file_uploader[0]
    uploader.set_value(
        [
            ("scene.png", _png(scene_with_face(face)), "image/png"),
            ("junk.png", b"not an image at all", "image/png"),
        ]
    )
    at.run()
    assert not at.exception
    body = texts(at)
    assert "scene.png" in body
    assert any(f"{c}**" in body for c in CLASSES), body  # a face labelled with its emotion
    assert any("junk.png" in e.value and "not a readable image" in e.value for e in at.error)


def test_upload_as_face_crop(app_env, csv_data):
    at = open_page("app_pages/predict.py", None)
    by_label(at.toggle, "Treat each image as one face").set_value(True)
    at.run()
    crop = csv_data.split("public_test").images[5]
    at.file_uploader[0].set_value(("crop.png", _png(crop), "image/png"))
    at.run()
    assert not at.exception
    assert sum(f"{c}**" in m.value for m in at.markdown for c in CLASSES) == 1  # exactly one face


def test_tiny_training_run_starts_reports_progress_and_stops(app_env, csv_data):
    at = open_page("app_pages/train.py", str(CSV_PATH))
    by_label(at.number_input, "Epochs").set_value(50)
    by_label(at.number_input, "Training subset (images)").set_value(600)
    by_label(at.selectbox, "Device").set_value("cpu")
    by_label(at.button, "▶ Start training").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Training started" in s.value for s in at.success)
    # progress: wait until at least one epoch has finished and shows in the live view
    deadline = time.time() + 240
    while time.time() < deadline:
        at.run()
        if "Epochs done" in texts(at) and not any(m.value.startswith("0/") for m in at.metric):
            break
        time.sleep(1)
    assert "Epochs done" in texts(at), texts(at)
    assert at.get("progress"), "a progress bar is shown while training"
    # a second start is refused while the first runs
    by_label(at.button, "▶ Start training").click()
    at.run()
    assert any("already in progress" in w.value for w in at.warning)
    by_label(at.button, "⏹ Stop").click()
    at.run()
    deadline = time.time() + 120
    while time.time() < deadline and "Stopped" not in texts(at):
        time.sleep(1)
        at.run()
    assert "Stopped" in texts(at)
    runs = list((app_env / "app" / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "best.pt").exists() and (runs[0] / "history.json").exists()


def _tiny_archive(tmp_path):
    """A folder archive with Training and PublicTest faces only (no PrivateTest)."""
    from conftest import face_pixels, write_archive

    files = {f"train/{c}/Training_{i}{j}.png": face_pixels(10 * i + j)
             for i, c in enumerate(CLASSES) for j in range(2)}  # fmt: skip
    files.update(
        {f"test/{c}/PublicTest_{i}.png": face_pixels(100 + i) for i, c in enumerate(CLASSES)}
    )
    return write_archive(tmp_path / "archive", files, as_zip=True)


def _run_with_best(root, name: str) -> None:
    from fer_core.models.checkpoint import save_checkpoint
    from fer_core.models.networks import build_model
    from fer_core.training.runs import write_json_atomic

    run = root / "runs" / name
    run.mkdir(parents=True)
    write_json_atomic(run / "run.json", {"arch": "small", "status": "finished",
                                         "train_config": {"epochs": 1}})  # fmt: skip
    write_json_atomic(run / "history.json", [{"epoch": 1, "val_acc": 0.3, "val_macro_f1": 0.2}])
    save_checkpoint(run / "best.pt", build_model("small"), "small", mean=0.5, std=0.25,
                    metrics={"val_acc": 0.3, "val_split": "public_test"})  # fmt: skip


def test_make_active_shows_the_new_model_in_the_sidebar_at_once(app_env, monkeypatch):
    monkeypatch.delenv("FER_DATA", raising=False)
    _run_with_best(app_env / "app", "20990101-000000-small")
    at = open_page("app_pages/train.py", None)
    assert at.sidebar.selectbox[0].value == "Shipped model"
    by_label(at.button, "Make active").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.sidebar.selectbox[0].value.startswith("Run 20990101-000000-small")
    sidebar = "\n".join(c.value for c in at.sidebar.caption)
    assert "small, 0.1M parameters, PublicTest accuracy 30.0%" in sidebar, sidebar
    assert any("is now the active model" in s.value for s in at.success)


def test_sidebar_and_data_page_name_the_real_splits_in_words(app_env, tmp_path):
    at = open_page("app_pages/data.py", str(_tiny_archive(tmp_path)))
    assert not at.exception and not at.error, [e.value for e in at.exception + at.error]
    sidebar = "\n".join(c.value for c in at.sidebar.caption)
    assert "(Training 14 · PublicTest 7)" in sidebar and "test," not in sidebar, sidebar
    assert "PublicTest accuracy" in sidebar  # the shipped model's number, as on Home
    body = texts(at)
    assert "{'" not in body and "': " not in body, body  # no raw dicts on screen


def test_archive_layout_error_keeps_its_asterisks(app_env, tmp_path):
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    at = open_page("app_pages/data.py", str(empty))
    errors = [e.value for e in at.error]
    assert any(r"train/\<class\>/\*.png" in e for e in errors), errors


def test_a_recipe_sets_every_field_of_the_form(app_env, tmp_path):
    at = open_page("app_pages/train.py", str(_tiny_archive(tmp_path)))
    recipe = by_label(at.selectbox, "Start from recipe")
    for name, epochs, arch, weighting in [
        ("seed002", 60, "seed_vgg6_unpadded", "inverse"),
        ("shipped", 180, "fer_vgg", "none"),  # no silent cap at 30 epochs
        ("cpu_default", 15, "small", "none"),
    ]:
        by_label(at.selectbox, "Validation").set_value("0.1 of train")
        by_label(at.number_input, "Training subset (images)").set_value(100)
        at.run()
        recipe = by_label(at.selectbox, "Start from recipe")
        recipe.set_value(name)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert by_label(at.number_input, "Epochs").value == epochs, name
        assert by_label(at.selectbox, "Architecture").value == arch, name
        assert by_label(at.selectbox, "Class weighting").value == weighting, name
        assert by_label(at.selectbox, "Validation").value == "public_test", name


def test_face_detection_options_reach_the_detector(app_env, csv_data):
    """Predict's "Face detection" expander: two faces by default, one with "Only the largest face"
    (the larger), and the turned face only with the rotation search on."""
    import cv2

    faces = csv_data.split("public_test").images
    scene = scene_with_face(faces[0], size=200, at=(40, 120))
    scene[150:280, 420:550] = cv2.resize(faces[1], (130, 130), interpolation=cv2.INTER_CUBIC)
    at = open_page("app_pages/predict.py", None)
    at.file_uploader[0].set_value(("two.png", _png(scene), "image/png"))
    at.run()
    labelled = lambda: sum(f"{c}**" in m.value for m in at.markdown for c in CLASSES)  # noqa: E731
    assert not at.exception and labelled() == 2
    by_label(at.checkbox, "Only the largest face").set_value(True)
    at.run()
    assert not at.exception and labelled() == 1
    by_label(at.checkbox, "Only the largest face").set_value(False)
    turned = cv2.warpAffine(
        scene_with_face(faces[0], size=200, at=(220, 140)),
        cv2.getRotationMatrix2D((320, 240), 30, 1.0),
        (640, 480),
        borderMode=cv2.BORDER_REPLICATE,
    )
    at.file_uploader[0].set_value(("turned.png", _png(turned), "image/png"))
    by_label(at.select_slider, "Rotation search").set_value(0)
    at.run()
    assert not at.exception and labelled() == 0
    by_label(at.select_slider, "Rotation search").set_value(30)
    at.run()
    assert not at.exception and labelled() == 1


def test_option_changes_redo_only_what_they_change(app_env, csv_data):
    """Predictions are kept per photo and option: saliency reuses them, a new TTA adds one."""
    face = csv_data.split("public_test").images[0]
    at = open_page("app_pages/predict.py", None)
    at.file_uploader[0].set_value(("scene.png", _png(scene_with_face(face)), "image/png"))
    at.run()
    assert not at.exception and len(at.session_state["photo_predictions"]) == 1
    assert not any(c.startswith("What made it say") for c in image_captions(at))
    by_label(at.toggle, "Show saliency").set_value(True)
    at.run()
    assert not at.exception and len(at.session_state["photo_predictions"]) == 1
    assert sum(c.startswith("What made it say") for c in image_captions(at)) == 1  # one face
    assert len(at.session_state["photo_saliency"]) == 1
    by_label(at.selectbox, "Test-time augmentation").set_value("none")
    at.run()
    assert not at.exception and len(at.session_state["photo_predictions"]) == 2
