"""Hostile and malformed datasets through `load_dataset`, the CLI `info` and the app's Data page.

Every case is generated here (small files; the bombs are a few MB that claim gigabytes). Each is
either refused with one clear message or loaded correctly, and nothing is ever written outside
the app's folders: zip archives are read in memory and never extracted, links are not followed.
test_data.py already covers the first CSV refusals and the archive layouts through
`load_dataset` alone; here they go through the CLI and the app, next to the new cases.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import struct
import tempfile
import threading
import time
import uuid
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, face_pixels, png_bytes, write_archive
from streamlit.testing.v1 import AppTest
from test_app import by_label
from test_hostile_images import gray_png, reap, spawn

from fer_core.__main__ import main
from fer_core.data import fer2013 as fer_data
from fer_core.data.fer2013 import load_dataset
from fer_core.errors import DataError

MEMORY_LIMIT_MB = 1500
# Unique names for the traversal targets, so that a file found there can only come from a test.
TARGET = f"fer_hostile_{uuid.uuid4().hex[:12]}.png"
ABSOLUTE_TARGET = Path(tempfile.gettempdir()) / f"fer_hostile_{uuid.uuid4().hex[:12]}.png"
HANG_GUARD_S = 120  # a hang guard for FIFOs only, never a speed check


# ----------------------------------------------------------------------------- builders


def row(label="3", pixels: np.ndarray | list | None = None, usage="Training", seed=0) -> str:
    values = face_pixels(seed).reshape(-1) if pixels is None else np.asarray(pixels).reshape(-1)
    return f"{label},{' '.join(map(str, values))},{usage}"


def with_token(token: str, at: int = 100) -> list[str]:
    values = face_pixels(1).reshape(-1).astype(str).tolist()
    values[at] = token
    return values


def good_rows(n=7) -> list[str]:
    return [row(str(i % 7), seed=i) for i in range(n)]


def fer_csv(lines: list[str], header="emotion,pixels,Usage", bom=False, gz=False):
    def build(folder: Path) -> Path:
        text = ("\ufeff" if bom else "") + "\n".join([header, *lines]) + "\n"
        path = folder / ("fer2013.csv.gz" if gz else "fer2013.csv")
        data = text.encode()
        path.write_bytes(gzip.compress(data) if gz else data)
        return path

    return build


def raw_file(name: str, data: bytes):
    def build(folder: Path) -> Path:
        (folder / name).write_bytes(data)
        return folder / name

    return build


def mutated_gz(mutate: Callable[[bytes], bytes]):
    def build(folder: Path) -> Path:
        good = gzip.compress(("emotion,pixels,Usage\n" + "\n".join(good_rows(40))).encode())
        (folder / "fer2013.csv.gz").write_bytes(mutate(good))
        return folder / "fer2013.csv.gz"

    return build


def flip(data: bytes, start: int, count: int) -> bytes:
    raw = bytearray(data)
    for i in range(start, start + count):
        raw[i] ^= 0x5A
    return bytes(raw)


def long_line_gz(folder: Path) -> Path:
    """A .csv.gz (1 MB) of a header and then one line of a GiB of commas: read as CSV, a list of
    a billion empty fields."""
    head, body, tail, crc, size = repeated_deflate(b"emotion,pixels\n", b"," * 2**20, 1024)
    gzip_header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    path = folder / "fer2013.csv.gz"
    path.write_bytes(gzip_header + head + body + tail + struct.pack("<II", crc, size % 2**32))
    return path


IMAGES = {
    "train/happy/Training_1.png": face_pixels(1),
    "test/sad/PublicTest_2.png": face_pixels(2),
}


def archive(files: dict[str, np.ndarray] | None = None, raw: dict | None = None, as_zip=True):
    """A Kaggle-layout archive (zip or folder) of PNG faces, plus raw entries (name -> bytes)."""
    files = IMAGES if files is None else files
    raw = raw or {}

    def build(folder: Path) -> Path:
        path = write_archive(folder / "archive", files, as_zip)
        if as_zip:
            with zipfile.ZipFile(path, "a") as zf:
                for name, data in raw.items():
                    zf.writestr(name, data)
        else:
            for name, data in raw.items():
                (path / name).parent.mkdir(parents=True, exist_ok=True)
                (path / name).write_bytes(data)
        return path

    return build


def empty_archive(as_zip: bool):
    def build(folder: Path) -> Path:
        if as_zip:
            path = folder / "archive.zip"
            with zipfile.ZipFile(path, "w") as zf:
                for name in ("train/", "train/happy/", "test/", "test/sad/"):
                    zf.writestr(zipfile.ZipInfo(name), b"")
            return path
        for name in ("train/happy", "test/sad"):
            (folder / "archive" / name).mkdir(parents=True)
        return folder / "archive"

    return build


@functools.cache
def repeated_deflate(head: bytes, chunk: bytes, times: int) -> tuple[bytes, bytes, bytes, int, int]:
    """Raw deflate of head + chunk * times without compressing it all: after a full flush every
    chunk compresses to the same bytes. Returns (head, chunks, end, CRC-32, size)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(head)
    for _ in range(times):
        crc = zlib.crc32(chunk, crc)
    return first, block * times, compressor.flush(), crc, len(head) + len(chunk) * times


