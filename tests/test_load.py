"""Several browser sessions at once against one real server: predictions for everyone, one training
run per server, a health endpoint that keeps answering, bounded memory, bounded uploads, and no
uploaded photo left anywhere on disk."""

from __future__ import annotations

import http.client
import os
import re
import secrets
import threading
import time
import tomllib
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from conftest import CSV_PATH, REPO
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from playwright.sync_api import Error as PlaywrightError
from test_faces_predict import scene_with_face

from fer_core.vision.faces import MAX_FILE_BYTES

pytestmark = pytest.mark.browser
SESSIONS = 4
IDLE_SESSIONS = 3
TARGET_RSS = 1.2e9  # bytes: the goal for the server's peak resident memory under this load
# bytes: what it must never exceed, with either torch build, under the cloud's ~2.7 GB: a leak per
# session or upload would cross it (measured peaks: 0.91 GiB with the CPU build; 1.30-1.71 GiB with
# the CUDA build, which varies from run to run with how the sessions' threads interleave)
MAX_RSS = 2.4 * 2**30
MEASURED: dict[str, int] = {}  # filled by test_sessions_at_once
UPLOAD_LIMIT_MB = 400  # .streamlit/config.toml: FER2013 archives are ~60 MB, the CSV ~290 MB


def _memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


class Watch(threading.Thread):
    """Polls the health endpoint and the server's memory until stopped."""

    def __init__(self, url: str, pid: int) -> None:
        super().__init__(daemon=True)
        self.url, self.pid = url, pid
        self.answers: list[str] = []
        self.peak_rss = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                body = urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=60).read()
                self.answers.append(body.decode())
            except OSError as exc:
                self.answers.append(f"failed: {exc}")
            self.peak_rss = max(self.peak_rss, _memory(self.pid).get("VmRSS", 0))
            self.halt.wait(0.5)


def _photo(path: Path, face: np.ndarray, token: str) -> bytes:
    """A generated scene with a FER face in it, carrying a unique token (to find copies later)."""
    info = PngInfo()
    info.add_text("fer-test-token", token)
    Image.fromarray(scene_with_face(face)).save(path, format="PNG", pnginfo=info)
    return path.read_bytes()


def _detectable_faces(data, n: int) -> list[np.ndarray]:
    """The first n PublicTest faces the detector finds once pasted into a scene."""
    from fer_core.vision.faces import FaceDetector

    detector = FaceDetector()
    found = [
        f for f in data.split("public_test").images[:60] if detector.detect(scene_with_face(f))
    ]
    assert len(found) >= n
    return found[:n]


def _files_containing(roots: list[Path], needles: list[bytes]) -> list[str]:
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                found += [f"{path} holds upload {i}" for i, n in enumerate(needles) if n in data]
    return found


def test_deployed_config_skips_the_full_gc_after_every_run():
    """Without these, every script run ends in a full garbage collection of the server's ~300k
    objects (~0.2 s of CPU), and the live views rerun every second in every open session: four
    idle Predict sessions took 79% of a core, 5% with them."""
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert config.get("runner", {}).get("postScriptGC") is False
    assert config["server"].get("fileWatcherType") == "none"


def test_upload_limit_is_configured():
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] == UPLOAD_LIMIT_MB
    assert MAX_FILE_BYTES <= 50 * 2**20  # photos: refused by the app above this


def _upload(page, photo: Path) -> None:
    """Choose a file in the page's first uploader; again if a rerun swapped the input meanwhile."""
    for _ in range(3):
        page.locator("input[type=file]").first.set_input_files(str(photo))
        try:
            page.get_by_text(photo.name).first.wait_for(timeout=30_000)
            return
        except PlaywrightError:
            continue
    raise AssertionError(f"{photo.name} never showed in the uploader")


def _predicted(page) -> str:
    page.get_by_text("Annotated image").first.wait_for(timeout=300_000)
    body = page.inner_text("[data-testid=stMain]")
    assert re.search(r"(angry|disgust|fear|happy|sad|surprise|neutral) \(\d+%\)", body), body
    return body


def _go(page, title: str) -> None:
    """Follow the sidebar link to a page and wait until it has rendered."""
    page.get_by_role("link", name=title, exact=True).click()
    heading = "FER Studio" if title == "Home" else title
    page.wait_for_selector(f"h1:has-text('{heading}')", timeout=300_000)


