"""FER2013 readers (Kaggle CSV, Kaggle folder archive as zip or folder), splits, caching, FER+ labels.

Everything loads into one compact `FerData`: uint8 images (N, 48, 48), int64 labels in the canonical
class order of `labels.py`, a split code per image, and where each image came from (its CSV row index
when known, and its file name for archives). Parsed datasets are cached as .npz keyed by the source
file's path, size and modification time, so the second load of the full CSV takes well under 2 s.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import io
import os
import re
import struct
import threading
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fer_core.atomic import atomic_write
from fer_core.errors import DataError
from fer_core.labels import CLASSES, FERPLUS_COLUMNS, NUM_CLASSES, folder_to_index

IMAGE_SIZE = 48
SPLITS: tuple[str, ...] = ("train", "public_test", "private_test", "test_unlabelled_split")
# Names a user may ask for; "test" is PublicTest and PrivateTest together (or an unprefixed test/).
SPLIT_CHOICES: tuple[str, ...] = ("train", "public_test", "private_test", "test", "all")
_USAGE_TO_SPLIT = {"training": 0, "publictest": 1, "privatetest": 2}
_PREFIX_RE = re.compile(r"^(training|publictest|privatetest)_(\d+)", re.IGNORECASE)
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
CACHE_FORMAT = 1

# Limits that keep a hostile file from exhausting memory (a full FER2013 archive is ~36k files).
MAX_ARCHIVE_MEMBERS = 200_000
MAX_MEMBER_BYTES = 8 * 1024 * 1024
MAX_TOTAL_BYTES = 2 * 1024**3
# A few kilobytes of PNG can declare a 30000x30000 image: member images are refused above this
# many pixels before they are decoded (a face image needs far fewer).
MAX_MEMBER_PIXELS = 4096 * 4096
# A FER2013 CSV row is under 10 KB and the full CSV holds 35,887 rows (~290 MB of text); a .csv.gz
# that decompresses to gigabytes is refused once it passes these limits.
MAX_CSV_LINE = 64 * 1024
MAX_CSV_ROWS = MAX_ARCHIVE_MEMBERS
MAX_CSV_CHARS = 1024**3
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_WARNINGS_LOCK = threading.Lock()
_BATCH_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class FerData:
    """A loaded dataset. Arrays share one index: image i has labels[i], splits[i], rows[i]."""

    images: np.ndarray  # (N, 48, 48) uint8
    labels: np.ndarray  # (N,) int64, canonical class index
    splits: np.ndarray  # (N,) int8, index into SPLITS
    rows: np.ndarray  # (N,) int64, CSV row index, or -1 where the source does not say
    names: tuple[str, ...]  # file name inside an archive, or "" for CSV rows
    source: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def split_mask(self, split: str) -> np.ndarray:
        if split == "all":
            return np.ones(len(self), dtype=bool)
        if split == "test":
            return self.splits >= 1
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}: choose one of {', '.join(SPLIT_CHOICES)}")
        return self.splits == SPLITS.index(split)

    def subset(self, index: np.ndarray) -> FerData:
        """The images at `index` (integer indices or a boolean mask), in that order."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return FerData(
            images=self.images[index],
            labels=self.labels[index],
            splits=self.splits[index],
            rows=self.rows[index],
            names=tuple(self.names[int(i)] for i in index),
            source=self.source,
        )

    def split(self, split: str) -> FerData:
        """The images of one split ("train", "public_test", "private_test", "test" or "all")."""
        return self.subset(self.split_mask(split))

    def available_splits(self) -> list[str]:
        present = [SPLITS[code] for code in sorted(set(self.splits.tolist()))]
        return [s for s in present if s != "test_unlabelled_split"] + (
            ["test"] if any(s != "train" for s in present) else []
        )

    def class_counts(self, split: str = "all") -> np.ndarray:
        return np.bincount(self.labels[self.split_mask(split)], minlength=NUM_CLASSES)


# ----------------------------------------------------------------------------- loading entry point


