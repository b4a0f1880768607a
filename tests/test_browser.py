"""A real headless Chromium against a real server: what AppTest cannot reach (charts, webcam)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

# Other test files import the browser helpers from here too (test_browser_video, test_deploy, ...).
from browser import (  # noqa: F401 (re-exported)
    ARGS,
    CHROMIUM,
    ERRORS,
    PAGES,
    REPO,
    open_page,
    serve,
    settle,
    start_server,
    start_training,
)
from conftest import CSV_PATH
from test_faces_predict import scene_with_face

pytestmark = pytest.mark.browser

if not Path(CHROMIUM).exists():
    pytest.fail(
        "Debian's chromium is required for the browser tests (apt-get install chromium)",
        pytrace=False,
    )


def _serve(tmp_path_factory):
    """The app on the real FER2013 CSV, for a fixture: `yield from _serve(tmp_path_factory)`."""
    yield from serve(tmp_path_factory, CSV_PATH)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from _serve(tmp_path_factory)


@pytest.fixture()
def fresh_server(tmp_path_factory):
    """A server of its own, for the webcam: no state or load left by the other tests."""
    yield from _serve(tmp_path_factory)


@pytest.mark.parametrize("path", list(PAGES))
def test_page_loads_without_error(server, browser, path, tmp_path):
    page = open_page(browser, server, path)
    settle(page, 120)
    page.screenshot(path=str(tmp_path / f"{path or 'home'}.png"))
    assert page.locator(ERRORS).count() == 0, page.locator(ERRORS).all_inner_texts()
    if path == "data":
        page.wait_for_selector(".js-plotly-plot", timeout=30_000)  # the imbalance chart renders
    page.context.close()


def test_uploaded_photo_shows_boxes_and_probabilities(server, browser, csv_data, tmp_path):
    photo = tmp_path / "two_faces.png"
    test = csv_data.split("public_test")
    scene = scene_with_face(test.images[0], at=(60, 120))
    scene[120:280, 400:560] = cv2.resize(test.images[1], (160, 160), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(photo), scene)
    page = open_page(browser, server, "predict")
    page.locator("input[type=file]").first.set_input_files(str(photo))
    # the download button appears once the prediction is drawn (the server may still be busy)
    page.get_by_text("Annotated image").first.wait_for(timeout=180_000)
    settle(page)
    page.screenshot(path=str(tmp_path / "predict.png"), full_page=True)
    assert page.locator(ERRORS).count() == 0
    body = page.inner_text("[data-testid=stMain]")
    labels = re.findall(r"(angry|disgust|fear|happy|sad|surprise|neutral) \(\d+%\)", body)
    assert labels, body[:2000]
    faces = set(re.findall(r"\bface (\d+)\b", body))  # each face's crop is captioned "face N"
    page.wait_for_selector(".js-plotly-plot", timeout=30_000)  # probability bars render
    assert page.locator(".js-plotly-plot").count() >= len(faces) >= 1  # one chart per face


def test_training_chart_grows(server, browser):
    page = open_page(browser, server, "train")
    start_training(page, 40, 500, wait_for="text=Epochs done")

    def epochs_done() -> int:
        text = page.locator("[data-testid=stMetric]", has_text="Epochs done").inner_text()
        return int(re.search(r"(\d+)/\d+", text).group(1))

    def chart_points() -> int:
        """Epochs plotted in the live chart, read from Plotly's own data on the element."""
        from playwright.sync_api import Error as PlaywrightError

        for _ in range(20):  # the live fragment re-renders the chart every second
            try:
                page.locator("[data-testid=stPlotlyChart]").last.scroll_into_view_if_needed(
                    timeout=5_000
                )
                break
            except PlaywrightError:
                time.sleep(0.5)
        page.wait_for_selector(".js-plotly-plot", timeout=60_000)
        return page.evaluate(
            "() => Math.max(0, ...Array.from(document.querySelectorAll('.js-plotly-plot'))"
            ".map(p => (p.data && p.data[0] && p.data[0].x) ? p.data[0].x.length : 0))"
        )

    points_first = chart_points()
    assert points_first >= 1
    # Wait for an epoch beyond those already plotted (on a loaded machine reading the chart can
    # take longer than an epoch), then for the chart to show it.
    deadline = time.time() + 300
    while time.time() < deadline and epochs_done() <= points_first:
        time.sleep(1)
    assert epochs_done() > points_first
    deadline = time.time() + 60
    while time.time() < deadline and chart_points() <= points_first:
        time.sleep(1)
    assert chart_points() > points_first  # the chart grew while the run trained
    page.get_by_role("button", name="⏹ Stop", exact=True).click()
    page.wait_for_selector("text=Stopped after", timeout=120_000)
    assert page.locator(ERRORS).count() == 0


def _write_y4m(path: Path, face: np.ndarray, frames: int = 30) -> None:
    """A 640x480 4:2:0 video of a FER face pasted into a generated scene, for Chromium's fake camera."""
    gray = scene_with_face(face, size=200, at=(220, 140))
    y = gray.astype(np.uint8)
    uv = np.full((240, 320), 128, np.uint8)
    with open(path, "wb") as f:
        f.write(b"YUV4MPEG2 W640 H480 F15:1 Ip A1:1 C420jpeg\n")
        for _ in range(frames):
            f.write(b"FRAME\n" + y.tobytes() + uv.tobytes() + uv.tobytes())


def test_webcam_processes_frames_and_draws_a_label(fresh_server, playwright, csv_data, tmp_path):
    server = fresh_server
    video = tmp_path / "face.y4m"
    _write_y4m(video, csv_data.split("public_test").images[0])
    args = [
        *ARGS,
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={video}",
    ]
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
    try:
        page = b.new_context(
            viewport={"width": 1300, "height": 1000}, permissions=["camera"]
        ).new_page()
        page.goto(f"{server}/predict", wait_until="domcontentloaded", timeout=120_000)
        page.wait_for_selector("h1:has-text('Predict')", timeout=60_000)
        page.get_by_role("tab", name=re.compile("Webcam")).click()
        start = page.frame_locator("iframe[title*=webrtc]").get_by_role(
            "button", name=re.compile("START", re.I)
        )
        page.locator("iframe[title*=webrtc]").scroll_into_view_if_needed(timeout=120_000)
        try:
            start.click(timeout=120_000)
        except Exception:
            page.screenshot(path="/tmp/webcam_fail.png", full_page=True)
            raise
        page.wait_for_selector("text=Frames per second", timeout=90_000)
        page.wait_for_selector(
            "text=/face 1: .*(angry|disgust|fear|happy|sad|surprise|neutral)/", timeout=90_000
        )
        fps, deadline = 0.0, time.time() + 60
        while fps <= 0 and time.time() < deadline:  # the rate needs two processed frames
            metric = page.locator("[data-testid=stMetric]", has_text="Frames per second")
            fps = float(re.findall(r"[\d.]+", metric.inner_text())[-1])
            time.sleep(1)
        page.screenshot(path=str(tmp_path / "webcam.png"))
        assert fps > 0
    finally:
        b.close()