def zeros_deflate(mib: int) -> tuple[bytes, int]:
    """A raw deflate stream of `mib` MiB of zero bytes, and their CRC-32."""
    head, body, tail, crc, _ = repeated_deflate(b"", bytes(2**20), mib)
    return head + body + tail, crc


def raw_zip(path: Path, entries: list[tuple[str, bytes, int, int, int, int]]) -> Path:
    """Write a zip by hand: entries of (name, data, crc, declared size, method, unix mode), so
    that sizes can lie and modes can say 'symbolic link'."""
    local, central = b"", b""
    for name, data, crc, size, method, mode in entries:
        encoded = name.encode()
        fields = struct.pack("<HHHHHIII", 20, 0, method, 0, 0x21, crc, len(data), size)
        offset = len(local)
        local += b"PK\x03\x04" + fields + struct.pack("<HH", len(encoded), 0) + encoded + data
        central += (
            b"PK\x01\x02"
            + struct.pack("<H", 3 << 8 | 20)
            + fields
            + struct.pack("<HHHHHII", len(encoded), 0, 0, 0, 0, mode << 16, offset)
            + encoded
        )
    end = struct.pack("<HHHHIIH", 0, 0, len(entries), len(entries), len(central), len(local), 0)
    path.write_bytes(local + central + b"PK\x05\x06" + end)
    return path


def stored(name: str, data: bytes, mode=0o100644, method=0) -> tuple:
    return (name, data, zlib.crc32(data), len(data), method, mode)


def images_as_entries() -> list[tuple]:
    return [stored(name, png_bytes(pixels)) for name, pixels in IMAGES.items()]


def zip_bomb(lying: bool):
    """One entry that inflates to 3 GiB of zeros (a 3 MB file); lying: its header says 1000."""

    def build(folder: Path) -> Path:
        data, crc = zeros_deflate(3 * 1024)
        size = 1000 if lying else 3 * 2**30
        bomb = ("train/happy/bomb.png", data, crc, size, zipfile.ZIP_DEFLATED, 0o100644)
        return raw_zip(folder / "archive.zip", [bomb, *images_as_entries()])

    return build


def many_members_bomb(folder: Path) -> Path:
    """280 entries of 7 MiB each: under every per-entry and total limit (1.9 GiB), 2 MB on disk."""
    data, crc = zeros_deflate(7)
    entries = [
        (f"train/happy/{i}.png", data, crc, 7 * 2**20, zipfile.ZIP_DEFLATED, 0o100644)
        for i in range(280)
    ]
    return raw_zip(folder / "archive.zip", entries)


def mutated_zip(mutate: Callable[[bytearray], None]):
    def build(folder: Path) -> Path:
        path = folder / "archive.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, pixels in IMAGES.items():
                zf.writestr(name, png_bytes(pixels))
        raw = bytearray(path.read_bytes())
        mutate(raw)
        path.write_bytes(bytes(raw))
        return path

    return build


