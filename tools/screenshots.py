"""README screenshots of the real app in headless Chromium: Home, Train (a run's live chart) and
Evaluate (the confusion matrix). None of them shows a dataset face: the Train and Evaluate shots
are cropped to their charts.

    python tools/screenshots.py [--data ../shared/data/fer2013.csv.gz] [--out docs]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_browser import (  # noqa: E402
    ARGS,
    CHROMIUM,
    open_page,
    settle,
    start_server,
    start_training,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/fer2013.csv.gz"))
    parser.add_argument("--out", default=str(ROOT / "docs"))
    args = parser.parse_args()
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
                browser.close()
        finally:
            proc.terminate()
            proc.wait(10)
    for name in ("home", "train", "evaluate"):
        print(out / f"{name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
