"""The Video tab in a real Chromium: upload a clip, watch its progress, play the annotated video,
focus a face from the table, download the results."""

from __future__ import annotations

import csv
import io
import json
import re
import time

import pytest
from browser import ERRORS, open_page, serve, settle
from clips import crossing, detectable_faces, write_clip
from conftest import CSV_PATH

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve(tmp_path_factory, CSV_PATH)


@pytest.fixture(scope="module")
def clip(csv_data, tmp_path_factory):
    """Two FER faces crossing four times, 10 s at 15 fps: long enough to see the progress bar."""
    faces = detectable_faces(csv_data.split("public_test").images, 2)
    path = tmp_path_factory.mktemp("clip") / "two_people.mp4"
    return write_clip(path, crossing(faces, seconds=10, offset=40, passes=4))


def timeline_title(page) -> str:
    """The title of the focused face's timeline, read from Plotly's own layout (no markup)."""
    titles = page.evaluate(
        "() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
        ".map(p => p.layout && p.layout.title && p.layout.title.text).filter(Boolean)"
    )
    return "|".join(re.sub(r"<[^>]+>", "", t) for t in titles)


def download(page, name: str) -> bytes:
    with page.expect_download(timeout=60_000) as info:
        page.get_by_role("button", name=name).click()
    return open(info.value.path(), "rb").read()


def test_video_tab_upload_progress_timeline_playback_downloads(server, browser, clip, tmp_path):
    page = open_page(browser, server, "predict")
    page.get_by_role("tab", name=re.compile("Video")).click()
    page.locator("input[type=file]").nth(1).set_input_files(str(clip))
    analyse = page.get_by_role("button", name="▶ Analyse")
    deadline = time.time() + 60
    while analyse.is_disabled() and time.time() < deadline:  # until the upload has landed
        time.sleep(0.5)
    analyse.click()
    page.wait_for_selector("text=/frames\\/s · ETA/", timeout=120_000)
    page.screenshot(path=str(tmp_path / "progress.png"))
    page.wait_for_selector("text=/Done: 150 frames analysed/", timeout=300_000)
    settle(page)
    assert page.locator(ERRORS).count() == 0, page.locator(ERRORS).all_inner_texts()
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    assert page.locator(".js-plotly-plot").count() == 2  # the focused timeline, the overview
    assert timeline_title(page).startswith("face ")

    video = page.locator("[data-testid=stVideo]")
    video.scroll_into_view_if_needed()
    played = page.evaluate(
        """async () => {
            const v = document.querySelector("[data-testid=stVideo]");
            v.muted = true;
            await v.play();
            await new Promise(r => setTimeout(r, 1500));
            return {time: v.currentTime, width: v.videoWidth, error: v.error && v.error.code};
        }"""
    )
    assert played["error"] is None and played["width"] == 320 and played["time"] > 0, played

    # Focus face 2: the row marker column of the table's second row.
    grid = page.locator("[data-testid=stDataFrame]")
    box = grid.bounding_box()
    row_height = 35
    page.mouse.click(box["x"] + 15, box["y"] + row_height * 2.5)
    deadline = time.time() + 60
    while "face 2" not in timeline_title(page) and time.time() < deadline:
        time.sleep(0.5)
    # The timeline is drawn before the download buttons: a button clicked while the rerun is
    # still on its way to them is the previous run's, whose file Streamlit has already revoked.
    settle(page)
    page.screenshot(path=str(tmp_path / "results.png"), full_page=True)
    assert timeline_title(page) == "face 2"

    rows = list(csv.DictReader(io.StringIO(download(page, "Faces (CSV)").decode())))
    assert rows and {r["face_id"] for r in rows} >= {"1", "2"}
    summary = json.loads(download(page, "Summary (JSON)"))
    assert summary["video"]["frames_processed"] == 150
    assert [f["face_id"] for f in summary["faces"] if f["frames_seen"] > 5] == [1, 2]
    assert download(page, "Annotated video (MP4)")[4:8] == b"ftyp"
