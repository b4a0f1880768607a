"""Evaluation: returns data (never prints) that the CLI, the app and tests all consume."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

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
    name: str = ""  # file name, for photo sets


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
    precision: str = "fp32"  # what the network ran in: "fp32" or "int8" (models/quantize.py)
    checkpoint: str = ""
    faces_found: int | None = None  # photo sets: photos in which a face was found
    no_face: list[str] = field(default_factory=list)  # photo sets: those without (count as wrong)
    # temperature, ece_before / ece_after (uncalibrated / calibrated probabilities) and the
    # reliability diagram of each: {"confidence": [...], "accuracy": [...], "count": [...]}
    calibration: dict = field(default_factory=dict)

    def to_dict(self, max_mistakes: int | None = 100) -> dict:
        out = asdict(self)
        if max_mistakes is not None:
            out["misclassified"] = out["misclassified"][:max_mistakes]
        return out

    @classmethod
    def from_dict(cls, record: dict) -> EvalResult:
        """The result again from `to_dict` (as kept on disk by the app), mistakes included."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in record.items() if k in known}
        values["misclassified"] = [Mistake(**m) for m in record.get("misclassified", [])]
        return cls(**values)

    def to_json(self, max_mistakes: int | None = 100, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(max_mistakes), indent=indent)

    def mistakes_in_cell(self, true: str, pred: str) -> list[Mistake]:
        """Misclassified examples of one confusion-matrix cell, most confident first."""
        return [m for m in self.misclassified if m.true == true and m.pred == pred]


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Macro-averaged F1 over the classes present in y_true or y_pred."""
    return _per_class(np.asarray(y_true), np.asarray(y_pred), num_classes)[3]


def _per_class(
    y_true: np.ndarray, y_pred: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(precision, recall, f1) per class and their macro F1 over the classes that occur.

    A prediction of class k (none of the k classes: a photo without a face) is wrong for its
    true class and counts in no class's precision. Counted here rather than by scikit-learn,
    whose metrics module takes seconds to import on a cold machine: training validates with
    this every epoch, and its first epoch waited for that import. The arithmetic is
    scikit-learn's (`precision_recall_fscore_support`, zero_division=0), as a test checks.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if len(y_true) == 0:
        return np.zeros(k), np.zeros(k), np.zeros(k), 0.0

    def counts(values: np.ndarray) -> np.ndarray:  # per class 0..k-1; other values count nowhere
        return np.bincount(values[(values >= 0) & (values < k)], minlength=k).astype(np.float64)

    hits, predicted, actual = counts(y_true[y_true == y_pred]), counts(y_pred), counts(y_true)

    def ratio(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
        return np.divide(top, bottom, out=np.zeros(k), where=bottom > 0)

    precision, recall = ratio(hits, predicted), ratio(hits, actual)
    f1 = ratio(2 * hits, predicted + actual)
    occurs = (predicted > 0) | (actual > 0)
    return precision, recall, f1, float(f1[occurs].mean()) if occurs.any() else 0.0


def compute_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    classes: tuple[str, ...] | list[str] = CLASSES,
    rows: np.ndarray | None = None,
    found: np.ndarray | None = None,
    names: list[str] | tuple[str, ...] | None = None,
    **meta,
) -> EvalResult:
    """Metrics from true labels (N,) and predicted probabilities (N, K).

    `found` (N,) bool marks the images that had a prediction at all (a photo where a face was
    found): the others count as wrong for accuracy and recall, and sit in no predicted column.
    """
    from sklearn.metrics import confusion_matrix

    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    k = len(classes)
    found = np.ones(len(y_true), bool) if found is None else np.asarray(found, bool)
    y_pred = probs.argmax(1) if len(probs) else np.zeros(0, dtype=np.int64)
    scored = np.where(found, y_pred, k)  # k: no prediction
    precision, recall, f1, macro = _per_class(y_true, scored, k)
    cm = (  # scikit-learn refuses an empty input
        confusion_matrix(y_true[found], y_pred[found], labels=list(range(k)))
        if found.any()
        else np.zeros((k, k), dtype=np.int64)
    )
    support = np.bincount(y_true, minlength=k)
    normalized = np.divide(cm, support[:, None], out=np.zeros((k, k)), where=support[:, None] > 0)
    rows = np.full(len(y_true), -1) if rows is None else np.asarray(rows)
    names = [""] * len(y_true) if names is None else list(names)
    n = len(y_true)
    return EvalResult(
        n=n,
        accuracy=float(np.diag(cm).sum() / n) if n else 0.0,
        macro_f1=macro,
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
        misclassified=_mistakes(y_true, y_pred, probs, found, classes, rows, names),
        **meta,
    )


def _mistakes(y_true, y_pred, probs, found, classes, rows, names) -> list[Mistake]:
    """Wrong predictions, most confident first (images without a prediction are not listed)."""
    wrong = np.flatnonzero((y_pred != y_true) & found)
    confidence = probs[wrong, y_pred[wrong]] if len(wrong) else np.zeros(0)
    order = wrong[np.argsort(-confidence, kind="stable")]
    return [
        Mistake(
            index=int(i),
            row=int(rows[i]),
            true=classes[y_true[i]],
            pred=classes[y_pred[i]],
            confidence=round(float(probs[i, y_pred[i]]), 6),
            probs={c: round(float(p), 6) for c, p in zip(classes, probs[i])},
            name=names[i],
        )
        for i in order
    ]


def evaluate_checkpoint(
    ckpt,
    data,
    split: str,
    tta: str = "flip",
    batch_size: int = 512,
    device: str | None = None,
    progress=None,
    precision: str = "auto",
) -> tuple[EvalResult, np.ndarray]:
    """Evaluate a loaded `Checkpoint` on one split of a `FerData`. Returns (result, probs), the
    probabilities calibrated with the checkpoint's temperature. `progress(done, total)` is called
    after each batch of faces. `precision` as for predictions (`Checkpoint.inference_model`):
    "auto" measures what `predict` runs on this machine."""
    from fer_core.inference import predict_proba, resolve_device

    subset = data.split(split)
    if device is not None:
        ckpt.model.to(resolve_device(device))
    raw = predict_proba(
        ckpt.inference_model(precision),
        subset.images,
        ckpt.mean,
        ckpt.std,
        tta=tta,
        batch_size=batch_size,
        progress=progress,
    )
    probs, calibration = calibrate(raw, subset.labels, ckpt.temperature)
    result = compute_metrics(
        subset.labels,
        probs,
        ckpt.classes,
        subset.rows,
        split=split,
        tta=tta,
        precision=ckpt.precision(precision),
        checkpoint=str(ckpt.path or ""),
        calibration=calibration,
    )
    return result, probs


def fit_calibration(ckpt, data, split: str, tta: str = "flip", precision: str = "auto") -> dict:
    """Fit the temperature of a loaded checkpoint on one split, on the probabilities its
    predictions give (`precision`); returns its calibration record (temperature, split, tta,
    precision, ECE before and after) for `save_checkpoint(calibration=...)`."""
    from fer_core.calibration import fit_temperature
    from fer_core.inference import predict_proba

    subset = data.split(split)
    model = ckpt.inference_model(precision)
    raw = predict_proba(model, subset.images, ckpt.mean, ckpt.std, tta=tta)
    temperature = fit_temperature(np.log(np.clip(raw, 1e-12, None)), subset.labels)
    _, record = calibrate(raw, subset.labels, temperature)
    keep = ("temperature", "ece_before", "ece_after")
    return {k: record[k] for k in keep} | {
        "split": split,
        "tta": tta,
        "precision": ckpt.precision(precision),
        "n": len(subset),
    }


def calibrate(raw: np.ndarray, labels: np.ndarray, temperature: float) -> tuple[np.ndarray, dict]:
    """Calibrated probabilities for uncalibrated (N, K) `raw`, and the calibration record: ECE
    and reliability diagram before and after."""
    import torch

    from fer_core.calibration import apply_temperature, reliability

    logp = torch.from_numpy(np.log(np.clip(raw, 1e-12, None)))
    probs = apply_temperature(logp, temperature).exp().numpy().astype(np.float32)
    before, after = reliability(raw, labels), reliability(probs, labels)
    record: dict[str, object] = {
        "temperature": round(temperature, 4),
        "ece_before": round(before.ece, 6),
    }
    record |= {"ece_after": round(after.ece, 6)}
    for name, rel in (("reliability_before", before), ("reliability_after", after)):
        record[name] = {
            "confidence": [round(c, 4) for c in rel.confidence],
            "accuracy": [round(a, 4) for a in rel.accuracy],
            "count": rel.count,
        }
    return probs, record


def evaluate_photos(
    predictor, photos, detect: bool = True, tta: str | None = None, progress=None
) -> tuple[EvalResult, np.ndarray, np.ndarray]:
    """Evaluate a `Predictor` on a `PhotoSet` with the photo pipeline: the largest detected face
    of each photo (or the whole photo as the face with detect=False) is cropped and classified.

    Returns (result, probs (N, K), crops (N, 48, 48) uint8; zeros where no face was found).
    `progress(done, total)` is called after each photo. Photos that cannot be decoded or hold no
    face count as wrong and are listed in `result.no_face`.
    """
    n, k = len(photos), len(predictor.classes)
    crops = np.zeros((n, 48, 48), np.uint8)
    found = np.zeros(n, bool)
    for i, image, _error in photos.images():
        if image is not None:
            _boxes, faces = predictor.faces_in(image, detect, largest=True)
            if len(faces):
                crops[i], found[i] = faces[0], True  # the largest face
        if progress is not None:
            progress(i + 1, n)
    probs = np.zeros((n, k), np.float32)
    calibration: dict = {}
    if found.any():
        raw = predictor.probabilities(crops[found], tta, calibrated=False)
        probs[found], calibration = calibrate(raw, photos.labels[found], predictor.ckpt.temperature)
    result = compute_metrics(
        photos.labels,
        probs,
        predictor.classes,
        found=found,
        names=photos.names,
        split="photos",
        tta=tta or predictor.tta,
        precision=predictor.precision,
        checkpoint=str(predictor.ckpt.path or ""),
        faces_found=int(found.sum()),
        no_face=[photos.names[i] for i in np.flatnonzero(~found)],
        calibration=calibration,
    )
    return result, probs, crops