@pytest.fixture(scope="module")
def served(tmp_path_factory, csv_data):
    """One real server for the module, with its own app folder, HOME and temp folder."""
    from test_browser import start_server

    root = tmp_path_factory.mktemp("load")
    dirs = {name: root / name for name in ("app", "home", "tmp")}
    for folder in dirs.values():
        folder.mkdir()
    env = {
        **os.environ,
        "FER_DATA": str(CSV_PATH),
        "FER_ICE_SERVERS": "[]",
        "FER_APP_DIR": str(dirs["app"]),
        "HOME": str(dirs["home"]),
        "TMPDIR": str(dirs["tmp"]),
    }
    proc, url = start_server(env, root / "server.log")
    try:
        yield {"proc": proc, "url": url, **dirs}
    finally:
        proc.kill()
        proc.wait(30)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("path", ["train", "predict"])
def test_idle_sessions_cost_the_server_nothing(served, browser, path):
    """Sessions that only look at a page must not keep the server busy: a 2-core server is
    shared by everyone, and polling pages multiply with every open tab."""
    from test_browser import PAGES, settle

    pages = [browser.new_context().new_page() for _ in range(IDLE_SESSIONS)]
    try:
        for page in pages:
            page.goto(f"{served['url']}/{path}", wait_until="commit", timeout=120_000)
        for page in pages:
            page.wait_for_selector(f"h1:has-text('{PAGES[path]}')", timeout=300_000)
            settle(page, 120)
        before = _cpu_seconds(served["proc"].pid)
        time.sleep(8)
        used = _cpu_seconds(served["proc"].pid) - before
        print(f"idle {path}: {used:.2f} CPU-s in 8 s")
        assert used < 0.2, f"{IDLE_SESSIONS} idle sessions kept the server busy {used:.2f} s of 8"
    finally:
        for page in pages:
            page.context.close()


