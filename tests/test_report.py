"""The dataset report against the quirks listed in ../shared/data/README.md."""

import numpy as np

from fer_core.data.report import build_report
from fer_core.labels import CLASSES


def test_report_on_real_csv(csv_data):
    report = build_report(csv_data)
    assert report.duplicates_within == {"train": 1236, "public_test": 26}
    assert report.duplicates_across == {"public_test~train": 280}
    assert report.conflicting_duplicate_groups > 0
    assert report.blank_by_split == {"train": 11, "public_test": 1}
    assert csv_data.rows[next(i for i in report.blank_indices if csv_data.splits[i] == 1)] == 30002
    assert report.imbalance_ratio == round(7215 / 436, 3)
    assert report.class_weights["inverse"]["disgust"] > report.class_weights["inverse"]["happy"]
    assert set(report.to_dict()) >= {"counts", "imbalance_ratio", "class_weights"}


def test_class_pixel_summary_matches_a_plain_computation(csv_data):
    from fer_core.data.report import class_pixel_summary

    mean_faces, intensity = class_pixel_summary(csv_data)
    train = csv_data.split("train")
    assert list(mean_faces) == list(CLASSES)  # every class is in FER2013's train split
    for i, name in enumerate(CLASSES):
        faces = train.images[train.labels == i]
        expected = np.histogram(faces, bins=np.linspace(0, 256, 33))[0]
        assert np.allclose(intensity[name], expected / expected.sum())
        assert np.abs(mean_faces[name].astype(float) - faces.mean(0)).max() <= 0.5
