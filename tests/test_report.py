"""The dataset report against the quirks listed in ../shared/data/README.md."""

from fer_core.report import build_report


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