def load_dataset(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> FerData:
    """Load FER2013 from a CSV (.csv / .csv.gz), a Kaggle archive .zip, or an extracted folder.

    The parsed result is cached (see `default_cache_dir`); pass cache_dir="" to disable caching.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"dataset not found: {path}")
    if not (path.is_file() or path.is_dir()):  # a FIFO or a device would block or never end
        raise DataError(f"{path.name}: not a regular file or folder")
    cache_file = _cache_file(path, cache_dir)
    if cache_file is not None and cache_file.exists():
        cached = _read_cache(cache_file, str(path))
        if cached is not None:
            return cached
    data = _load_uncached(path)
    if cache_file is not None:
        _write_cache(cache_file, data)
    return data


def _load_uncached(path: Path) -> FerData:
    name = path.name.lower()
    if path.is_dir():
        return read_archive_folder(path)
    if name.endswith((".csv", ".csv.gz")):
        return read_csv(path)
    if name.endswith(".zip"):
        return read_archive_zip(path)
    raise DataError(
        f"{path.name}: not a FER2013 dataset. Give fer2013.csv(.gz), the Kaggle archive .zip, "
        "or a folder with train/ and test/"
    )


# ----------------------------------------------------------------------------- CSV


def read_csv(path: str | os.PathLike) -> FerData:
    """Read the Kaggle CSV (`emotion,pixels,Usage`; gzip allowed). Without Usage, all rows are train."""
    path = Path(path)
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8") must not hide the first column name.
        with opener(path, "rt", newline="", encoding="utf-8-sig") as handle:
            return _parse_csv(handle, str(path))
    except (OSError, EOFError, UnicodeDecodeError, csv.Error, zlib.error) as exc:
        raise DataError(f"{path.name}: cannot read as a CSV file ({exc})") from None


def _bounded_lines(handle: io.TextIOBase, name: str) -> Iterator[str]:
    """The lines of handle, refusing overlong lines and oversized files before they fill memory."""
    total = 0
    while line := handle.readline(MAX_CSV_LINE + 1):
        if len(line) > MAX_CSV_LINE:
            raise DataError(
                f"{name}: a line is longer than {MAX_CSV_LINE // 1024} KB; not a FER2013 CSV"
            )
        total += len(line)
        if total > MAX_CSV_CHARS:
            raise DataError(f"{name}: more than {MAX_CSV_CHARS // 2**20} MB of text; too large")
        yield line


_CSV_BLOCK = 2048  # rows of pixel text held at once (~18 MB)


def _parse_csv(handle: io.TextIOBase, source: str) -> FerData:
    reader = csv.reader(_bounded_lines(handle, Path(source).name))
    header = next(reader, None)
    if header is None:
        raise DataError(f"{Path(source).name}: the file is empty")
    columns = {name.strip().lower(): i for i, name in enumerate(header)}
    missing = [c for c in ("emotion", "pixels") if c not in columns]
    if missing:
        raise DataError(
            f"{Path(source).name}: missing column(s) {', '.join(missing)}; "
            "expected the FER2013 header emotion,pixels,Usage"
        )
    i_emotion, i_pixels = columns["emotion"], columns["pixels"]
    i_usage = columns.get("usage")
    # Pixel text is parsed a block of rows at a time: holding all ~290 MB of it as Python strings
    # would leave the process several hundred MB larger for good (freed small blocks stay in
    # the heap).
    labels: list[int] = []
    splits: list[int] = []
    pixels: list[str] = []
    blocks: list[np.ndarray] = []
    for line_no, record in enumerate(reader, start=2):
        if not record:
            continue
        if len(labels) >= MAX_CSV_ROWS:
            raise DataError(f"{Path(source).name}: more than {MAX_CSV_ROWS} rows; too large")
        try:
            label = int(record[i_emotion])
            text = record[i_pixels]
            usage = record[i_usage].strip().lower() if i_usage is not None else "training"
        except (IndexError, ValueError):
            raise DataError(f"{Path(source).name}, line {line_no}: malformed row") from None
        if not 0 <= label < NUM_CLASSES:
            raise DataError(
                f"{Path(source).name}, line {line_no}: unknown emotion label {label} "
                f"(expected 0..{NUM_CLASSES - 1})"
            )
        if usage not in _USAGE_TO_SPLIT:
            raise DataError(
                f"{Path(source).name}, line {line_no}: unknown Usage {usage!r} "
                "(expected Training, PublicTest or PrivateTest)"
            )
        labels.append(label)
        splits.append(_USAGE_TO_SPLIT[usage])
        pixels.append(text)
        if len(pixels) == _CSV_BLOCK:
            blocks.append(parse_pixel_strings(pixels, Path(source).name, len(labels) - len(pixels)))
            pixels = []
    if not labels:
        raise DataError(f"{Path(source).name}: no data rows")
    if pixels:
        blocks.append(parse_pixel_strings(pixels, Path(source).name, len(labels) - len(pixels)))
    images = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    n = len(labels)
    return FerData(
        images=images,
        labels=np.asarray(labels, dtype=np.int64),
        splits=np.asarray(splits, dtype=np.int8),
        rows=np.arange(n, dtype=np.int64),
        names=("",) * n,
        source=source,
    )


def parse_pixel_strings(pixels: list[str], source: str = "CSV", first_row: int = 0) -> np.ndarray:
    """Parse space-separated pixel strings into (N, 48, 48) uint8, vectorised (no per-value Python).

    Every row must hold exactly 48*48 integers in 0..255. Rows are parsed in chunks to keep
    temporaries small. `first_row` is the data row number of pixels[0] minus one, for errors.
    """
    n_values = IMAGE_SIZE * IMAGE_SIZE
    if _needs_normalising(pixels):
        pixels = [" ".join(p.split()) for p in pixels]
    out = np.empty((len(pixels), n_values), dtype=np.uint8)
    chunk = 512
    for first in range(0, len(pixels), chunk):
        rows = pixels[first : first + chunk]
        for i, text in enumerate(rows):
            if text.count(" ") != n_values - 1:
                count = len(text.split())
                raise DataError(
                    f"{source}, data row {first_row + first + i + 1}: {count} pixel values, "
                    f"expected {n_values} (48x48)"
                )
        try:
            out[first : first + len(rows)] = _parse_chunk(rows).reshape(len(rows), n_values)
        except ValueError:
            bad = first_row + first + _first_bad_row(rows)
            raise DataError(
                f"{source}, data row {bad + 1}: pixel values must be integers 0..255"
            ) from None
    return out.reshape(-1, IMAGE_SIZE, IMAGE_SIZE)


def _parse_chunk(rows: list[str]) -> np.ndarray:
    """Values of space-separated decimal tokens in rows; ValueError on anything else."""
    try:
        buffer = np.frombuffer((" ".join(rows) + " ").encode("ascii"), dtype=np.uint8)
    except UnicodeEncodeError:
        raise ValueError("non-ASCII pixel text") from None
    space = buffer == 32
    if ((buffer < 48) | (buffer > 57))[~space].any():
        raise ValueError("non-digit pixel text")
    ends = np.flatnonzero(space)
    lengths = np.diff(ends, prepend=-1) - 1
    if (lengths < 1).any() or (lengths > 3).any():
        raise ValueError("empty or too long pixel value")
    digits = buffer - np.uint8(48)
    # value = last digit + 10 * second-to-last + 100 * third-to-last, where present.
    values = digits[ends - 1].astype(np.int16)
    two = np.flatnonzero(lengths >= 2)
    values[two] += 10 * digits[ends[two] - 2].astype(np.int16)
    three = np.flatnonzero(lengths == 3)
    values[three] += 100 * digits[ends[three] - 3].astype(np.int16)
    if (values > 255).any():
        raise ValueError("pixel value above 255")
    return values.astype(np.uint8)


def _needs_normalising(pixels: list[str]) -> bool:
    # Cheap check on a sample: tabs, double or edge spaces need a slower split/join pass.
    return any("  " in p or "\t" in p or p[:1] == " " or p[-1:] == " " for p in pixels)


def _first_bad_row(pixels: list[str]) -> int:
    for i, text in enumerate(pixels):
        if not all(token.isdigit() for token in text.split(" ")):
            return i
    return 0


# ----------------------------------------------------------------------------- archive


@dataclass(frozen=True)
class _Member:
    """One image file of an archive, before decoding."""

    name: str  # path inside the archive, for messages and provenance
    top: str  # "train" or "test"
    label: int
    read: Callable[[], bytes]


def read_archive_zip(path: str | os.PathLike) -> FerData:
    """Read the Kaggle folder layout from a .zip without extracting it to disk."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{path.name}: not a readable zip archive ({exc})") from None
    with archive:
        # Symbolic links (by their Unix mode bits) are skipped, as in folders: never followed.
        infos = [
            info
            for info in archive.infolist()
            if not info.is_dir() and (info.external_attr >> 16) & 0o170000 != 0o120000
        ]
        if len(infos) > MAX_ARCHIVE_MEMBERS:
            raise DataError(f"{path.name}: too many files ({len(infos)}) for a FER2013 archive")
        total = 0
        for info in infos:
            if info.file_size > MAX_MEMBER_BYTES:
                raise DataError(
                    f"{path.name}: member {info.filename} is too large ({info.file_size} bytes) "
                    "for a 48x48 face image"
                )
            total += info.file_size
        if total > MAX_TOTAL_BYTES:
            raise DataError(f"{path.name}: archive unpacks to {total} bytes, too large")
        names = [info.filename for info in infos]

        def reader(member: str):
            return lambda: read_zip_member(archive, member, MAX_MEMBER_BYTES, path.name)

        members = list(_classify_members(names, reader, path.name))
        return _decode_members(members, str(path))


