"""Evaluate: accuracy, macro-F1, per-class report, confusion matrix, and the faces a model gets wrong."""

import json
import time
from collections import Counter
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from fer_core.evaluate import EvalResult, Mistake
from fer_core.labels import CLASSES
from fer_core.predict import Predictor
from fer_core.saliency import overlay
from ui import charts, state

st.title("🔍 Evaluate")


def show_metrics(result: dict, key: str | None = None, cell: tuple[str, str] | None = None) -> None:
    """The numbers and charts of an evaluation. With `key`, the confusion matrix is clickable:
    a click picks the cell the mistakes browser of that key shows; `cell` is outlined."""
    c = st.columns(4)
    c[0].metric("Accuracy", f"{result['accuracy']:.2%}")
    c[1].metric("Macro-F1", f"{result['macro_f1']:.3f}")
    if result.get("faces_found") is not None:
        c[2].metric("Faces found", f"{result['faces_found']:,} of {result['n']:,}")
    else:
        c[2].metric("Faces", f"{result['n']:,}")
    c[3].metric(
        "Test-time augmentation",
        result.get("tta", "none"),
        help=f"The network ran in {result.get('precision', 'fp32')} "
        "(int8 on x86 processors, as predictions run; fp32 elsewhere)",
    )
    left, right = st.columns([1, 1])
    with left:
        st.markdown("**Per-class report**")
        table = pd.DataFrame(result["per_class"]).T
        table["support"] = table["support"].astype(int)
        st.dataframe(
            table.style.format({"precision": "{:.1%}", "recall": "{:.1%}", "f1": "{:.3f}"}),
            width="stretch",
        )
        st.plotly_chart(charts.per_class_report(result["per_class"]), width="stretch")
    with right:
        normalized = st.toggle("Normalise rows (recall per class)", value=True)
        matrix = result["confusion_matrix_normalized" if normalized else "confusion_matrix"]
        figure = charts.confusion(matrix, result["classes"], normalized, cell)
        if key is None:
            st.plotly_chart(figure, width="stretch")
        else:
            st.plotly_chart(
                figure,
                width="stretch",
                key=f"{key}_matrix",
                on_select=partial(pick_clicked_cell, key),
                selection_mode=("points",),
            )
            st.caption("Click a cell to see its faces under **Mistakes**.")
    calibration = result.get("calibration")
    if calibration:
        st.markdown("**Reliability: is a face called 80% sure right 80% of the time?**")
        st.plotly_chart(charts.reliability(calibration), width="stretch")
        st.caption(
            f"Expected calibration error {calibration['ece_after']:.1%} with the model's "
            f"temperature {calibration['temperature']:.2f} (the probabilities shown everywhere), "
            f"{calibration['ece_before']:.1%} without it."
        )


PER_PAGE = 24  # mistakes shown at once
LARGE_PX = 300  # a face and its saliency in the enlarged view


def chosen_cell(mistakes: list[Mistake], key: str) -> tuple[str, str] | None:
    """The (true, predicted) cell the mistakes browser of `key` shows, kept in its two dropdowns'
    session keys (a matrix click writes them too); at first the cell with the most mistakes."""
    if not mistakes:
        return None
    if f"{key}_t" not in st.session_state or f"{key}_p" not in st.session_state:
        top = Counter((m.true, m.pred) for m in mistakes).most_common(1)[0][0]
        st.session_state[f"{key}_t"], st.session_state[f"{key}_p"] = top
    return st.session_state[f"{key}_t"], st.session_state[f"{key}_p"]


def pick_clicked_cell(key: str) -> None:
    """on_select of the confusion matrix: the clicked cell becomes the browser's cell."""
    cell = charts.clicked_cell(st.session_state.get(f"{key}_matrix"))
    if cell is not None and set(cell) <= set(CLASSES):
        st.session_state[f"{key}_t"], st.session_state[f"{key}_p"] = cell


@st.cache_data(max_entries=32, show_spinner=False)
def cached_saliency(
    _predictor: Predictor, model: str, faces: np.ndarray, targets: tuple[int, ...]
) -> np.ndarray:
    """`Predictor.saliency`, kept per model (`model`: its path and time stamp) and faces."""
    return _predictor.saliency(faces, list(targets))


def saliency_of(faces: np.ndarray, classes: list[str]) -> np.ndarray | None:
    """(N, 48, 48) maps of each face for its class in `classes`, or None (with a warning) for a
    model whose layers the saliency cannot read."""
    path = state.active_model_path()
    targets = tuple(predictor.classes.index(c) for c in classes)
    try:
        return cached_saliency(predictor, f"{path}@{state.stamp(path)}", faces, targets)
    except (RuntimeError, ValueError, TypeError) as exc:
        st.warning(f"No saliency for this model ({type(exc).__name__}: {exc}).")
        return None


