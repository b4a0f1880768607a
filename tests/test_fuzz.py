"""Fuzzing the readers of untrusted bytes with hypothesis: images (`load_image`, which decodes
every upload and every CLI image), CSV datasets (`load_dataset` on .csv and .csv.gz, and the
vectorised `parse_pixel_strings`) and zip archives.

Each input must either decode to a well-formed result or raise the library's own error
(`ImageError` / `DataError`, both `FerError`s) with one line of text: never another exception,
never a hang (a generous alarm turns a hang into a failure). Inputs are valid files of many
kinds, mutated (bit flips, overwritten/inserted/deleted bytes, truncation, duplicated spans),
plus random bytes with and without a format's magic number. Derandomized, no example database
and Hypothesis's cache in a temporary folder: the same examples on every run, nothing written
into the repository.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import signal
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import face_pixels, png_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from PIL import Image

from fer_core.data.fer2013 import FerData, load_dataset, parse_pixel_strings
from fer_core.errors import DataError, FerError, ImageError
from fer_core.vision.faces import load_image

FUZZ = settings(
    max_examples=600,
    deadline=None,  # no timing in tests; the alarm below only catches hangs
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
HANG_S = 60  # per example; a decode takes milliseconds
# Hypothesis caches constants from the source in ./.hypothesis while collecting: keep the repo clean.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "fer_core_hypothesis")


@contextlib.contextmanager
def no_hang(seconds: int = HANG_S):
    def alarm(signum, frame):
        raise TimeoutError(f"no result after {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def one_line(error: FerError) -> None:
    text = str(error)
    assert text and "\n" not in text and "Traceback" not in text, text


# ----------------------------------------------------------------------------- mutations


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    blob = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        if not blob:
            break
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "duplicate"]))
        at = draw(st.integers(0, len(blob) - 1))
        if op == "flip":
            blob[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            value = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]))
            blob[at : at + 4] = bytes([value]) * len(blob[at : at + 4])
        elif op == "insert":
            blob[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del blob[at : at + draw(st.integers(1, 64))]
        elif op == "truncate":
            del blob[at:]
        else:
            blob[at:at] = blob[at : at + draw(st.integers(1, 64))]
    return bytes(blob)


def random_bytes(magics: list[bytes]) -> st.SearchStrategy[bytes]:
    """Random bytes, alone or after a format's magic number (so a decoder gets past sniffing)."""
    return st.one_of(
        st.binary(max_size=512),
        st.tuples(st.sampled_from(magics), st.binary(max_size=512)).map(b"".join),
    )


# ----------------------------------------------------------------------------- images


def _encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def image_seeds() -> list[bytes]:
    """Small valid files of many formats and modes (small, so mutations often hit headers)."""
    gray = Image.fromarray(face_pixels(0)[:20, :24])
    rgb = Image.merge("RGB", [gray, gray.transpose(Image.Transpose.FLIP_LEFT_RIGHT), gray])
    exif = Image.Exif()
    exif[0x0112] = 6
    frames = [gray, gray.transpose(Image.Transpose.FLIP_TOP_BOTTOM)]
    sixteen = Image.fromarray(np.asarray(gray).astype(np.uint16) * 257)
    return [
        _encode(gray, "PNG"),
        _encode(rgb.convert("RGBA"), "PNG"),
        _encode(rgb.convert("P"), "PNG", transparency=0),
        _encode(sixteen, "PNG"),
        _encode(gray.convert("1"), "PNG"),
        _encode(rgb, "PNG", save_all=True, append_images=[rgb.rotate(90)]),  # APNG
        _encode(rgb, "JPEG", quality=70),
        _encode(rgb, "JPEG", quality=70, exif=exif),
        _encode(rgb.convert("CMYK"), "JPEG"),
        _encode(gray, "JPEG", progressive=True),
        _encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        _encode(rgb, "BMP"),
        _encode(rgb, "TIFF"),
        _encode(Image.fromarray(np.asarray(gray, np.float32)), "TIFF"),
        _encode(rgb, "WEBP"),
        _encode(rgb, "ICO"),
        _encode(gray, "PPM"),
        _encode(rgb, "TGA"),
    ]


IMAGE_SEEDS = image_seeds()
IMAGE_MAGICS = [
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"RIFF\x00\x00\x00\x00WEBP",
    b"\x00\x00\x01\x00",
    b"P5\n",
]


def check_image(blob: bytes) -> None:
    try:
        # PIL warns about corrupt metadata: on stderr that would be a second line next to the
        # CLI's one "error: ..." line (or noise after a result), so no warning may escape.
        with no_hang(), warnings.catch_warnings():
            warnings.simplefilter("error")
            image = load_image(blob)
    except ImageError as exc:
        one_line(exc)
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] >= 1 and image.shape[1] >= 1


def test_image_seeds_decode():
    for blob in IMAGE_SEEDS:
        assert load_image(blob).shape[2] == 3


@FUZZ
@given(mutated(IMAGE_SEEDS))
def test_fuzz_mutated_images(blob):
    check_image(blob)


@settings(FUZZ, max_examples=300)
@given(random_bytes(IMAGE_MAGICS))
def test_fuzz_random_image_bytes(blob):
    check_image(blob)


# ----------------------------------------------------------------------------- CSV


