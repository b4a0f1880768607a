"""Metrics on a known confusion matrix, ordering of mistakes, JSON round trip."""

import json

import numpy as np
import pytest

from fer_core.evaluate import compute_metrics


def _probs(pred, confidence):
    p = np.full((len(pred), 7), (1 - np.asarray(confidence))[:, None] / 6)
    p[np.arange(len(pred)), pred] = confidence
    return p


def test_known_confusion_matrix():
    y_true = np.array([0, 0, 0, 3, 3, 6, 6, 6, 6, 1])
    y_pred = np.array([0, 0, 3, 3, 3, 6, 6, 0, 6, 6])
    conf = np.array([0.9, 0.8, 0.7, 0.9, 0.6, 0.9, 0.8, 0.95, 0.7, 0.5])
    r = compute_metrics(y_true, _probs(y_pred, conf), rows=np.arange(100, 110))
    cm = np.array(r.confusion_matrix)
    assert cm[0].tolist() == [2, 0, 0, 1, 0, 0, 0]
    assert cm[6].tolist() == [1, 0, 0, 0, 0, 0, 3]
    assert cm[1].tolist() == [0, 0, 0, 0, 0, 0, 1]
    assert cm.sum() == 10 and r.n == 10
    assert r.accuracy == pytest.approx(0.7)
    assert r.per_class["angry"]["precision"] == pytest.approx(2 / 3)
    assert r.per_class["angry"]["recall"] == pytest.approx(2 / 3)
    assert r.per_class["happy"]["precision"] == pytest.approx(2 / 3)
    assert r.per_class["neutral"]["recall"] == pytest.approx(3 / 4)
    assert r.per_class["disgust"]["f1"] == 0 and r.per_class["disgust"]["support"] == 1
    # macro-F1 over the 4 classes that occur (angry, disgust, happy, neutral)
    f1_neutral = 2 * (3 / 4) * (3 / 4) / (3 / 4 + 3 / 4)
    assert r.macro_f1 == pytest.approx((2 / 3 + 0 + 0.8 + f1_neutral) / 4)
    assert r.confusion_matrix_normalized[6][6] == pytest.approx(0.75)
    # most confident mistake first: row 107 (neutral predicted angry at 0.95)
    assert [m.row for m in r.misclassified] == [107, 102, 109]
    assert r.mistakes_in_cell("neutral", "angry")[0].confidence == pytest.approx(0.95)
    back = json.loads(r.to_json())
    assert back["accuracy"] == pytest.approx(0.7) and len(back["misclassified"]) == 3


@pytest.mark.parametrize("seed", range(6))
def test_per_class_scores_are_scikit_learns(seed):
    """The per-class counting matches scikit-learn's precision_recall_fscore_support: with
    predictions of class k (no face found), classes that never occur and classes only
    predicted."""
    from sklearn.metrics import precision_recall_fscore_support

    from fer_core.evaluate import _per_class, macro_f1

    rng = np.random.default_rng(seed)
    k, n = 7, int(rng.integers(1, 300))
    present = rng.choice(k, size=int(rng.integers(1, k + 1)), replace=False)
    y_true = rng.choice(present, size=n)
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, k + 1, size=n))
    precision, recall, f1, macro = _per_class(y_true, y_pred, k)
    expected = precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(k)), average=None, zero_division=0
    )
    for ours, theirs in zip((precision, recall, f1), expected[:3], strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    occurs = np.isin(range(k), y_true) | np.isin(range(k), y_pred)
    assert macro == pytest.approx(float(expected[2][occurs].mean()), abs=1e-12)
    assert macro_f1(y_true, y_pred, k) == macro


def test_empty_input():
    r = compute_metrics(np.zeros(0, dtype=int), np.zeros((0, 7)))
    assert r.n == 0 and r.accuracy == 0.0 and r.misclassified == []


def test_a_kept_evaluation_reads_back_as_the_same_result():
    """The app keeps evaluations as JSON (to_dict) and reads them back with from_dict."""
    import json

    from fer_core.evaluate import EvalResult

    probs = np.eye(7)[[0, 2, 2, 1, 6]] * 0.9 + 0.1 / 7
    result = compute_metrics(np.array([0, 1, 2, 1, 5]), probs, split="public_test")
    again = EvalResult.from_dict(json.loads(result.to_json(max_mistakes=None)))
    assert again == result and again.misclassified[0].true == "disgust"
