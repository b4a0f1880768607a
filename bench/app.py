"""The app on a CPU box: cold start to the first rendered page, and the server's memory.

Starts `streamlit run streamlit_app.py` headless (as Community Cloud does) and drives Debian's
Chromium with playwright. For each of --repeat cold starts it measures the seconds from launching
the server process to the Home page rendered with the shipped model's numbers. Then, on the last
server, it visits every page with the full dataset and the shipped model loaded (Data renders its
charts, Evaluate its stored evaluation, Predict a photo with two faces) and reads the server's
resident memory from /proc: right after start-up, and its peak (VmHWM) after all pages. Last,
Evaluate computes the shipped model's PublicTest evaluation (press Evaluate, until the mistakes
show) and a second visit shows the kept one; the peak memory after that is reported apart.
A bare Streamlit app (one title) is measured in the same run as the baseline for both.

    python -m bench.app [--data ../shared/data/fer2013.csv.gz] [--repeat 3] [--json]

(from the repository root; the server and the browser come from tests/browser.py, as in the
browser tests)
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import cpu_name
from tests.browser import ARGS, CHROMIUM, open_page, start_server, stop_server

ROOT = Path(__file__).resolve().parent.parent


def _memory_mb(pid: int) -> dict:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return fields


class Server:
    """A `streamlit run` of `script`, timed from the moment its process is launched."""

    def __init__(self, script: Path, env: dict, log: Path) -> None:
        self.started = time.perf_counter()
        self.proc, self.url = start_server(env, log, ROOT, timeout=120, script=script)
        self.healthy_s = time.perf_counter() - self.started

    def stop(self) -> None:
        stop_server(self.proc)


def _render(browser, url: str, path: str, ready: str):
    return open_page(browser, url, path, ready=ready, timeout=180)


def cold_start(browser, script: Path, env: dict, ready: str, log: Path) -> tuple[Server, dict]:
    server = Server(script, env, log)
    _render(browser, server.url, "", ready).context.close()
    rendered = time.perf_counter() - server.started
    return server, {"healthy_s": round(server.healthy_s, 2), "first_page_s": round(rendered, 2)}


def visit_every_page(browser, server: Server, photo: Path) -> dict:
    seconds = {}
    for path, ready in [
        ("data", ".js-plotly-plot"),
        ("train", "text=Past runs"),
        ("evaluate", ".js-plotly-plot"),
        ("predict", "[data-testid=stFileUploader]"),
    ]:
        start = time.perf_counter()
        page = _render(browser, server.url, path, ready)
        if path == "predict":
            page.locator("input[type=file]").first.set_input_files(str(photo))
            page.get_by_text("Annotated image").first.wait_for(timeout=180_000)
        seconds[path] = round(time.perf_counter() - start, 2)
        page.context.close()
    return seconds


def evaluate_twice(browser, server: Server) -> dict:
    """Evaluate: the shipped model on PublicTest (flip) computed once, then kept on disk."""
    seconds = {}
    start = time.perf_counter()
    page = _render(browser, server.url, "evaluate", ".js-plotly-plot")
    page.get_by_role("button", name="▶ Evaluate").click()
    page.wait_for_selector("h3:has-text('Mistakes')", timeout=900_000)
    seconds["evaluate PublicTest (press Evaluate)"] = round(time.perf_counter() - start, 2)
    page.context.close()
    start = time.perf_counter()
    _render(browser, server.url, "evaluate", "h3:has-text('Mistakes')").context.close()
    seconds["evaluate PublicTest again (kept)"] = round(time.perf_counter() - start, 2)
    return seconds


def _photo(data: Path, out: Path) -> Path:
    """Two PublicTest faces pasted into a generated 640x480 scene (never stored in the repo)."""
    import cv2
    import numpy as np

    from fer_core.data.fer2013 import load_dataset

    faces = load_dataset(data).split("public_test").images[:2]
    yy, xx = np.mgrid[0:480, 0:640]
    scene = (80 + 60 * xx / 640 + 30 * np.sin(yy / 50.0)).astype(np.uint8)
    for face, x in zip(faces, (60, 380)):
        scene[140:340, x : x + 200] = cv2.resize(face, (200, 200), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(out), scene)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/fer2013.csv.gz"))
    parser.add_argument("--repeat", type=int, default=3, help="cold starts of each app")
    parser.add_argument("--json", action="store_true", help="only the final JSON line")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    log = (lambda *a: None) if args.json else print
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        tmp = Path(tmp)
        bare = tmp / "bare_app.py"
        bare.write_text("import streamlit as st\nst.title('Hello')\n")
        photo = _photo(Path(args.data), tmp / "photo.png")
        env = {**os.environ, "FER_DATA": args.data, "FER_APP_DIR": str(tmp / "app"),
               "FER_CACHE_DIR": str(tmp / "cache"), "FER_ICE_SERVERS": "[]"}  # fmt: skip
        # Warm the parsed-data cache once, as any second start of the app finds it.
        subprocess.run([sys.executable, "-m", "fer_core", "info", "--data", args.data],
                       cwd=ROOT, env=env, capture_output=True, check=True)  # fmt: skip
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        runs: dict[str, list] = {"bare": [], "app": []}
        server = None
        for i in range(args.repeat):
            for name, script, ready in [
                ("bare", bare, "h1:has-text('Hello')"),
                ("app", ROOT / "streamlit_app.py", "text=PublicTest accuracy"),
            ]:
                server, timing = cold_start(browser, script, env, ready, tmp / f"{name}.log")
                timing.update(_memory_mb(server.proc.pid))
                runs[name].append(timing)
                log(name, i + 1, timing)
                if not (name == "app" and i == args.repeat - 1):
                    server.stop()
        # The last app server: every page, with the dataset and the model loaded.
        try:
            pages = visit_every_page(browser, server, photo)
            memory = _memory_mb(server.proc.pid)
            evaluations = evaluate_twice(browser, server)
            memory_evaluated = _memory_mb(server.proc.pid)
        finally:
            server.stop()
        browser.close()

    def median(name, key):
        return round(statistics.median(r[key] for r in runs[name]), 2)

    # What the app's first script run spends importing the libraries a bare app does not need.
    probe = (
        "import time; t = time.perf_counter(); import streamlit; s = time.perf_counter(); "
        "import torch, fer_core.models.checkpoint, fer_core.predict, pandas, plotly.graph_objects; "
        "print(time.perf_counter() - s)"
    )
    imports = [
        float(subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env,
                             capture_output=True, text=True, check=True).stdout)
        for _ in range(args.repeat)
    ]  # fmt: skip

    out = {
        "cold_start_s": median("app", "first_page_s"),
        "peak_rss_mb": memory["VmHWM"],
        "rss_after_start_mb": median("app", "VmRSS"),
        "rss_after_pages_mb": memory["VmRSS"],
        "healthy_s": median("app", "healthy_s"),
        "baseline_cold_start_s": median("bare", "first_page_s"),
        "baseline_rss_mb": median("bare", "VmRSS"),
        "import_s": round(statistics.median(imports), 2),
        "page_seconds": pages,
        "evaluate_seconds": evaluations,
        "peak_rss_after_evaluate_mb": memory_evaluated["VmHWM"],
        "runs": runs,
        "targets": {"cold_start_s": 5.0, "peak_rss_mb": 1200},
        "machine": {
            "cpu": cpu_name(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": importlib.metadata.version("torch"),
        },
    }
    if not args.json:
        print(
            f"\ncold start {out['cold_start_s']} s (bare Streamlit {out['baseline_cold_start_s']}"
            f" s) | RSS after start {out['rss_after_start_mb']} MB, peak after every page "
            f"{out['peak_rss_mb']} MB (bare {out['baseline_rss_mb']} MB)"
        )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