def corrupt_member_data(raw: bytearray) -> None:
    start = raw.find(b"Training_1.png") + len("Training_1.png") + 20
    raw[start : start + 40] = bytes(b ^ 0x5A for b in raw[start : start + 40])


def header_field(offset_local: int, offset_central: int, value: int):
    """Set a 2-byte field of the first entry in both its local and its central header."""

    def mutate(raw: bytearray) -> None:
        struct.pack_into("<H", raw, offset_local, value)
        struct.pack_into("<H", raw, raw.find(b"PK\x01\x02") + offset_central, value)

    return mutate


def truncated_zip(raw: bytearray) -> None:
    del raw[len(raw) // 2 :]


def zip_with_symlink_entry(folder: Path) -> Path:
    outside = folder / "outside.png"  # a real face outside the archive: the link is not followed
    outside.write_bytes(png_bytes(face_pixels(9)))
    link = stored("train/happy/link.png", str(outside).encode(), mode=0o120777)
    return raw_zip(folder / "archive.zip", [*images_as_entries(), link])


def folder_with_symlinks(folder: Path) -> Path:
    root = write_archive(folder / "archive", IMAGES, as_zip=False)
    outside = write_archive(folder / "outside", {"happy/x.png": face_pixels(8)}, as_zip=False)
    (root / "train/happy/link.png").symlink_to(outside / "happy/x.png")  # a file outside
    (root / "train/fear").symlink_to(outside / "happy", target_is_directory=True)  # a folder
    (root / "train/happy/dangling.png").symlink_to(folder / "missing.png")
    (root / "test/loop").symlink_to(root / "test", target_is_directory=True)  # a cycle
    return root


def folder_with_fifo(folder: Path) -> Path:
    root = write_archive(folder / "archive", IMAGES, as_zip=False)
    os.mkfifo(root / "train/happy/pipe.png")  # reading it would block forever
    return root


def fifo_csv(folder: Path) -> Path:
    os.mkfifo(folder / "fer2013.csv")
    return folder / "fer2013.csv"


def big_image_archive(folder: Path) -> Path:
    """A complete 8000x8000 PNG (64 megapixels in 70 KB) where a face image belongs."""
    path = write_archive(folder / "archive", IMAGES, as_zip=True)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("train/happy/big.png", gray_png(8000, 8000))
    return path


# ----------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class DataCase:
    build: Callable[[Path], Path]  # writes the dataset into a folder, returns its path
    message: str | None  # part of the refusal, or None: it loads
    counts: dict[str, int] | None = None  # when it loads: images per split
    app: bool = True  # False for FIFOs: a regression would block the in-process app for good


LOADED = {"train": 1, "public_test": 1}


def both(name: str, message: str | None, counts=None, files=None, raw=None) -> dict:
    """The same archive case as a zip and as a folder."""
    return {
        f"zip_{name}": DataCase(archive(files, raw, as_zip=True), message, counts),
        f"folder_{name}": DataCase(archive(files, raw, as_zip=False), message, counts),
    }


CASES: dict[str, DataCase] = {
    # CSV
    "csv_missing_pixels_column": DataCase(
        fer_csv(good_rows(), header="emotion,image,Usage"), "missing column(s) pixels"
    ),
    "csv_missing_emotion_column": DataCase(
        fer_csv([r.split(",", 1)[1] for r in good_rows()], header="pixels,Usage"),
        "missing column(s) emotion",
    ),
    "csv_too_few_pixels": DataCase(
        fer_csv([*good_rows(2), row(pixels=face_pixels(1)[:40])]),
        "data row 3: 1920 pixel values, expected 2304",
    ),
    "csv_too_many_pixels": DataCase(
        fer_csv([row(pixels=np.concatenate([face_pixels(1).ravel(), [7]]))]),
        "2305 pixel values, expected 2304",
    ),
    "csv_non_numeric_pixels": DataCase(
        fer_csv([*good_rows(2), row(pixels=with_token("abc"))]),
        "pixel values must be integers 0..255",
    ),
    "csv_pixel_above_255": DataCase(
        fer_csv([row(pixels=np.full(2304, 256))]), "pixel values must be integers 0..255"
    ),
    "csv_label_9": DataCase(
        fer_csv([*good_rows(3), row("9")]), "line 5: unknown emotion label 9 (expected 0..6)"
    ),
    "csv_label_minus_1": DataCase(
        fer_csv([row("-1")]), "line 2: unknown emotion label -1 (expected 0..6)"
    ),
    "csv_label_not_a_number": DataCase(fer_csv([row("happy")]), "line 2: malformed row"),
    "csv_extra_usage_value": DataCase(
        fer_csv([*good_rows(2), row(usage="Validation")]),
        "line 4: unknown Usage 'validation' (expected Training, PublicTest or PrivateTest)",
    ),
    "csv_row_without_pixels": DataCase(fer_csv(["3"]), "line 2: malformed row"),
    "csv_empty_file": DataCase(raw_file("fer2013.csv", b""), "the file is empty"),
    "csv_header_only": DataCase(fer_csv([]), "no data rows"),
    "csv_binary_junk": DataCase(
        raw_file("fer2013.csv", bytes(range(128, 256)) * 8), "cannot read as a CSV file"
    ),
    "csv_utf8_bom": DataCase(fer_csv(good_rows(), bom=True), None, {"train": 7}),
    "csv_gz_corrupt_data": DataCase(
        mutated_gz(lambda d: flip(d, 40, 60)), "cannot read as a CSV file"
    ),
    "csv_gz_truncated": DataCase(
        mutated_gz(lambda d: d[: len(d) // 2]), "cannot read as a CSV file"
    ),
    "csv_gz_not_gzip": DataCase(
        raw_file("fer2013.csv.gz", b"emotion,pixels\n3,1 2 3\n"), "cannot read as a CSV file"
    ),
    "csv_gz_bomb_one_long_line": DataCase(long_line_gz, "a line is longer than 64 KB"),
    "csv_fifo": DataCase(fifo_csv, "not a regular file or folder", app=False),
    # archives, as a zip and as a folder
    **both(
        "unknown_class_folders",
        "unknown class folder(s) contempt, selfie",
        files={
            **IMAGES,
            "train/contempt/a.png": face_pixels(3),
            "test/selfie/b.png": face_pixels(4),
        },
    ),
    "zip_empty_folders": DataCase(empty_archive(True), "no images found"),
    "folder_empty_folders": DataCase(empty_archive(False), "no images found"),
    **both(
        "nested_root",
        None,
        {"train": 1, "public_test": 1, "private_test": 1},
        files={"outer/FER 2013/" + k: v for k, v in IMAGES.items()}
        | {"outer/FER 2013/test/angry/PrivateTest_7.png": face_pixels(7)},
    ),
    **both(
        "non_image_files",
        None,
        LOADED,
        raw={
            "README.txt": b"hello",
            "train/happy/notes.txt": b"not a face",
            "train/.DS_Store": b"\0\0\0\1Bud1",
            "train/happy/._Training_1.png": b"resource fork",
            "__MACOSX/train/happy/._Training_1.png": b"resource fork",
            "test/sad/labels.csv": b"emotion,pixels\n",
        },
    ),
    **both(
        "image_that_is_text",
        "cannot decode image train/happy/Training_5.png",
        raw={"train/happy/Training_5.png": b"this is not a PNG"},
    ),
    "zip_huge_image_member": DataCase(
        big_image_archive, "image train/happy/big.png is 8000x8000 pixels, too large"
    ),
    # hostile names: refused before anything is read (and zips are never extracted anyway)
    "zip_path_traversal": DataCase(
        archive(raw={f"../{TARGET}": png_bytes(face_pixels(5))}), "unsafe path in archive"
    ),
    "zip_path_traversal_inside": DataCase(
        archive(raw={f"train/happy/../../../../{TARGET}": png_bytes(face_pixels(5))}),
        "unsafe path in archive",
    ),
    "zip_path_traversal_backslash": DataCase(
        archive(raw={f"..\\..\\{TARGET}": png_bytes(face_pixels(5))}), "unsafe path in archive"
    ),
    "zip_absolute_path": DataCase(
        archive(raw={str(ABSOLUTE_TARGET): png_bytes(face_pixels(5))}), "unsafe path in archive"
    ),
    # links: skipped, never followed
    "zip_symlink_entry": DataCase(zip_with_symlink_entry, None, LOADED),
    "folder_symlinks": DataCase(folder_with_symlinks, None, LOADED),
    "folder_fifo": DataCase(folder_with_fifo, None, LOADED, app=False),
    # bombs: refused by size limits, memory stays bounded (see test_cli_info_subprocess)
    "zip_bomb_3_gib_entry": DataCase(
        zip_bomb(lying=False), "member train/happy/bomb.png is too large (3221225472 bytes)"
    ),
    "zip_bomb_lying_size": DataCase(
        zip_bomb(lying=True), "cannot read member train/happy/bomb.png (Bad CRC-32"
    ),
    "zip_bomb_many_members": DataCase(many_members_bomb, "cannot decode image train/happy/0.png"),
    # corrupt zips
    "zip_garbage": DataCase(
        raw_file("archive.zip", b"PK\x03\x04" + bytes(range(256)) * 4), "not a readable zip"
    ),
    "zip_truncated": DataCase(mutated_zip(truncated_zip), "not a readable zip archive"),
    "zip_corrupt_member_data": DataCase(
        mutated_zip(corrupt_member_data), "cannot read member train/happy/Training_1.png"
    ),
    "zip_encrypted_member": DataCase(
        mutated_zip(header_field(6, 8, 1)), "is encrypted, password required"
    ),
    "zip_unsupported_compression": DataCase(
        mutated_zip(header_field(8, 10, 99)), "That compression method is not supported"
    ),
}


def uploadable(name: str) -> bool:
    return CASES[name].app and not name.startswith("folder_")


def traversal_targets(*roots: Path) -> list[Path]:
    """Every place a '../' or absolute entry could land if something extracted the archive."""
    places = [ABSOLUTE_TARGET, REPO / TARGET, REPO.parent / TARGET, Path.cwd() / TARGET]
    for root in roots:
        places += [root / TARGET, root.parent / TARGET, root.parent.parent / TARGET]
    return places


def snapshot(*roots: Path) -> set[Path]:
    return {p for root in roots for p in root.rglob("*")}


def guarded(call: Callable[[], object]) -> object:
    """call() in a daemon thread, so that a read that blocks (a FIFO) fails the test instead of
    hanging the run. Returns its result or the exception it raised."""
    out: dict = {}

    def target():
        try:
            out["value"] = call()
        except BaseException as exc:
            out["value"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(HANG_GUARD_S)
    assert not thread.is_alive(), "blocked (reading a FIFO?)"
    return out["value"]


def check_counts(data, counts: dict[str, int]) -> None:
    assert {s: len(data.split(s)) for s in counts} == counts
    assert len(data) == sum(counts.values())
    assert all(n == "" or ("/" in n and ".." not in n) for n in data.names)


# ----------------------------------------------------------------------------- load_dataset


def test_bombs_are_what_they_claim(tmp_path):
    """The hand-built streams inflate to what their headers say (checked in full on small
    sizes, on the first 16 MiB for the big ones)."""
    head, body, tail, crc, _ = repeated_deflate(b"emotion\n", b"x" * 2**20, 5)
    inflated = zlib.decompressobj(-15).decompress(head + body + tail)
    assert inflated == b"emotion\n" + b"x" * 5 * 2**20 and zlib.crc32(inflated) == crc
    with zipfile.ZipFile(many_members_bomb(tmp_path)) as zf:
        assert len(zf.infolist()) == 280 and zf.read("train/happy/3.png") == bytes(7 * 2**20)
    (tmp_path / "b").mkdir()
    with zipfile.ZipFile(zip_bomb(lying=False)(tmp_path / "b")) as zf:
        bomb = zf.infolist()[0]
        assert bomb.file_size == 3 * 2**30 and bomb.compress_size < 4 * 2**20
        with zf.open(bomb) as handle:
            assert handle.read(16 * 2**20) == bytes(16 * 2**20)
    with gzip.open(long_line_gz(tmp_path), "rb") as handle:
        assert handle.read(15 + 16 * 2**20) == b"emotion,pixels\n" + b"," * 16 * 2**20


@pytest.mark.parametrize("name", sorted(CASES))
def test_load_dataset(tmp_path, name):
    case = CASES[name]
    source = tmp_path / "source"
    source.mkdir()
    path = case.build(source)
    before = snapshot(tmp_path)
    result = guarded(lambda: load_dataset(path, cache_dir=""))
    if case.message is None:
        assert not isinstance(result, BaseException), result
        check_counts(result, case.counts)
    else:
        assert isinstance(result, DataError), repr(result)
        message = str(result)
        assert case.message in message, message
        assert "\n" not in message and "Traceback" not in message
    assert snapshot(tmp_path) == before  # nothing written, not even a cache file (cache_dir="")
    assert not any(p.exists() for p in traversal_targets(source))


def test_csv_row_and_size_limits(tmp_path, monkeypatch):
    """Rows and decompressed text are counted while reading: a .csv.gz that decompresses to more
    than the limits is refused before the rest is read (limits lowered here to stay small)."""
    path = fer_csv(good_rows(300), gz=True)(tmp_path)
    assert len(load_dataset(path, cache_dir="")) == 300
    monkeypatch.setattr(fer_data, "MAX_CSV_ROWS", 250)
    with pytest.raises(DataError, match="more than 250 rows; too large"):
        load_dataset(path, cache_dir="")
    monkeypatch.setattr(fer_data, "MAX_CSV_ROWS", 10**6)
    monkeypatch.setattr(fer_data, "MAX_CSV_CHARS", 2**20)  # 300 rows are ~2.6 MB of text
    with pytest.raises(DataError, match="more than 1 MB of text; too large"):
        load_dataset(path, cache_dir="")


def test_refused_dataset_leaves_no_cache_file(tmp_path):
    """With the default cache, a refused dataset leaves no cache file behind."""
    cache = tmp_path / "cache"
    path = CASES["zip_path_traversal"].build(tmp_path)
    with pytest.raises(DataError):
        load_dataset(path, cache_dir=cache)
    assert not cache.exists() or not any(cache.iterdir())


# ----------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("name", sorted(CASES))
def test_cli_info(tmp_path, capsys, name):
    """`info` in this process (main(), exactly what __main__ runs): a refusal is exit status 1
    and one 'error: ...' line; a loadable dataset prints its counts."""
    case = CASES[name]
    path = case.build(tmp_path)
    code = guarded(lambda: main(["info", "--data", str(path), "--json"]))
    out, err = capsys.readouterr()
    assert not isinstance(code, BaseException), repr(code)  # main() lets nothing else escape
    if case.message is None:
        assert code == 0 and not err, err
        report = json.loads(out)
        assert report["n_images"] == sum(case.counts.values())
        assert {s: sum(c.values()) for s, c in report["splits"].items()} == {
            s: n for s, n in case.counts.items() if n
        }
    else:
        assert code == 1 and not out
        assert err.startswith("error: ") and err.count("\n") == 1 and case.message in err, err
    assert not any(p.exists() for p in traversal_targets(path.parent))


# The bombs, in real processes (a few seconds each: torch is imported). The rest of the CLI
# cases run in this process through main() above.
SUBPROCESS_CASES = ["csv_gz_bomb_one_long_line", "zip_bomb_lying_size", "zip_bomb_many_members"]


@pytest.fixture(scope="module")
def subprocess_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    started = {}
    for name in SUBPROCESS_CASES:
        (folder / name).mkdir()
        path = CASES[name].build(folder / name)
        started[name] = spawn(["info", "--data", str(path)], folder, name, max_memory=8 * 2**30)
    return {name: reap(*proc, timeout=HANG_GUARD_S * 3) for name, proc in started.items()}


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_cli_info_subprocess(subprocess_runs, name):
    """The real `python -m fer_core info` process: one line and exit status 1 (or the counts),
    and peak memory far below what the bombs unpack to (the whole process, torch included)."""
    run, case = subprocess_runs[name], CASES[name]
    assert run.peak_mb < MEMORY_LIMIT_MB, f"{run.peak_mb:.0f} MB"
    assert "Traceback" not in run.stderr
    if case.message is None:
        assert run.returncode == 0 and f"{sum(case.counts.values())} images" in run.stdout
    else:
        assert run.returncode == 1 and run.stderr.count("\n") == 1, run.stderr
        assert run.stderr.startswith("error: ") and case.message in run.stderr


# ----------------------------------------------------------------------------- app


def data_page() -> AppTest:
    """A fresh app session on the Data page."""
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=300)
    at.run()
    at.switch_page("app_pages/data.py")
    at.run()
    return at


@pytest.fixture(scope="module")
def app_results(tmp_path_factory):
    """The Data page, one case after another: by path (button) and by upload. Records what the
    page showed, and every file that appeared anywhere under the test's folders meanwhile."""
    root = tmp_path_factory.mktemp("app_data")
    sources, system_tmp, app_dir = root / "sources", root / "tmp", root / "app"
    for folder in (sources, system_tmp):
        folder.mkdir()
    paths = {}
    for name, case in CASES.items():
        if case.app:
            (sources / name).mkdir()
            paths[name] = case.build(sources / name)
    results: dict[str, dict] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FER_APP_DIR", str(app_dir))
        mp.setenv("FER_CACHE_DIR", str(app_dir / "cache"))
        mp.delenv("FER_DATA", raising=False)
        mp.setattr(tempfile, "tempdir", str(system_tmp))  # the upload folder lives in here
        at = data_page()
        before = snapshot(root)

        def outcome(kind, name):
            nonlocal at
            results[(kind, name)] = {
                "exceptions": [e.value for e in at.exception],
                "errors": [e.value for e in at.error],
                "data_path": at.session_state["data_path"],
            }
            if results[(kind, name)]["exceptions"]:  # a crashed page: go on in a fresh session
                at = data_page()
            elif results[(kind, name)]["data_path"]:  # accepted: back to "no dataset"
                if kind == "upload":
                    at.file_uploader[0].set_value(None)
                at.session_state["data_path"] = ""
                at.run()

        for name, path in paths.items():
            by_label(at.text_input, "Dataset path").set_value(str(path))
            by_label(at.button, "Use this dataset").click()
            at.run()
            outcome("path", name)
        for name, path in paths.items():
            if uploadable(name):
                at.file_uploader[0].set_value((path.name, path.read_bytes(), "text/csv"))
                at.run()
                outcome("upload", name)
        new_files = snapshot(root) - before
    upload_dir = app_dir / "datasets"
    return results, new_files, upload_dir, app_dir, sources


APP_CASES = [("path", n) for n in sorted(CASES) if CASES[n].app]
APP_CASES += [("upload", n) for n in sorted(CASES) if uploadable(n)]


@pytest.mark.parametrize("kind, name", APP_CASES)
def test_app_data_page(app_results, kind, name):
    results = app_results[0]
    shown, case = results[(kind, name)], CASES[name]
    assert not shown["exceptions"], shown["exceptions"]
    if case.message is None:
        assert not shown["errors"], shown["errors"]
        assert shown["data_path"]  # it became the active dataset
        return
    assert len(shown["errors"]) == 1, shown["errors"]
    error = shown["errors"][0]
    assert case.message in error and "\n" not in error and "Traceback" not in error, error
    assert not shown["data_path"]  # a refused dataset never becomes the active one
    assert error.startswith("That file is not usable: ") or kind == "path"


def test_app_writes_only_accepted_uploads_and_caches(app_results):
    """Nothing is written outside the app's folder: the only new files are accepted uploads (in
    its upload folder), the dataset cache and the last dataset's record; refused uploads are
    gone."""
    results, new_files, upload_dir, app_dir, _ = app_results
    files = {p for p in new_files if not p.is_dir()}
    accepted = {n for (kind, n), r in results.items() if kind == "upload" and not r["errors"]}
    uploads = {p for p in files if p.is_relative_to(upload_dir)}
    assert len(uploads) == len(accepted)  # one file per accepted upload, no refused leftovers
    assert all(p.parent.parent == upload_dir for p in uploads)  # in its own folder, no deeper
    assert all(p.is_relative_to(app_dir) for p in files)  # uploads and cache, nothing else
    assert not any(p.exists() for p in traversal_targets(upload_dir, app_dir))


def test_refused_upload_does_not_replace_the_active_dataset(tmp_path, monkeypatch):
    """Uploading a bad file under the name of the active upload used to overwrite it on disk
    (then delete it): the active dataset was gone."""
    monkeypatch.setenv("FER_APP_DIR", str(tmp_path / "app"))
    monkeypatch.delenv("FER_DATA", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    good = fer_csv(good_rows(14))(tmp_path).read_bytes()
    at = data_page()
    at.file_uploader[0].set_value(("fer2013.csv", good, "text/csv"))
    at.run()
    active = at.session_state["data_path"]
    assert Path(active).read_bytes() == good and not at.error
    at.file_uploader[0].set_value(("fer2013.csv", b"emotion,pixels\n9,1 2 3\n", "text/csv"))
    at.run()
    refused = (
        "That file is not usable: fer2013.csv, line 2: unknown emotion label 9 (expected 0..6)"
    )
    for _ in range(2):  # and on the next rerun too: the page still shows the active dataset
        assert not at.exception
        assert [e.value for e in at.error] == [refused]  # not "Dataset not found" as before
        assert at.session_state["data_path"] == active and Path(active).read_bytes() == good
        assert "Faces" in [m.label for m in at.metric]
        at.run()


def test_upload_is_written_once(tmp_path, monkeypatch):
    """Reruns do not rewrite the upload (a new file time would reload the dataset each time)."""
    monkeypatch.setenv("FER_APP_DIR", str(tmp_path / "app"))
    monkeypatch.delenv("FER_DATA", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    at = data_page()
    at.file_uploader[0].set_value(
        ("f.csv", fer_csv(good_rows(7))(tmp_path).read_bytes(), "text/csv")
    )
    at.run()
    path = Path(at.session_state["data_path"])
    stamp = path.stat().st_mtime_ns
    time.sleep(0.01)
    at.run()
    assert path.stat().st_mtime_ns == stamp and not at.exception


def test_uploaded_dataset_survives_a_refresh_and_uploads_are_bounded(tmp_path, monkeypatch):
    """An uploaded dataset is kept in the app folder and is the next session's dataset (a browser
    refresh is a new session); the sidebar names the file, and the oldest uploads go first when
    they outgrow FER_UPLOADS_MB."""
    app_dir = tmp_path / "app"
    monkeypatch.setenv("FER_APP_DIR", str(app_dir))
    monkeypatch.delenv("FER_DATA", raising=False)
    first = fer_csv(good_rows(14))(tmp_path).read_bytes()
    at = data_page()
    at.file_uploader[0].set_value(("first.csv", first, "text/csv"))
    at.run()
    kept = Path(at.session_state["data_path"])
    assert kept.is_relative_to(app_dir / "datasets") and kept.read_bytes() == first

    refreshed = data_page()  # a new session on the same server
    assert refreshed.session_state["data_path"] == str(kept) and not refreshed.error
    assert "first.csv" in " ".join(c.value for c in refreshed.sidebar.caption)

    monkeypatch.setenv("FER_UPLOADS_MB", str(1.5 * len(first) / 1e6))  # room for one upload
    refreshed.file_uploader[0].set_value(("second.csv", first + b"\n", "text/csv"))
    refreshed.run()
    second = Path(refreshed.session_state["data_path"])
    assert second.name == "second.csv" and second.exists() and not kept.exists()
    assert [p.name for p in (app_dir / "datasets").glob("*/*")] == ["second.csv"]
