"""The deployment check: the server started as Streamlit Community Cloud starts it.

`streamlit run streamlit_app.py` headless from the repository root with nothing configured: no
FER_DATA, no ICE servers, no app folder, an empty HOME (no ~/.streamlit, no ~/.kaggle). CI runs
this file from a clean clone in a fresh Python 3.12 environment (see .ci/run); it runs in the
ordinary suite too. The photo is composed here, in the test, from a PublicTest face (the upload is
user input; the server itself has no dataset).
"""

from __future__ import annotations

import os
import re
import urllib.request

import cv2
import pytest
from test_browser import ERRORS, PAGES, REPO, open_page, settle, start_server
from test_faces_predict import scene_with_face

pytestmark = pytest.mark.browser

CLOUD_ENV_DROPS = ("FER_DATA", "FER_ICE_SERVERS", "FER_APP_DIR", "FER_CACHE_DIR")


@pytest.fixture(scope="module")
def cloud_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    env = {k: v for k, v in os.environ.items() if k not in CLOUD_ENV_DROPS}
    env["HOME"] = str(home)
    proc, url = start_server(env, tmp_path_factory.mktemp("log") / "server.log", cwd=REPO)
    try:
        yield url, home
    finally:
        proc.terminate()
        proc.wait(10)


def test_health_endpoint_answers(cloud_server):
    url, _ = cloud_server
    assert urllib.request.urlopen(f"{url}/_stcore/health", timeout=5).read() == b"ok"


@pytest.mark.parametrize("path", list(PAGES))
def test_every_page_renders_without_data(cloud_server, browser, path, tmp_path):
    url, _ = cloud_server
    page = open_page(browser, url, path)
    settle(page, 120)
    page.screenshot(path=str(tmp_path / f"{path or 'home'}.png"), full_page=True)
    assert page.locator(ERRORS).count() == 0, page.locator(ERRORS).all_inner_texts()
    body = page.inner_text("[data-testid=stMain]")
    if path == "":  # the shipped model's stored evaluation is shown at once
        assert re.search(r"PublicTest accuracy\s*\n?\s*\d\d\.\d+%", body), body[:1500]
    if path == "data":
        assert "No dataset yet" in body
    if path == "evaluate":  # no data: the stored evaluation and its confusion matrix
        page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    page.context.close()


def test_shipped_model_predicts_an_uploaded_photo(cloud_server, browser, csv_data, tmp_path):
    url, home = cloud_server
    photo = tmp_path / "portrait.jpg"
    cv2.imwrite(str(photo), scene_with_face(csv_data.split("public_test").images[0], size=200))
    page = open_page(browser, url, "predict")
    page.locator("input[type=file]").first.set_input_files(str(photo))
    page.get_by_text("Annotated image").first.wait_for(timeout=180_000)
    settle(page)
    assert page.locator(ERRORS).count() == 0
    body = page.inner_text("[data-testid=stMain]")
    assert re.search(r"(angry|disgust|fear|happy|sad|surprise|neutral) \(\d+%\)", body), body[:1500]
    page.context.close()
    # Nothing was persisted on the server's disk for an upload: the empty HOME stays free of it.
    kept = [p for p in home.rglob("*") if p.is_file() and p.suffix.lower() in (".jpg", ".png")]
    assert kept == []
