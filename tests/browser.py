"""The app in a real headless Chromium: start the server, open a page, wait for Streamlit.

Shared by the browser tests (`from browser import ...`, tests/ is on pytest's path), by
tools/screenshots.py and by bench/app.py (`from tests.browser import ...`, run from the repository
root as modules). Only the standard library at import time, and neither pytest nor conftest, so
that the scripts can use it too; playwright objects come in as arguments.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's, never `playwright install`
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
ERRORS = "[data-testid=stException], [data-testid=stAlertContentError]"
PAGES = {  # url path -> the page's title
    "": "FER Studio",
    "data": "Data",
    "train": "Train",
    "evaluate": "Evaluate",
    "predict": "Predict",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    env: dict,
    log_path: Path,
    cwd: Path = REPO,
    timeout: float = 60,
    script: str | Path = "streamlit_app.py",
) -> tuple[subprocess.Popen, str]:
    """`streamlit run streamlit_app.py` headless on a free loopback port, as a deployment runs it.

    Returns (process, url) once the health endpoint answers "ok"; its output goes to log_path."""
    port = free_port()
    log = open(log_path, "w")  # noqa: SIM115 (outlives the call)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(script),
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
            time.sleep(0.05)  # bench/app.py times the start-up with this resolution
    proc.kill()
    raise RuntimeError(
        f"the Streamlit server did not become healthy: {log_path.read_text()[-2000:]}"
    )


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(10)


def serve(tmp_path_factory, data: Path) -> Iterator[str]:
    """Body of a pytest fixture: the app on `data`, in its own app folder; yields its url."""
    env = {
        **os.environ,
        "FER_DATA": str(data),
        "FER_ICE_SERVERS": "[]",
        "FER_APP_DIR": str(tmp_path_factory.mktemp("app")),
    }
    proc, url = start_server(env, tmp_path_factory.mktemp("log") / "server.log")
    try:
        yield url
    finally:
        stop_server(proc)


def open_page(
    browser, url: str, path: str = "", ready: str | None = None, timeout: float = 60, **context
):
    """A new page (in a context of its own) at url/path, once `ready` shows: a selector, by
    default the page's title. `context` goes to `browser.new_context` (viewport, permissions)."""
    context = {"viewport": {"width": 1300, "height": 1000}, **context}
    page = browser.new_context(**context).new_page()
    page.goto(f"{url}/{path}", wait_until="domcontentloaded", timeout=max(timeout, 120) * 1000)
    page.wait_for_selector("[data-testid=stApp]", timeout=timeout * 1000)
    page.wait_for_selector(ready or f"h1:has-text('{PAGES[path]}')", timeout=timeout * 1000)
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
