"""Readers against the real FER2013 files and small generated fixtures."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import CSV_PATH, FERPLUS_PATH, face_pixels, write_archive, write_csv

from fer_core.data.fer2013 import (
    SPLITS,
    class_weights,
    load_dataset,
    load_ferplus,
    parse_pixel_strings,
    stratified_split,
)
from fer_core.errors import DataError
from fer_core.labels import CLASSES, csv_label_to_index, folder_to_index

# Counts from ../shared/data/README.md, in the canonical order (angry .. neutral).
README_TRAIN = [3995, 436, 4097, 7215, 4830, 3171, 4965]
README_PUBLIC = [467, 56, 496, 895, 653, 415, 607]


def test_canonical_order_is_the_csv_order():
    assert CLASSES == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert [csv_label_to_index(i) for i in range(7)] == list(range(7))
    with pytest.raises(ValueError):
        csv_label_to_index(7)


def test_folder_names_map_by_name_not_alphabetical_position():
    alphabetical = sorted(CLASSES)  # the archive's folder order
    assert alphabetical[4] == "neutral" and folder_to_index("neutral") == 6
    assert folder_to_index("SAD") == 4 and folder_to_index("Surprised") == 5
    assert folder_to_index("contempt") is None


def test_csv_counts_match_readme(csv_data):
    assert csv_data.images.shape == (32298, 48, 48) and csv_data.images.dtype == np.uint8
    assert csv_data.class_counts("train").tolist() == README_TRAIN
    assert csv_data.class_counts("public_test").tolist() == README_PUBLIC
    assert csv_data.class_counts("private_test").sum() == 0
    assert np.array_equal(csv_data.rows, np.arange(32298))


def test_zip_counts_match_readme(zip_data):
    assert zip_data.class_counts("train").tolist() == README_TRAIN
    assert zip_data.class_counts("public_test").tolist() == README_PUBLIC
    assert len(zip_data.split("test")) == 3589


def test_same_face_same_label_across_formats(csv_data, zip_data):
    """Archive file names carry the CSV row index: every image and label must agree."""
    assert (zip_data.rows >= 0).all()
    images = csv_data.images[zip_data.rows]
    assert np.array_equal(images, zip_data.images)
    assert np.array_equal(csv_data.labels[zip_data.rows], zip_data.labels)
    assert np.array_equal(csv_data.splits[zip_data.rows], zip_data.splits)


def test_second_load_is_cached_and_fast(csv_data):
    start = time.perf_counter()
    again = load_dataset(CSV_PATH)
    assert time.perf_counter() - start < 5  # the benchmark holds the 2 s target; this is a guard
    assert np.array_equal(again.images, csv_data.images)


def test_csv_with_private_test_rows(tmp_path):
    rows = [
        (i % 7, face_pixels(i), u)
        for i, u in enumerate(["Training"] * 5 + ["PublicTest"] * 3 + ["PrivateTest"] * 4)
    ]
    data = load_dataset(write_csv(tmp_path / "f.csv", rows), cache_dir="")
    assert [len(data.split(s)) for s in ("train", "public_test", "private_test", "test")] == [
        5,
        3,
        4,
        7,
    ]
    assert np.array_equal(data.images[7], face_pixels(7))
    assert data.labels.tolist() == [i % 7 for i in range(12)]


def test_gzip_csv_and_missing_usage_means_train(tmp_path):
    rows = [(3, face_pixels(i), None) for i in range(4)]
    data = load_dataset(write_csv(tmp_path / "f.csv.gz", rows), cache_dir="")
    assert len(data.split("train")) == 4 and data.available_splits() == ["train"]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r.replace("emotion,", "label,", 1), "missing column"),
        (lambda r: r.replace(",Training", ",Validation", 1), "unknown Usage"),
        (lambda r: r.replace("\n3,", "\n9,", 1), "unknown emotion label"),
        (lambda r: r.replace(" 0 ", " x ", 1) if " 0 " in r else r.replace(" ", " x", 1), "0..255"),
        (lambda r: r.replace(" ", "  999 ", 1), "pixel values"),
    ],
)
def test_bad_csv_gives_clear_error(tmp_path, mutate, message):
    path = write_csv(tmp_path / "good.csv", [(3, face_pixels(i), "Training") for i in range(3)])
    bad = tmp_path / "bad.csv"
    bad.write_text(mutate(path.read_text()))
    with pytest.raises(DataError, match=message):
        load_dataset(bad, cache_dir="")


def test_parse_pixel_strings_counts_and_values():
    values = np.arange(2304) % 256
    text = " ".join(map(str, values))
    assert np.array_equal(parse_pixel_strings([text, text]).reshape(2, -1)[1], values)
    with pytest.raises(DataError, match="2303 pixel values"):
        parse_pixel_strings([" ".join(map(str, values[:-1]))])


@pytest.mark.parametrize("as_zip", [True, False])
def test_archive_layouts(tmp_path, as_zip):
    """Prefixed names give splits; odd folder case, JPG, nested root and a missing class work."""
    files = {
        "fer/Train/ANGRY/Training_10.png": face_pixels(1),
        "fer/Train/happy/Training_3.jpg": face_pixels(2),
        "fer/test/Neutral/PublicTest_40.png": face_pixels(3),
        "fer/test/sad/PrivateTest_50.png": face_pixels(4),
        "fer/test/sad/PrivateTest_51.png": face_pixels(5),
    }
    data = load_dataset(write_archive(tmp_path / "arch", files, as_zip), cache_dir="")
    assert len(data) == 5
    assert data.class_counts("train").tolist() == [1, 0, 0, 1, 0, 0, 0]
    assert data.split("public_test").labels.tolist() == [6]
    assert sorted(data.split("private_test").rows.tolist()) == [50, 51]
    angry = data.images[data.rows.tolist().index(10)]
    assert np.array_equal(angry, face_pixels(1))  # PNG is lossless


def test_archive_without_prefixes_puts_test_in_test(tmp_path):
    files = {
        "train/fear/a.png": face_pixels(1),
        "test/fear/b.png": face_pixels(2),
        "test/happy/c.png": face_pixels(3),
    }
    data = load_dataset(write_archive(tmp_path / "plain", files, as_zip=True), cache_dir="")
    assert len(data.split("test")) == 2 and len(data.split("public_test")) == 0
    assert (data.rows == -1).all()


def test_archive_unknown_class_folder_is_refused(tmp_path):
    files = {"train/contempt/a.png": face_pixels(1), "train/happy/b.png": face_pixels(2)}
    with pytest.raises(DataError, match="unknown class folder"):
        load_dataset(write_archive(tmp_path / "x", files, as_zip=True), cache_dir="")


def test_not_a_dataset(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="not a FER2013 dataset"):
        load_dataset(tmp_path / "notes.txt")
    with pytest.raises(DataError, match="not found"):
        load_dataset(tmp_path / "missing.csv")
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(DataError, match="zip"):
        load_dataset(tmp_path / "broken.zip", cache_dir="")


def test_stratified_split_is_stable_and_stratified(csv_data):
    labels = csv_data.split("train").labels
    keep, held = stratified_split(labels, 0.1, seed=7)
    keep2, held2 = stratified_split(labels, 0.1, seed=7)
    assert np.array_equal(held, held2) and np.array_equal(keep, keep2)
    assert len(np.intersect1d(keep, held)) == 0 and len(keep) + len(held) == len(labels)
    share = np.bincount(labels[held], minlength=7) / np.bincount(labels, minlength=7)
    assert np.allclose(share, 0.1, atol=0.01)
    assert not np.array_equal(held, stratified_split(labels, 0.1, seed=8)[1])


def test_class_weights():
    counts = np.array([100, 10, 100, 400, 100, 100, 100])
    inverse = class_weights(counts, "inverse")
    assert inverse.mean() == pytest.approx(1.0) and inverse.argmax() == 1 and inverse.argmin() == 3
    effective = class_weights(counts, "effective")
    assert effective.mean() == pytest.approx(1.0) and effective.argmax() == 1
    # the effective number is gentler than inverse frequency on the rarest class
    assert effective[1] < inverse[1]


def test_ferplus_majority_labels(csv_data):
    labels = load_ferplus(FERPLUS_PATH)
    assert 30000 < len(labels) < 32298  # rows without an image name or a class-less vote drop
    rows = np.array(sorted(labels))
    agree = np.mean([labels[r] == csv_data.labels[r] for r in rows])
    assert 0.6 < agree < 0.95  # FER+ relabels a share of FER2013, but mostly agrees


def test_split_names():
    assert SPLITS[:3] == ("train", "public_test", "private_test")


def test_training_subset_has_exactly_the_requested_size(csv_data):
    """Rounding each class's share alone gave 4001 images for a subset of 4000, 1999 for 2000."""
    from fer_core.training.runs import DataSelection, select_data

    labels = csv_data.split("train").labels
    for n in (100, 1999, 2000, 4000, 6000, 28000):
        _, held = stratified_split(labels, n / len(labels), seed=0, n_held=n)
        assert len(held) == n
        share = np.bincount(labels[held], minlength=7) / np.bincount(labels, minlength=7)
        assert np.allclose(share, n / len(labels), atol=0.01)
        x_train, y_train, _, _ = select_data(csv_data, DataSelection(limit=n))
        assert len(x_train) == len(y_train) == n


