"""A real headless Chromium against a real server: what AppTest cannot reach (charts, webcam)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import CSV_PATH, REPO
from test_faces_predict import scene_with_face

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
ERRORS = "[data-testid=stException], [data-testid=stAlertContentError]"
PAGES = {
    "": "FER Studio",
    "data": "Data",
    "train": "Train",
    "evaluate": "Evaluate",
    "predict": "Predict",
}

if not Path(CHROMIUM).exists():
    pytest.fail(
        "Debian's chromium is required for the browser tests (apt-get install chromium)",
        pytrace=False,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env: dict, log_path: Path, cwd: Path = REPO, timeout: float = 60):
    """`streamlit run streamlit_app.py` headless on a free loopback port, as a deployment runs it.

    Returns (process, url) once the health endpoint answers "ok"."""
    port = _free_port()
    log = open(log_path, "w")  # noqa: SIM115 (outlives the call)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "streamlit_app.py",
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--server.address",
            "127.0.0.1",
        ],
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                return proc, url
        except OSError:
            time.sleep(0.25)
    proc.kill()
    pytest.fail(f"the Streamlit server did not become healthy: {log_path.read_text()[-2000:]}")


def _serve(tmp_path_factory):
    env = {
        **os.environ,
        "FER_DATA": str(CSV_PATH),
        "FER_ICE_SERVERS": "[]",
        "FER_APP_DIR": str(tmp_path_factory.mktemp("app")),
    }
    proc, url = start_server(env, tmp_path_factory.mktemp("log") / "server.log")
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from _serve(tmp_path_factory)


@pytest.fixture()
def fresh_server(tmp_path_factory):
    """A server of its own, for the webcam: no state or load left by the other tests."""
    yield from _serve(tmp_path_factory)


def open_page(browser, url: str, path: str = "", **context):
    context = {"viewport": {"width": 1300, "height": 1000}, **context}
    page = browser.new_context(**context).new_page()
    page.goto(f"{url}/{path}", wait_until="domcontentloaded", timeout=120_000)
    page.wait_for_selector("[data-testid=stApp]")
    page.wait_for_selector(f"h1:has-text('{PAGES[path]}')", timeout=60_000)
    return page


def start_training(page, epochs: int, subset: int, wait_for: str = "text=Training started") -> None:
    """On the Train page: a run of `epochs` on a stratified subset of the training images."""
    page.get_by_role("spinbutton", name="Epochs").fill(str(epochs))
    field = page.get_by_role("spinbutton", name="Training subset (images)")
    field.fill(str(subset))
    field.press("Tab")
    page.get_by_role("button", name="Start training").click()
    page.wait_for_selector(wait_for, timeout=300_000)


def settle(page, seconds: float = 60) -> None:
    """Wait until Streamlit has finished running the script (no running indicator)."""
    deadline = time.time() + seconds
    time.sleep(1)
    while time.time() < deadline:
        if page.locator("[data-testid=stStatusWidget]").count() == 0:
            return
        time.sleep(0.5)


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