def list_files(root: Path) -> list[str]:
    """Relative POSIX paths of the regular files under `root`; links are never followed (nothing
    outside the folder is read) and FIFOs and devices are skipped."""
    files = []
    for dirpath, _dirnames, filenames in os.walk(root, followlinks=False):
        for filename in filenames:
            full = Path(dirpath) / filename
            if not full.is_symlink() and full.is_file():
                files.append(full.relative_to(root).as_posix())
    return files


def read_zip_member(archive: zipfile.ZipFile, member: str, limit: int, source: str) -> bytes:
    """One member's bytes, at most `limit`; DataError for a corrupt member (bad CRC, broken
    deflate data, a size that lies), an encrypted one (RuntimeError), an unknown compression
    method (NotImplementedError) or one larger than `limit` whatever its header says."""
    try:
        with archive.open(member) as handle:
            data = handle.read(limit + 1)
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        OSError,
        RuntimeError,
        NotImplementedError,
    ) as exc:
        raise DataError(f"{source}: cannot read member {member} ({exc})") from None
    if len(data) > limit:
        raise DataError(f"{source}: member {member} is too large (over {limit // 2**20} MB)")
    return data


def read_archive_folder(path: str | os.PathLike) -> FerData:
    """Read an extracted Kaggle archive: a folder holding train/ and test/ (possibly one level down)."""
    root = Path(path)
    files = list_files(root)
    if len(files) > MAX_ARCHIVE_MEMBERS:
        raise DataError(f"{root.name}: too many files ({len(files)}) for a FER2013 archive")

    def reader(member: str):
        def read() -> bytes:
            full = root / member
            if full.stat().st_size > MAX_MEMBER_BYTES:
                raise DataError(f"{member}: too large for a 48x48 face image")
            return full.read_bytes()

        return read

    members = list(_classify_members(files, reader, root.name))
    return _decode_members(members, str(root))


