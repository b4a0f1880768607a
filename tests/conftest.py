"""Shared fixtures: the real FER2013 files in ../shared/data and small generated datasets."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("FER_SHARED_DATA", REPO.parent / "shared" / "data"))
CSV_PATH = DATA_DIR / "fer2013.csv.gz"
ZIP_PATH = DATA_DIR / "fer2013_kaggle_archive.zip"
FERPLUS_PATH = DATA_DIR / "ferplus_fer2013new.csv"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Every test session parses into its own cache folder (subprocesses inherit it)."""
    os.environ["FER_CACHE_DIR"] = str(tmp_path_factory.mktemp("fer_cache"))


@pytest.fixture(scope="session")
def csv_data():
    from fer_core.data.fer2013 import load_dataset

    if not CSV_PATH.exists():
        pytest.fail(f"real data missing: {CSV_PATH}")
    return load_dataset(CSV_PATH)


@pytest.fixture(scope="session")
def zip_data():
    from fer_core.data.fer2013 import load_dataset

    return load_dataset(ZIP_PATH)


def face_pixels(seed: int) -> np.ndarray:
    """A synthetic 48x48 'image' (random blobs) for generated fixtures; not a FER face."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(48, 48), dtype=np.uint8)


def write_csv(path: Path, rows: list[tuple[int, np.ndarray, str | None]], header=None) -> Path:
    """Write a FER2013-style CSV; a row's usage None omits the Usage column entirely."""
    with_usage = rows and rows[0][2] is not None
    header = header or ("emotion,pixels,Usage" if with_usage else "emotion,pixels")
    lines = [header]
    for label, pixels, usage in rows:
        text = " ".join(str(v) for v in pixels.reshape(-1))
        lines.append(f"{label},{text},{usage}" if with_usage else f"{label},{text}")
    data = ("\n".join(lines) + "\n").encode()
    if path.name.endswith(".gz"):
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def png_bytes(pixels: np.ndarray, ext: str = ".png") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG" if ext in (".jpg", ".jpeg") else "PNG")
    return buf.getvalue()


def write_archive(root: Path, files: dict[str, np.ndarray], as_zip: bool) -> Path:
    """files: relative path -> pixels. Writes a folder tree or a zip holding it."""
    if as_zip:
        path = root.with_suffix(".zip")
        with zipfile.ZipFile(path, "w") as zf:
            for name, pixels in files.items():
                zf.writestr(name, png_bytes(pixels, Path(name).suffix.lower()))
        return path
    for name, pixels in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(png_bytes(pixels, Path(name).suffix.lower()))
    return root


@pytest.fixture(scope="module")
def playwright():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright):
    """Debian's headless Chromium (flags and path in browser.py)."""
    from browser import ARGS, CHROMIUM

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Debian's chromium is required for the browser tests: {CHROMIUM} is missing")
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    yield b
    b.close()


@pytest.fixture(autouse=True)
def _close_browser_pages(request):
    """Close the pages a test opened: a Train or Predict tab left open keeps its session alive on
    the module's server, and the tests after it would share the machine with it."""
    yield
    if "browser" in request.fixturenames:
        for context in request.getfixturevalue("browser").contexts:
            context.close()


def cli(*args, check=True, timeout=900):
    """`python -m fer_core ARGS` in a real subprocess from the repository root; with check, a
    non-zero exit fails the test with both streams."""
    proc = subprocess.run(
        [sys.executable, "-m", "fer_core", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def modules_imported_by(code: str, package: str) -> list[str]:
    """The modules of `package` (itself or its submodules) that `code`, run in a fresh
    interpreter from the repository root, leaves imported."""
    report = (
        f"\nimport json, sys\nprint(json.dumps(sorted(m for m in sys.modules if m == {package!r} "
        f"or m.startswith({package + '.'!r}))))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code + report], cwd=REPO, capture_output=True, text=True, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])