def test_ferplus_soft_labels_blend_the_votes_with_the_label(csv_data):
    from fer_core.data.fer2013 import ferplus_targets, read_ferplus_votes

    train = csv_data.split("train")
    rows, labels = train.rows[:2000], train.labels[:2000]
    columns, votes = read_ferplus_votes(FERPLUS_PATH)
    hard, covered = ferplus_targets(FERPLUS_PATH, rows, labels, 0.0)
    assert np.array_equal(hard, np.eye(len(CLASSES), dtype=np.float32)[labels])
    soft, covered = ferplus_targets(FERPLUS_PATH, rows, labels, 0.4)
    assert soft.shape == (2000, len(CLASSES)) and np.allclose(soft.sum(1), 1.0, atol=1e-6)
    assert 1800 < covered <= 2000
    # one image by hand: its own label at 0.6 plus 0.4 x the shares of our seven classes' votes
    i = next(i for i in range(2000) if int(rows[i]) in votes and soft[i].max() < 0.99)
    counts = dict(zip(columns, votes[int(rows[i])]))
    ours = np.array([counts[c] for c in ("anger", "disgust", "fear", "happiness", "sadness",
                                         "surprise", "neutral")], dtype=np.float64)  # fmt: skip
    expected = 0.4 * ours / ours.sum()
    expected[labels[i]] += 0.6
    assert np.allclose(soft[i], expected, atol=1e-6)
    # an image FER+ has no votes for keeps its own label
    missing = [i for i in range(2000) if int(rows[i]) not in votes]
    assert all(soft[i][labels[i]] == 1.0 for i in missing)
    with pytest.raises(ValueError):
        ferplus_targets(FERPLUS_PATH, rows, labels, 1.5)