def _classify_members(names: list[str], reader, source: str) -> Iterator[_Member]:
    """Find <root>/train|test/<class>/<image> entries; refuse unknown class folders."""
    unknown: set[str] = set()
    found = 0
    for name in names:
        parts = [p for p in name.replace("\\", "/").split("/") if p]
        if any(p == ".." for p in parts) or name.startswith("/"):
            raise DataError(f"{source}: unsafe path in archive: {name!r}")
        if len(parts) < 3 or Path(parts[-1]).suffix.lower() not in _IMAGE_SUFFIXES:
            continue
        if parts[-1].startswith("._") or "__MACOSX" in parts:
            continue  # macOS resource forks
        top = parts[-3].lower()
        if top not in ("train", "test"):
            continue
        label = folder_to_index(parts[-2])
        if label is None:
            unknown.add(parts[-2])
            continue
        found += 1
        yield _Member(name=name, top=top, label=label, read=reader(name))
    if unknown:
        raise DataError(
            f"{source}: unknown class folder(s) {', '.join(sorted(unknown))}; "
            f"expected {', '.join(CLASSES)}"
        )
    if not found:
        raise DataError(
            f"{source}: no images found; expected train/<class>/*.png and test/<class>/*.png"
        )


def _declared_pixels(blob: bytes) -> tuple[int, int] | None:
    """(width, height) from an image's header without decoding it; None if unreadable."""
    if blob[:8] == _PNG_SIGNATURE and blob[12:16] == b"IHDR" and len(blob) >= 24:
        return struct.unpack(">II", blob[16:24])  # the common case, without PIL
    from PIL import Image

    # PIL warns on stderr above ~89 megapixels; the caller's smaller limit says it more clearly.
    # The warning filters are process-wide, so threads change them one at a time.
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(blob)) as image:
                return image.size
        except Image.DecompressionBombError:
            return (2**31, 2**31)
        except Exception:  # PIL raises many types on a hostile header: unreadable
            return None


