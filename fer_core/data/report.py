"""Dataset report: class counts, imbalance, class weights, exact duplicates and blank images.

Pure data in, a `DatasetReport` out; the CLI prints it, the app draws it, tests check it against the
counts in the data's README.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np

from fer_core.data.fer2013 import SPLITS, FerData, class_weights
from fer_core.labels import CLASSES


@dataclass(frozen=True)
class DuplicateGroup:
    """Indices (into FerData) of images that are byte-identical."""

    indices: list[int]
    labels: list[str]
    splits: list[str]

    @property
    def conflicting(self) -> bool:
        return len(set(self.labels)) > 1


@dataclass(frozen=True)
class DatasetReport:
    source: str
    n_images: int
    counts: dict[str, dict[str, int]]  # split -> class -> count
    imbalance_ratio: float  # largest / smallest class count in train
    class_weights: dict[str, dict[str, float]]  # scheme -> class -> weight (from train counts)
    duplicates_within: dict[str, int]  # split -> redundant copies inside that split
    duplicates_across: dict[str, int]  # "public_test~train" -> rows with a twin in the other split
    conflicting_duplicate_groups: int
    duplicate_groups: list[DuplicateGroup]
    blank_indices: list[int]
    blank_by_split: dict[str, int]

    def to_dict(self, with_groups: bool = False) -> dict:
        out = asdict(self)
        if not with_groups:
            out.pop("duplicate_groups")
            out.pop("blank_indices")
        return out


def image_hashes(images: np.ndarray) -> np.ndarray:
    """A 16-byte digest per image, as a (N,) array of bytes objects (exact-duplicate keys)."""
    flat = images.reshape(len(images), -1)
    return np.array([hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in flat])


def blank_mask(images: np.ndarray) -> np.ndarray:
    """Images with a single grey level (FER2013 holds a few all-black frames)."""
    flat = images.reshape(len(images), -1)
    return flat.min(axis=1) == flat.max(axis=1)


def build_report(data: FerData) -> DatasetReport:
    splits_present = [SPLITS[c] for c in sorted(set(data.splits.tolist()))]
    counts = {
        split: dict(zip(CLASSES, data.class_counts(split).tolist())) for split in splits_present
    }
    train_counts = data.class_counts("train") if "train" in splits_present else data.class_counts()
    nonzero = train_counts[train_counts > 0]
    imbalance = float(nonzero.max() / nonzero.min()) if len(nonzero) else 0.0
    weights = {
        scheme: dict(zip(CLASSES, np.round(class_weights(train_counts, scheme), 4).tolist()))
        for scheme in ("inverse", "effective")
    }

    hashes = image_hashes(data.images)
    _, inverse, group_sizes = np.unique(hashes, return_inverse=True, return_counts=True)
    groups = []
    for group_id in np.flatnonzero(group_sizes > 1):
        members = np.flatnonzero(inverse == group_id)
        groups.append(
            DuplicateGroup(
                indices=members.tolist(),
                labels=[CLASSES[data.labels[i]] for i in members],
                splits=[SPLITS[data.splits[i]] for i in members],
            )
        )
    within = {split: 0 for split in splits_present}
    across: dict[str, int] = {}
    for group in groups:
        for split in set(group.splits):
            within[split] += group.splits.count(split) - 1
        if "train" in group.splits:
            for split in set(group.splits) - {"train"}:
                key = f"{split}~train"
                across[key] = across.get(key, 0) + group.splits.count(split)

    blanks = blank_mask(data.images)
    return DatasetReport(
        source=data.source,
        n_images=len(data),
        counts=counts,
        imbalance_ratio=round(imbalance, 3),
        class_weights=weights,
        duplicates_within=within,
        duplicates_across=across,
        conflicting_duplicate_groups=sum(g.conflicting for g in groups),
        duplicate_groups=groups,
        blank_indices=np.flatnonzero(blanks).tolist(),
        blank_by_split={s: int(blanks[data.split_mask(s)].sum()) for s in splits_present},
    )


INTENSITY_BINS = 32  # of width 8 over 0..255


def class_pixel_summary(
    data: FerData, split: str = "train"
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The mean face (48x48 uint8) and the pixel-intensity distribution (32 bins of width 8,
    summing to 1) of each class present in `split`. One class is copied at a time, so the
    extra memory stays at one class's images (no float copy of the split)."""
    mask = data.split_mask(split)
    mean_faces, intensity = {}, {}
    for i, name in enumerate(CLASSES):
        faces = data.images[mask & (data.labels == i)]
        if not len(faces):
            continue
        mean_faces[name] = np.round(faces.mean(axis=0, dtype=np.float64)).astype(np.uint8)
        counts = np.bincount((faces >> 3).ravel(), minlength=INTENSITY_BINS)
        intensity[name] = counts / counts.sum()
    return mean_faces, intensity


@dataclass(frozen=True)
class FerPlusAgreement:
    """How FER2013's labels compare with the FER+ majority vote of 10 annotators."""

    n: int  # faces with a FER+ majority in one of the 7 classes
    agreement: float  # share of them where both labels are the same
    confusion: list[list[int]]  # rows: FER2013 label, columns: FER+ majority
    confusion_normalized: list[list[float]]  # each row sums to 1 (0 where a row is empty)


def ferplus_agreement(data: FerData, votes: dict[int, int]) -> FerPlusAgreement:
    """Compare `data`'s labels with FER+ majorities ({csv_row: class index}, `load_ferplus`)."""
    from sklearn.metrics import confusion_matrix

    has = np.array([int(r) in votes for r in data.rows], dtype=bool)
    fer = data.labels[has]
    plus = np.array([votes[int(r)] for r in data.rows[has]], dtype=np.int64)
    cm = confusion_matrix(fer, plus, labels=list(range(len(CLASSES))))
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    return FerPlusAgreement(
        n=int(has.sum()),
        agreement=float((fer == plus).mean()) if has.any() else 0.0,
        confusion=cm.tolist(),
        confusion_normalized=norm.tolist(),
    )
