"""Evaluation: returns data (never prints) that the CLI, the app and tests all consume."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from fer_core.labels import CLASSES


@dataclass(frozen=True)
class Mistake:
    index: int  # position in the evaluated set
    row: int  # CSV row index of the image, or -1
    true: str
    pred: str
    confidence: float  # probability of the predicted class
    probs: dict[str, float]


@dataclass(frozen=True)
class EvalResult:
    n: int
    accuracy: float
    macro_f1: float
    per_class: dict[str, dict[str, float]]  # class -> precision, recall, f1, support
    confusion_matrix: list[list[int]]  # rows: true class, columns: predicted
    confusion_matrix_normalized: list[list[float]]  # each row sums to 1 (0 where no support)
    classes: list[str]
    misclassified: list[Mistake] = field(default_factory=list)  # most confident first
    split: str = ""
    tta: str = "none"
    checkpoint: str = ""

    def to_dict(self, max_mistakes: int | None = 100) -> dict:
        out = asdict(self)
        if max_mistakes is not None:
            out["misclassified"] = out["misclassified"][:max_mistakes]
        return out

    def to_json(self, max_mistakes: int | None = 100, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(max_mistakes), indent=indent)

    def mistakes_in_cell(self, true: str, pred: str) -> list[Mistake]:
        """Misclassified examples of one confusion-matrix cell, most confident first."""
        return [m for m in self.misclassified if m.true == true and m.pred == pred]


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    index = np.asarray(y_true) * num_classes + np.asarray(y_pred)
    return np.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def compute_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    classes: tuple[str, ...] | list[str] = CLASSES,
    rows: np.ndarray | None = None,
    **meta,
) -> EvalResult:
    """Metrics from true labels (N,) and predicted probabilities (N, K)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    k = len(classes)
    y_pred = probs.argmax(1) if len(probs) else np.zeros(0, dtype=np.int64)
    cm = confusion_matrix(y_true, y_pred, k)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(1)
    predicted = cm.sum(0)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    f1 = np.divide(
        2 * precision * recall, precision + recall, out=np.zeros(k), where=(precision + recall) > 0
    )
    present = (support + predicted) > 0
    normalized = np.divide(cm, support[:, None], out=np.zeros((k, k)), where=support[:, None] > 0)

    wrong = np.flatnonzero(y_pred != y_true)
    confidence = probs[wrong, y_pred[wrong]] if len(wrong) else np.zeros(0)
    order = wrong[np.argsort(-confidence, kind="stable")]
    rows = np.full(len(y_true), -1) if rows is None else np.asarray(rows)
    mistakes = [
        Mistake(
            index=int(i),
            row=int(rows[i]),
            true=classes[y_true[i]],
            pred=classes[y_pred[i]],
            confidence=round(float(probs[i, y_pred[i]]), 6),
            probs={c: round(float(p), 6) for c, p in zip(classes, probs[i])},
        )
        for i in order
    ]
    n = len(y_true)
    return EvalResult(
        n=n,
        accuracy=float(tp.sum() / n) if n else 0.0,
        macro_f1=float(f1[present].mean()) if present.any() else 0.0,
        per_class={
            c: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, c in enumerate(classes)
        },
        confusion_matrix=cm.tolist(),
        confusion_matrix_normalized=np.round(normalized, 6).tolist(),
        classes=list(classes),
        misclassified=mistakes,
        **meta,
    )


def evaluate_checkpoint(
    ckpt, data, split: str, tta: str = "flip", batch_size: int = 512, device: str | None = None
) -> tuple[EvalResult, np.ndarray]:
    """Evaluate a loaded `Checkpoint` on one split of a `FerData`. Returns (result, probs)."""
    from fer_core.inference import predict_proba, resolve_device

    subset = data.split(split)
    if device is not None:
        ckpt.model.to(resolve_device(device))
    probs = predict_proba(
        ckpt.model, subset.images, ckpt.mean, ckpt.std, tta=tta, batch_size=batch_size
    )
    result = compute_metrics(
        subset.labels,
        probs,
        ckpt.classes,
        subset.rows,
        split=split,
        tta=tta,
        checkpoint=str(ckpt.path or ""),
    )
    return result, probs