def _decode_members(members: list[_Member], source: str) -> FerData:
    import cv2  # imported here so that reading a CSV never needs OpenCV

    def decode(item: tuple[_Member, bytes]) -> np.ndarray:
        member, blob = item
        size = _declared_pixels(blob)
        if size is None:
            raise DataError(f"{Path(source).name}: cannot decode image {member.name}")
        if size[0] * size[1] > MAX_MEMBER_PIXELS:
            raise DataError(
                f"{Path(source).name}: image {member.name} is {size[0]}x{size[1]} pixels, "
                "too large for a face image"
            )
        image = cv2.imdecode(np.frombuffer(blob, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise DataError(f"{Path(source).name}: cannot decode image {member.name}")
        if image.shape != (IMAGE_SIZE, IMAGE_SIZE):
            image = cv2.resize(image, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
        return image

    # zipfile objects are not thread-safe for concurrent reads: read bytes serially, decode in
    # parallel, in batches of bounded size (however much the archive unpacks to, only one batch
    # of encoded bytes is in memory at a time).
    # Decoded faces go straight into one array: a list of 30k small arrays would leave the heap
    # fragmented long after the load.
    images = np.empty((len(members), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 2)) as pool:
        batch: list[tuple[_Member, bytes]] = []
        batch_bytes, done = 0, 0
        for i, member in enumerate(members):
            blob = member.read()
            batch.append((member, blob))
            batch_bytes += len(blob)
            if batch_bytes >= _BATCH_BYTES or i == len(members) - 1:
                for image in pool.map(decode, batch):
                    images[done] = image
                    done += 1
                batch, batch_bytes = [], 0
    splits, rows = [], []
    for member in members:
        match = _PREFIX_RE.match(Path(member.name).name)
        if match:
            splits.append(_USAGE_TO_SPLIT[match.group(1).lower()])
            rows.append(int(match.group(2)))
        else:
            splits.append(0 if member.top == "train" else SPLITS.index("test_unlabelled_split"))
            rows.append(-1)
        if member.top == "train" and splits[-1] != 0:
            splits[-1] = 0  # a train/ folder is training data whatever its file names say
    order = np.lexsort((np.asarray(rows), np.asarray(splits)))  # stable, reproducible order
    return FerData(
        images=images[order],
        labels=np.asarray([m.label for m in members], dtype=np.int64)[order],
        splits=np.asarray(splits, dtype=np.int8)[order],
        rows=np.asarray(rows, dtype=np.int64)[order],
        names=tuple(members[i].name for i in order),
        source=source,
    )


# ----------------------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    """$FER_CACHE_DIR, else ~/.cache/fer_core."""
    env = os.environ.get("FER_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "fer_core"


def _cache_file(path: Path, cache_dir: str | os.PathLike | None) -> Path | None:
    if cache_dir == "":
        return None
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if path.is_dir():
        # A folder changes when any file does: key on the newest mtime and the file count.
        stats = [p.stat() for p in path.rglob("*") if p.is_file() and not p.is_symlink()]
        stamp = f"{len(stats)}:{max((s.st_mtime_ns for s in stats), default=0)}"
    else:
        stat = path.stat()
        stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
    key = hashlib.sha256(f"{CACHE_FORMAT}|{path.resolve()}|{stamp}".encode()).hexdigest()[:24]
    return folder / f"{key}.npz"


def _read_cache(cache_file: Path, source: str) -> FerData | None:
    try:
        with np.load(cache_file, allow_pickle=False) as npz:
            names = npz["names"]
            return FerData(
                images=npz["images"],
                labels=npz["labels"],
                splits=npz["splits"],
                rows=npz["rows"],
                names=tuple(names.tolist()) if names.size else ("",) * len(npz["labels"]),
                source=source,
            )
    except Exception:  # a corrupt or foreign cache file is simply rebuilt
        return None


def _write_cache(cache_file: Path, data: FerData) -> None:
    names = np.asarray(data.names) if any(data.names) else np.asarray([], dtype="<U1")
    # Any: numpy's stub types **kwds against savez's allow_pickle: bool as well.
    arrays: dict[str, Any] = {"images": data.images, "labels": data.labels, "splits": data.splits,
              "rows": data.rows, "names": names}  # fmt: skip
    with contextlib.suppress(OSError):  # caching is an optimisation: a read-only home must not
        atomic_write(cache_file, lambda handle: np.savez(handle, **arrays))  # break loading


# ----------------------------------------------------------------------------- splits and weights


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int = 0, n_held: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (keep, held_out) with `fraction` of each class held out, seed-stable.

    With n_held, exactly that many are held out: each class's share is rounded so that the
    shares add up (largest remainder), where rounding each class alone may miss by a few."""
    if not 0.0 < fraction < 1.0:
        raise ValueError("fraction must be in (0, 1)")
    sizes = np.bincount(labels, minlength=NUM_CLASSES)[:NUM_CLASSES]
    quota = sizes * fraction
    if n_held is None:
        per_class = [round(q) for q in quota]
    else:
        per_class = np.floor(quota).astype(int)
        short = int(n_held) - int(per_class.sum())
        per_class[np.argsort(-(quota - per_class), kind="stable")[: max(short, 0)]] += 1
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for cls in range(NUM_CLASSES):
        index = np.flatnonzero(labels == cls)
        rng.shuffle(index)
        held.append(index[: per_class[cls]])
        keep.append(index[per_class[cls] :])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))


def class_weights(counts: np.ndarray, scheme: str = "inverse", beta: float = 0.999) -> np.ndarray:
    """Per-class loss weights, normalised to mean 1 over the classes present.

    inverse: N / (K * n_c). effective: (1 - beta) / (1 - beta^n_c) (Cui et al. 2019).
    """
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    weights = np.zeros_like(counts)
    if scheme == "none":
        weights[present] = 1.0
    elif scheme == "inverse":
        weights[present] = counts[present].sum() / (present.sum() * counts[present])
    elif scheme == "effective":
        weights[present] = (1.0 - beta) / (1.0 - np.power(beta, counts[present]))
    else:
        raise ValueError(f"unknown class weighting {scheme!r}: none, inverse or effective")
    weights[present] /= weights[present].mean()
    return weights


# ----------------------------------------------------------------------------- FER+


def read_ferplus_votes(path: str | os.PathLike) -> tuple[list[str], dict[int, np.ndarray]]:
    """FER+ vote counts (`fer2013new.csv`): (vote column names, {csv_row: votes}).

    Rows with no image name (FER+ judged them not a face) or no votes at all are left out.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = [h.strip().lower() for h in next(reader)]
            rows = list(reader)
    except (OSError, StopIteration, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path.name}: cannot read FER+ labels ({exc})") from None
    if "image name" not in header:
        raise DataError(f"{path.name}: not a FER+ file (no 'Image name' column)")
    i_name = header.index("image name")
    columns = header[i_name + 1 :]
    votes: dict[int, np.ndarray] = {}
    for row_index, record in enumerate(rows):
        if len(record) <= i_name or not record[i_name].strip():
            continue
        try:
            counts = np.array([int(v) for v in record[i_name + 1 : i_name + 1 + len(columns)]])
        except ValueError:
            continue
        if len(counts) == len(columns) and counts.max(initial=0) > 0:
            votes[row_index] = counts
    return columns, votes


def load_ferplus(path: str | os.PathLike) -> dict[int, int]:
    """FER+ majority-vote labels as {csv_row: class_index}.

    Rows with no image name (FER+ judged them not a face) are dropped, and so are rows whose
    majority vote is contempt, unknown or not-a-face, which have no FER2013 class.
    """
    columns, votes = read_ferplus_votes(path)
    result: dict[int, int] = {}
    for row_index, counts in votes.items():
        winner = columns[int(np.argmax(counts))]
        if winner in FERPLUS_COLUMNS:
            result[row_index] = CLASSES.index(FERPLUS_COLUMNS[winner])
    return result


def ferplus_targets(
    path: str | os.PathLike, rows: np.ndarray, labels: np.ndarray, weight: float
) -> tuple[np.ndarray, int]:
    """Soft labels for training: per image, (1 - weight) x its own label + weight x the FER+
    annotators' vote shares over our seven classes (contempt, unknown and not-a-face votes are
    left out). Images with no FER+ votes for our classes, or no CSV row, keep their own label.

    Returns ((N, 7) float32 targets whose rows sum to 1, how many images got FER+ votes).
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError("the FER+ weight must be in [0, 1]")
    columns, votes = read_ferplus_votes(path)
    ours = [
        (i, CLASSES.index(FERPLUS_COLUMNS[c]))
        for i, c in enumerate(columns)
        if c in FERPLUS_COLUMNS
    ]
    source = np.array([i for i, _ in ours])
    target_class = np.array([k for _, k in ours])
    targets = np.eye(NUM_CLASSES, dtype=np.float32)[np.asarray(labels, dtype=np.int64)]
    covered = 0
    for n, row in enumerate(np.asarray(rows)):
        counts = votes.get(int(row))
        if counts is None:
            continue
        share = np.zeros(NUM_CLASSES, dtype=np.float32)
        np.add.at(share, target_class, counts[source].astype(np.float32))
        if share.sum() <= 0:
            continue
        targets[n] = (1.0 - weight) * targets[n] + weight * share / share.sum()
        covered += 1
    return targets, covered


# ----------------------------------------------------------------------------- Kaggle download


KAGGLE_DATASET = "msambare/fer2013"


def download_kaggle(dataset: str = KAGGLE_DATASET) -> Path:
    """Download the Kaggle archive with kagglehub (only when the user asks). Returns its folder."""
    try:
        import kagglehub
    except ImportError:
        raise DataError(
            "Kaggle download needs the kagglehub package: pip install kagglehub"
        ) from None
    try:
        return Path(kagglehub.dataset_download(dataset))
    except Exception as exc:  # network, credentials, or Kaggle itself
        raise DataError(
            f"Kaggle download of {dataset} failed ({type(exc).__name__}: {exc}). Check the network "
            "connection and KAGGLE_USERNAME / KAGGLE_KEY, or download the archive by hand."
        ) from None