@st.dialog("A face and its saliency", width="large")
def enlarged(face: np.ndarray, m: Mistake) -> None:
    """The face, what drove the wrong class, and the evidence for the right one, large."""
    maps = saliency_of(np.stack([face, face]), [m.pred, m.true])
    cols = st.columns(3)
    cols[0].image(face, width=LARGE_PX, caption=f"true {m.true}")
    if maps is not None:
        for col, cam, name in zip(cols[1:], maps, (m.pred, m.true)):
            col.image(overlay(face, cam, size=LARGE_PX), width=LARGE_PX,
                      caption=f"saliency for {name} ({m.probs[name]:.0%})")  # fmt: skip
    st.caption(
        "Grad-CAM++ on the model's 12x12 feature map: the warmer a region, the more it raised the "
        "class's score. Compare where the model looked for the class it gave and for the true one."
    )


def browse_mistakes(mistakes: list[Mistake], face_of, key: str) -> None:
    """See the mistakes of one confusion cell (clicked in the matrix or picked here), most
    confident first, 24 a page; face_of(m) -> (48, 48)."""
    if chosen_cell(mistakes, key) is None:
        st.success("No mistakes here.")
        return
    c1, c2, c3 = st.columns([1, 1, 1])
    true = c1.selectbox("True class", CLASSES, key=f"{key}_t")
    pred = c2.selectbox("Predicted as", CLASSES, key=f"{key}_p")
    saliency = c3.toggle("Show saliency", value=True, key=f"{key}_s")
    if true == pred:
        st.info(f"The diagonal holds the {true} faces predicted right: pick a cell off it.")
        return
    cell = [m for m in mistakes if m.true == true and m.pred == pred]
    pages = max(1, -(-len(cell) // PER_PAGE))
    page = 1
    if pages > 1:
        page = st.number_input(
            f"Page (of {pages})", 1, pages, 1, key=f"{key}_page_{true}_{pred}", width=160
        )
    first = (page - 1) * PER_PAGE
    shown = cell[first : first + PER_PAGE]
    st.caption(
        f"{len(cell)} faces of class **{true}** predicted as **{pred}**, most confident first"
        + (f"; {first + 1}-{first + len(shown)} shown." if pages > 1 else ".")
    )
    if not shown:
        return
    faces = np.stack([face_of(m) for m in shown])
    cams = saliency_of(faces, [pred] * len(shown)) if saliency else None
    cols = st.columns(6)
    for i, m in enumerate(shown):
        with cols[i % 6], st.container(border=True):
            st.image(overlay(faces[i], cams[i]) if cams is not None else faces[i], width="stretch")
            where = f" · row {m.row}" if m.row >= 0 else (f" · {m.name}" if m.name else "")
            st.caption(f"{pred} {m.confidence:.0%} · true {true} {m.probs[true]:.0%}{where}")
            buttons = st.container(horizontal=True)
            with buttons.popover("📊", help="All seven probabilities"):
                st.plotly_chart(
                    charts.probabilities(m.probs), width="stretch", key=f"{key}_{m.index}"
                )
            if buttons.button("🔍", key=f"{key}_zoom_{m.index}", help="Larger, with saliency"):
                enlarged(faces[i], m)


def photo_section() -> None:
    """Evaluate on a folder or zip of labelled photos (faces detected as on Predict)."""
    st.caption(
        "A folder or `.zip` of `<emotion>/<image>` photos of any size (class folders such as "
        "angry, happiness, surprised, in any case; others are skipped). Faces are detected and "
        "cropped as on the Predict page; a photo without a face counts as wrong."
    )
    c1, c2 = st.columns([3, 2])
    path = c1.text_input("Folder or .zip on this server", key="photo_set_path").strip()
    upload = c2.file_uploader("…or upload a .zip", type=["zip"], key="photo_set_upload")
    if upload is not None:
        path = state.save_upload(upload)
    c1, c2 = st.columns([2, 1])
    detect = c1.toggle("Detect faces (off: every photo is already a face crop)", value=True)
    tta = c2.selectbox("Test-time augmentation", ["flip", "none", "crops"], key="photo_tta")
    if not path:
        st.info("Give a folder or upload a zip of labelled photos.")
        return
    photos, error = state.get_photo_set(path)
    if photos is None:
        st.error(error)
        return
    counts = ", ".join(f"{c} {n}" for c, n in zip(CLASSES, photos.class_counts()) if n)
    st.caption(f"{len(photos):,} photos: {counts}.")
    if photos.skipped:
        skipped = ", ".join(f"{name} ({n})" for name, n in sorted(photos.skipped.items()))
        st.warning(f"Skipped folders that name no emotion: {skipped}")
    model_path = state.active_model_path()
    request = ("photos", model_path, state.stamp(model_path), path, detect, tta)
    requested = st.session_state.setdefault(state.EVAL_REQUESTS, set())
    if st.button("▶ Evaluate photos", type="primary"):
        requested.add(request)
    if request not in requested:
        return
    result, crops = state.photo_evaluation(
        model_path, state.stamp(model_path), path, state.stamp(path), detect, tta
    )
    mistakes = EvalResult.from_dict(result).misclassified
    show_metrics(result, "photo", chosen_cell(mistakes, "photo"))
    downloads(result, f"{ckpt.name}_{Path(path).stem}")
    if result["no_face"]:
        with st.expander(f"{len(result['no_face'])} photos without a face found"):
            st.code("\n".join(result["no_face"]), language=None)
    st.subheader("Mistakes")
    browse_mistakes(mistakes, lambda m: crops[m.index], "photo")


def downloads(result: dict, name: str) -> None:
    slim = {k: v for k, v in result.items() if k != "misclassified"}
    slim["misclassified"] = result["misclassified"][:200]
    c1, c2 = st.columns(2)
    c1.download_button(
        "⬇ Metrics (JSON)", json.dumps(slim, indent=1), f"{name}_metrics.json", "application/json"
    )
    per_class = pd.DataFrame(result["per_class"]).T.rename_axis("class").reset_index()
    per_class["support"] = per_class["support"].astype(int)  # a count, not 467.0
    c2.download_button(
        "⬇ Per-class report (CSV)",
        per_class.to_csv(index=False),
        f"{name}_per_class.csv",
        "text/csv",
    )


predictor, model_error = state.get_predictor()
if predictor is None:
    st.error(model_error)
    st.stop()
ckpt = predictor.ckpt
source = st.radio(
    "Evaluate on", ["FER2013", "Labelled photos"], horizontal=True, label_visibility="collapsed"
)
if source == "Labelled photos":
    photo_section()
    st.stop()
data, data_error = state.get_data()

if data is None:
    stored = ckpt.metrics.get("public_test")
    st.info(
        data_error
        or "No dataset loaded: below is the evaluation stored with the model when it "
        "was saved. Add FER2013 on the Data page to evaluate on any split and browse mistakes."
    )
    st.page_link("app_pages/data.py", label="Add FER2013", icon="📊")
    if stored:
        st.subheader(f"Stored evaluation: {ckpt.name} on PublicTest")
        show_metrics(stored)
    else:
        st.caption("This model carries no stored evaluation.")
    st.stop()

c1, c2 = st.columns([2, 1])
splits = [s for s in data.available_splits() if s != "train"] + ["train"]
split = c1.selectbox("Split", splits, index=0)
tta = c2.selectbox(
    "Test-time augmentation",
    ["flip", "none", "crops"],
    index=0,
    help="flip: image + mirror (the default). crops: ten views (shifts and mirrors)",
)
model_path = state.active_model_path()
st.caption(f"Model: `{ckpt.name}` ({ckpt.arch}); change it in the sidebar.")
request = (model_path, state.stamp(model_path), split, tta)
full_request = (*request[:2], state.active_data_path(), state.stamp(state.active_data_path()),
                split, tta)  # fmt: skip
requested = st.session_state.setdefault(state.EVAL_REQUESTS, set())
if st.button("▶ Evaluate", type="primary", help="Shows its progress; the result is kept"):
    requested.add(request)
result = state.stored_evaluation(*full_request)  # evaluated before: shown at once
if result is None and request not in requested:
    stored = ckpt.metrics.get(split)
    if stored and stored.get("tta") == tta:
        st.info(
            "Showing the evaluation stored with this model. Press **Evaluate** to recompute "
            "it here and browse the mistakes."
        )
        show_metrics(stored)
    else:
        st.info(
            "Press **Evaluate** to compute accuracy, the per-class report, the confusion "
            "matrix and the mistakes for this split."
        )
    st.stop()
if result is None:
    slot = st.empty()
    with slot.container():
        bar = st.progress(0.0, text="Evaluating…")
        # a click reruns the page, which stops the evaluation at its next batch
        st.button("✖ Cancel", on_click=requested.discard, args=(request,), key="eval_cancel")
    started = time.monotonic()

    def progress(done: int, total: int) -> None:
        left = (time.monotonic() - started) / done * (total - done)
        bar.progress(done / total, text=f"Evaluating {done:,} of {total:,} faces, about "
                     f"{left:.0f} s left")  # fmt: skip

    result = state.evaluation(*full_request, progress=progress)
    slot.empty()
mistakes = EvalResult.from_dict(result).misclassified
show_metrics(result, f"fer_{split}", chosen_cell(mistakes, f"fer_{split}"))
downloads(result, f"{ckpt.name}_{split}")

st.subheader("Mistakes")
subset = data.split(split)
browse_mistakes(mistakes, lambda m: subset.images[m.index], f"fer_{split}")