def test_sessions_at_once(served, browser, csv_data, tmp_path):
    """Four sessions at once: all connected, two predicting at a time (see the xfail above for
    why not four on this machine), one training, one refused, every page renders."""
    from test_browser import ERRORS, settle, start_training

    proc, url = served["proc"], served["url"]
    photos = tmp_path / "photos"  # the test's own copies: not among the folders searched below
    photos.mkdir()
    faces = _detectable_faces(csv_data, SESSIONS)
    tokens = [secrets.token_hex(16) for _ in range(SESSIONS)]
    blobs = [_photo(photos / f"photo{i}.png", faces[i], t) for i, t in enumerate(tokens)]
    watch = Watch(url, proc.pid)
    watch.start()
    pages = []
    try:
        for _ in range(SESSIONS):
            pages.append(browser.new_context(viewport={"width": 1300, "height": 1000}).new_page())
        for page in pages:  # every session arrives at once
            page.goto(url, wait_until="commit", timeout=120_000)
        for page in pages:
            page.wait_for_selector("h1:has-text('FER Studio')", timeout=300_000)
        uploads = []  # the browsers' own upload requests, to replay their session and XSRF token

        def record(request) -> None:
            if "/_stcore/upload_file/" in request.url and request.method == "PUT":
                uploads.append(request)

        for page in pages:
            page.on("request", record)

        def upload_at_once(wave: list[int]) -> None:
            for i in wave:
                _go(pages[i], "Predict")
            for i in wave:
                pages[i].wait_for_selector("input[type=file]", state="attached", timeout=300_000)
                settle(pages[i], 120)
            for i in wave:
                _upload(pages[i], photos / f"photo{i}.png")

        # wave 1: sessions 0 and 1 predict; session 1 then starts a training run
        upload_at_once([0, 1])
        trainer, second = pages[1], pages[2]
        _predicted(trainer)
        _go(trainer, "Train")
        # Long enough to outlast the test on any machine (30 epochs of 300 faces once finished
        # in 23 s, before session 2 pressed Start: it then started a second run, no warning);
        # the test stops it at the end.
        start_training(trainer, 500, 2000)
        _predicted(pages[0])

        # wave 2, while it trains: sessions 2 and 3 predict; session 2 tries to train too
        upload_at_once([2, 3])
        _predicted(second)
        _go(second, "Train")
        settle(second, 120)
        second.get_by_text("New run", exact=True).click()  # folded while a run is going
        second.get_by_role("button", name="Start training").click()
        warning = second.locator("[data-testid=stAlertContentWarning]", has_text="already in")
        warning.wait_for(timeout=300_000)
        assert "another session" in warning.inner_text()
        assert "One run at a time per server" in warning.inner_text()
        _predicted(pages[3])

        # a photo over the app's limit is refused by the uploader, before it is sent
        big = photos / "huge.png"
        filler = os.urandom(MAX_FILE_BYTES + 2**20)
        big.write_bytes(b"\x89PNG\r\n\x1a\n" + filler)
        sent_before = len(uploads)
        _upload(pages[3], big)
        refusal = pages[3].get_by_text(re.compile(r"File must be .* or smaller"))
        refusal.first.wait_for(timeout=300_000)
        assert str(MAX_FILE_BYTES // 2**20) in refusal.first.inner_text()
        assert len(uploads) == sent_before  # no upload request left the browser
        _go(pages[3], "Home")
        # ... and the server refuses a body over server.maxUploadSize before reading it
        sent = {"url": uploads[0].url, "headers": uploads[0].all_headers()}
        target = urlparse(sent["url"])
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
        conn.putrequest("PUT", target.path.rsplit("/", 1)[0] + "/oversize-probe")
        for key in ("content-type", "x-xsrftoken", "cookie"):
            if key in sent["headers"]:
                conn.putheader(key, sent["headers"][key])
        conn.putheader("Content-Length", str((UPLOAD_LIMIT_MB + 1) * 2**20))
        conn.endheaders()
        conn.send(b"--a few bytes of a body that claims to be 401 MB")
        assert conn.getresponse().status == 413
        conn.close()

        # every page renders mid-run without an error, and the run trains on
        for title in ("Data", "Evaluate", "Home"):
            _go(pages[0], title)
            settle(pages[0], 120)
            errors = pages[0].locator(ERRORS)
            assert errors.count() == 0, (title, errors.all_inner_texts())
        trainer.wait_for_selector("text=Epochs done", timeout=300_000)
        for page in pages:
            settle(page, 120)
            assert page.locator(ERRORS).count() == 0, page.locator(ERRORS).all_inner_texts()

        # nothing uploaded was written anywhere the server writes
        needles = [t.encode() for t in tokens] + [blob[-4096:] for blob in blobs]
        needles.append(filler[len(filler) // 2 : len(filler) // 2 + 4096])
        assert _files_containing([served["app"], served["home"], served["tmp"]], needles) == []
        assert proc.poll() is None

        memory = _memory(proc.pid)
        watch.halt.set()
        watch.join(120)
        failed = [a for a in watch.answers if a != "ok"]
        assert len(watch.answers) >= 10 and not failed, failed
        peak = max(memory["VmHWM"], watch.peak_rss)
        print(
            f"server memory under load: VmRSS {memory['VmRSS'] / 2**20:.0f} MiB, "
            f"peak VmHWM {peak / 2**20:.0f} MiB; {len(watch.answers)} health checks, all ok"
        )
        MEASURED["peak"] = peak
        assert peak < MAX_RSS, f"server peak memory {peak / 2**20:.0f} MiB"
        trainer.get_by_role("button", name="⏹ Stop", exact=True).click()
    except Exception:
        for i, page in enumerate(pages):  # what each session saw, for the CI artifacts
            page.screenshot(path=str(tmp_path / f"session{i}.png"), full_page=True)
        raise
    finally:
        watch.halt.set()
        for page in pages:
            page.context.close()


def test_server_peak_memory_within_target():
    """The 1.2 GB budget of BENCHMARKS.md under this load, for the CPU build of torch that a
    deployment installs (requirements.txt's extra index). The CUDA build that pip takes where
    that index cannot be reached (CI, this machine) costs ~530 MB resident on import alone, so
    there only the hard bound of test_sessions_at_once applies."""
    import torch

    if "peak" not in MEASURED:
        pytest.skip("needs test_sessions_at_once")
    if torch.version.cuda:
        pytest.skip(f"CUDA build of torch ({torch.__version__}); peak {MEASURED['peak'] >> 20} MiB")
    assert MEASURED["peak"] < TARGET_RSS, f"peak {MEASURED['peak'] / 2**20:.0f} MiB"
