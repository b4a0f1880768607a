"""README screenshots of the real app in headless Chromium: Home, Train (a run's live chart),
Evaluate (the confusion matrix) and Predict's Video tab (a generated clip's per-face table and
timeline). None of them shows a dataset face: the Train, Evaluate and Video shots are cropped to
their charts and tables. The pages' icons are emoji: without a colour emoji font (Debian's
`fonts-noto-color-emoji`) Chromium draws them as empty boxes, so the script refuses to start.

    python -m tools.screenshots [--data ../shared/data/fer2013.csv.gz] [--out docs]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.browser import (
    ARGS,
    CHROMIUM,
    open_page,
    settle,
    start_server,
    start_training,
    stop_server,
)
from tests.clips import crossing, detectable_faces, write_clip

ROOT = Path(__file__).resolve().parent.parent


def video_results(browser, url: str, data: str, tmp: Path, out: Path) -> None:
    """Analyse a generated clip (two FER2013 faces crossing) on the Video tab; keep only the
    per-face table and the focused face's timeline, below the annotated video."""
    import re

    from fer_core.data.fer2013 import load_dataset

    faces = detectable_faces(load_dataset(data).split("public_test").images, 2)
    clip = write_clip(tmp / "two_people.mp4", crossing(faces, seconds=8, offset=40, passes=3))
    page = open_page(browser, url, "predict", viewport={"width": 1300, "height": 2200})
    page.get_by_role("tab", name=re.compile("Video")).click()
    page.locator("input[type=file]").nth(1).set_input_files(str(clip))
    analyse = page.get_by_role("button", name="▶ Analyse")
    deadline = time.time() + 60
    while analyse.is_disabled() and time.time() < deadline:
        time.sleep(0.5)
    analyse.click()
    page.wait_for_selector("text=/Done: .* frames analysed/", timeout=300_000)
    settle(page, 120)
    time.sleep(2)
    table = page.locator("[data-testid=stDataFrame]").first.bounding_box()
    timeline = page.locator("[data-testid=stPlotlyChart]").last.bounding_box()
    page.screenshot(
        path=str(out / "video.png"),
        full_page=True,
        clip={
            "x": table["x"] - 10,
            "y": table["y"] - 10,
            "width": table["width"] + 20,
            "height": timeline["y"] + timeline["height"] - table["y"] + 20,
        },
    )


def emoji_font_found() -> bool:
    """Whether fontconfig knows a font that draws the Home page's icon (U+1F3E0, a house); True
    where there is no fontconfig to ask."""
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return True
    found = subprocess.run([fc_list, ":charset=1f3e0", "family"], capture_output=True, text=True)
    return bool(found.stdout.strip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/fer2013.csv.gz"))
    parser.add_argument("--out", default=str(ROOT / "docs"))
    args = parser.parse_args()
    if not emoji_font_found():
        print(
            "no emoji font: Chromium would draw the pages' icons as empty boxes. Install one "
            "(Debian: apt-get install fonts-noto-color-emoji) and run this again.",
            file=sys.stderr,
        )
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "FER_DATA": args.data, "FER_APP_DIR": tmp, "FER_ICE_SERVERS": "[]"}
        proc, url = start_server(env, Path(tmp) / "server.log", timeout=120)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                page = open_page(browser, url, "")
                page.wait_for_selector("text=PublicTest accuracy", timeout=120_000)
                settle(page, 120)
                time.sleep(2)
                page.screenshot(path=str(out / "home.png"))

                page = open_page(browser, url, "train", viewport={"width": 1300, "height": 2400})
                start_training(page, 12, 3000, wait_for="text=Epochs done")
                deadline = time.time() + 600
                while time.time() < deadline:
                    if (
                        page.get_by_text("Run finished").count()
                        or page.evaluate(
                            "() => Math.max(0, ...Array.from(document.querySelectorAll"
                            "('.js-plotly-plot')).map(p => p.data && p.data[0] ? "
                            "p.data[0].x.length : 0))"
                        )
                        >= 8
                    ):
                        break
                    time.sleep(2)
                page.evaluate("() => window.scrollTo(0, 0)")
                time.sleep(1.5)
                top = page.get_by_role("heading", name="Live run").bounding_box()
                chart = page.locator("[data-testid=stPlotlyChart]").first.bounding_box()
                page.screenshot(
                    path=str(out / "train.png"),
                    full_page=True,
                    clip={
                        "x": chart["x"] - 10,
                        "y": top["y"] - 10,
                        "width": chart["width"] + 20,
                        "height": chart["y"] + chart["height"] - top["y"] + 20,
                    },
                )
                stop = page.get_by_role("button", name="⏹ Stop", exact=True)
                if stop.count():
                    stop.click()

                page = open_page(browser, url, "evaluate")
                settle(page, 120)
                chart = page.locator("[data-testid=stPlotlyChart]").nth(1)  # confusion matrix
                chart.scroll_into_view_if_needed()
                time.sleep(1.5)
                chart.screenshot(path=str(out / "evaluate.png"))
                video_results(browser, url, args.data, Path(tmp), out)
                browser.close()
        finally:
            stop_server(proc)
    for name in ("home", "train", "evaluate", "video"):
        print(out / f"{name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
