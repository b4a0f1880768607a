"""Labelled photo sets: a folder or `.zip` of `<emotion>/<image>` photos of any size and format.

Unlike FER2013 (48x48 faces), these are ordinary photos: faces are detected and cropped the way the
photo pipeline does it before the model sees them, so evaluating on such a set measures what users
get. Class folders use any common name (anger/angry, happiness/happy, surprised, ...; any case);
folders that map to no class (contempt, unknown) are reported once and skipped.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer_core.data.fer2013 import list_files, read_zip_member
from fer_core.errors import DataError, FerError
from fer_core.labels import CLASSES, folder_to_index
from fer_core.vision.faces import MAX_FILE_BYTES, load_image

PHOTO_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
MAX_PHOTOS = 100_000
MAX_TOTAL_BYTES = 4 * 1024**3


@dataclass(frozen=True)
class PhotoSet:
    """Photos with labels. `names[i]` is the path inside the set, `labels[i]` a class index."""

    names: tuple[str, ...]
    labels: np.ndarray  # (N,) int64, canonical class order
    source: str
    skipped: dict[str, int] = field(default_factory=dict)  # unmapped folder -> images in it
    _read: Callable[[str], bytes] | None = None

    def __len__(self) -> int:
        return len(self.names)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(CLASSES))

    def read(self, i: int) -> bytes:
        assert self._read is not None
        return self._read(self.names[i])

    def images(self) -> Iterator[tuple[int, np.ndarray | None, str]]:
        """(index, RGB image or None, error message or "") for every photo, in order."""
        for i, name in enumerate(self.names):
            try:
                yield i, load_image(self.read(i), name=name), ""
            except FerError as exc:
                yield i, None, str(exc)


def is_photo_set(path: str | os.PathLike) -> bool:
    """True for a folder or zip of class folders that is not FER2013's train/ + test/ layout."""
    path = Path(path)
    if not (path.is_dir() or (path.is_file() and path.suffix.lower() == ".zip")):
        return False
    try:
        names = _list_folder(path) if path.is_dir() else _list_zip(path)[0]
    except DataError:
        return False
    images = [_parts(n) for n in names if Path(n).suffix.lower() in PHOTO_SUFFIXES]
    if any(len(p) >= 3 and p[-3].lower() in ("train", "test") for p in images):
        return False  # the Kaggle FER2013 archive
    return any(len(p) >= 2 and folder_to_index(p[-2]) is not None for p in images)


def read_photo_set(path: str | os.PathLike) -> PhotoSet:
    """Read the layout of a folder or `.zip` of `<emotion>/<image>` photos (nested roots allowed).

    Nothing is decoded here; `PhotoSet.images()` decodes one photo at a time.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"photo set not found: {path}")
    if path.is_dir():
        names, reader = _list_folder(path), _folder_reader(path)
    elif path.is_file() and path.suffix.lower() == ".zip":
        names, reader = _list_zip(path)
    else:
        raise DataError(
            f"{path.name}: a photo set is a folder or a .zip of <emotion>/<image> files"
        )
    kept: list[str] = []
    labels: list[int] = []
    skipped: dict[str, int] = {}
    for name in sorted(names):
        parts = _parts(name)
        if Path(name).suffix.lower() not in PHOTO_SUFFIXES or len(parts) < 2:
            continue
        if parts[-1].startswith(".") or "__MACOSX" in parts:
            continue  # hidden files and macOS resource forks
        label = folder_to_index(parts[-2])
        if label is None:
            skipped[parts[-2]] = skipped.get(parts[-2], 0) + 1
            continue
        kept.append(name)
        labels.append(label)
    if not kept:
        raise DataError(
            f"{path.name}: no labelled photos found; expected <emotion>/<image> with emotion one "
            f"of {', '.join(CLASSES)}"
            + (f" (found only {', '.join(sorted(skipped))})" if skipped else "")
        )
    return PhotoSet(tuple(kept), np.asarray(labels, np.int64), str(path), skipped, reader)


def _parts(name: str) -> list[str]:
    return [p for p in name.replace("\\", "/").split("/") if p]


def _list_folder(root: Path) -> list[str]:
    files = list_files(root)
    if len(files) > MAX_PHOTOS:
        raise DataError(f"{root.name}: more than {MAX_PHOTOS} files")
    return files


def _folder_reader(root: Path) -> Callable[[str], bytes]:
    def read(name: str) -> bytes:
        full = root / name
        if full.stat().st_size > MAX_FILE_BYTES:
            raise DataError(f"{name}: larger than {MAX_FILE_BYTES // 2**20} MB")
        return full.read_bytes()

    return read


def _list_zip(path: Path) -> tuple[list[str], Callable[[str], bytes]]:
    try:
        archive = zipfile.ZipFile(path)
        infos = [
            i
            for i in archive.infolist()
            if not i.is_dir() and (i.external_attr >> 16) & 0o170000 != 0o120000  # no symlinks
        ]
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{path.name}: not a readable zip archive ({exc})") from None
    if len(infos) > MAX_PHOTOS:
        raise DataError(f"{path.name}: more than {MAX_PHOTOS} files")
    if sum(i.file_size for i in infos) > MAX_TOTAL_BYTES:
        raise DataError(f"{path.name}: unpacks to more than {MAX_TOTAL_BYTES // 2**30} GB")
    for info in infos:
        if info.filename.startswith("/") or ".." in _parts(info.filename):
            raise DataError(f"{path.name}: unsafe path in archive: {info.filename!r}")

    def read(name: str) -> bytes:
        return read_zip_member(archive, name, MAX_FILE_BYTES, path.name)

    return [i.filename for i in infos], read