def csv_text(rows: int = 3) -> str:
    lines = ["emotion,pixels,Usage"]
    for i in range(rows):
        pixels = " ".join(map(str, face_pixels(i).reshape(-1)))
        lines.append(f"{i % 7},{pixels},{['Training', 'PublicTest', 'PrivateTest'][i % 3]}")
    return "\n".join(lines) + "\n"


CSV_SEEDS = [
    csv_text().encode(),
    gzip.compress(csv_text().encode(), mtime=0),
    ("\ufeff" + csv_text(2)).encode(),
    csv_text(2).replace(",Usage", "").replace(",Training", "").replace(",PublicTest", "").encode(),
]

PIXELS = " ".join(map(str, face_pixels(5).reshape(-1)))
TOKENS = st.sampled_from(["0", "255", "256", "-1", "3", "", " ", "x", "1.5", "\t", "٣", "\0"])


@st.composite
def structured_csv(draw) -> bytes:
    """CSV text built from plausible and hostile pieces: headers, labels, pixel fields, usages."""
    header = draw(
        st.sampled_from(
            ["emotion,pixels,Usage", "emotion,pixels", "pixels,emotion", "Emotion, Pixels ,usage",
             "emotion,Usage", "a,b,c", "", "\ufeffemotion,pixels,Usage"]
        )
    )  # fmt: skip
    rows = []
    for _ in range(draw(st.integers(0, 4))):
        label = draw(st.one_of(st.integers(-2, 9).map(str), TOKENS))
        values = PIXELS.split(" ")
        kind = draw(st.sampled_from(["valid", "short", "long", "token", "spaces", "quoted"]))
        if kind == "short":
            values = values[: draw(st.integers(0, 2303))]
        elif kind == "long":
            values = values + ["1"] * draw(st.integers(1, 5))
        elif kind == "token":
            values[draw(st.integers(0, 2303))] = draw(TOKENS)
        pixels = " ".join(values)
        if kind == "spaces":
            pixels = "  " + pixels.replace(" ", draw(st.sampled_from(["  ", "\t", " \t "])), 50)
        elif kind == "quoted":
            pixels = f'"{pixels}"'
        usage = draw(st.sampled_from(["Training", "PublicTest", "PrivateTest", "Validation", ""]))
        fields = [label, pixels, usage][: draw(st.integers(1, 3))]
        rows.append(",".join(fields))
    text = "\n".join([header, *rows]) + draw(st.sampled_from(["\n", "", "\r\n", "\n\n"]))
    return text.encode()


def check_csv(path, blob: bytes) -> None:
    path.write_bytes(blob)
    try:
        with no_hang():
            data = load_dataset(path, cache_dir="")
    except DataError as exc:
        one_line(exc)
        return
    assert isinstance(data, FerData)
    n = len(data)
    assert n >= 1 and data.images.shape == (n, 48, 48) and data.images.dtype == np.uint8
    assert data.labels.min() >= 0 and data.labels.max() <= 6
    assert data.splits.shape == data.rows.shape == (n,)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def test_csv_seeds_load(workdir):
    for i, blob in enumerate(CSV_SEEDS):
        path = workdir / ("seed.csv.gz" if blob[:2] == b"\x1f\x8b" else "seed.csv")
        path.write_bytes(blob)
        assert len(load_dataset(path, cache_dir="")) in (2, 3), i


@FUZZ
@given(mutated(CSV_SEEDS), st.booleans())
def test_fuzz_mutated_csv(workdir, blob, gz):
    check_csv(workdir / ("m.csv.gz" if gz else "m.csv"), blob)


@settings(FUZZ, max_examples=300)
@given(structured_csv(), st.booleans())
def test_fuzz_structured_csv(workdir, blob, gz):
    check_csv(workdir / ("s.csv.gz" if gz else "s.csv"), gzip.compress(blob) if gz else blob)


@settings(FUZZ, max_examples=300)
@given(st.lists(st.one_of(st.just(PIXELS), st.text(max_size=64)), min_size=1, max_size=3))
def test_fuzz_parse_pixel_strings(rows):
    try:
        images = parse_pixel_strings(rows)
    except DataError as exc:
        one_line(exc)
        return
    assert images.shape == (len(rows), 48, 48) and images.dtype == np.uint8


# ----------------------------------------------------------------------------- zip archives


def zip_seed(method: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        zf.writestr("fer/train/happy/Training_1.png", png_bytes(face_pixels(1)))
        zf.writestr("fer/test/sad/PublicTest_2.jpg", png_bytes(face_pixels(2), ".jpg"))
        zf.writestr("fer/README.txt", b"FER2013")
    return buf.getvalue()


ZIP_SEEDS = [zip_seed(zipfile.ZIP_STORED), zip_seed(zipfile.ZIP_DEFLATED)]


@settings(FUZZ, max_examples=400)
@given(mutated(ZIP_SEEDS))
def test_fuzz_mutated_zip(workdir, blob):
    path = workdir / "m.zip"
    path.write_bytes(blob)
    try:
        with no_hang():
            data = load_dataset(path, cache_dir="")
    except DataError as exc:
        one_line(exc)
        return
    assert 1 <= len(data) <= 2 and data.images.shape[1:] == (48, 48)
