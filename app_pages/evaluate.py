"""Evaluate: accuracy, macro-F1, per-class report, confusion matrix, and the faces a model gets wrong."""

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from fer_core.evaluate import Mistake
from fer_core.labels import CLASSES
from fer_core.saliency import grad_cam, overlay
from ui import charts, state

st.title("🔍 Evaluate")


def show_metrics(result: dict) -> None:
    c = st.columns(4)
    c[0].metric("Accuracy", f"{result['accuracy']:.2%}")
    c[1].metric("Macro-F1", f"{result['macro_f1']:.3f}")
    if result.get("faces_found") is not None:
        c[2].metric("Faces found", f"{result['faces_found']:,} of {result['n']:,}")
    else:
        c[2].metric("Faces", f"{result['n']:,}")
    c[3].metric("Test-time augmentation", result.get("tta", "none"))
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
        st.plotly_chart(charts.confusion(matrix, result["classes"], normalized), width="stretch")
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


def browse_mistakes(mistakes: list[Mistake], face_of, key: str) -> None:
    """Pick a confusion cell and see its mistakes, most confident first; face_of(m) -> (48, 48)."""
    pairs = pd.Series([(m.true, m.pred) for m in mistakes]).value_counts()
    if pairs.empty:
        st.success("No mistakes here.")
        return
    top_true, top_pred = pairs.index[0]
    c1, c2, c3 = st.columns([1, 1, 1])
    true = c1.selectbox("True class", CLASSES, index=CLASSES.index(top_true), key=f"{key}_t")
    others = [c for c in CLASSES if c != true]
    pred = c2.selectbox(
        "Predicted as",
        others,
        index=others.index(top_pred) if top_pred != true else 0,
        key=f"{key}_p",
    )
    saliency = c3.toggle("Grad-CAM saliency", value=True, key=f"{key}_s")
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
    cams = grad_cam(ckpt.model, faces, ckpt.mean, ckpt.std) if saliency else None
    cols = st.columns(6)
    for i, m in enumerate(shown):
        with cols[i % 6], st.container(border=True):
            st.image(overlay(faces[i], cams[i]) if cams is not None else faces[i], width="stretch")
            where = f" · row {m.row}" if m.row >= 0 else (f" · {m.name}" if m.name else "")
            st.caption(f"{pred} {m.confidence:.0%} · true {true} {m.probs[true]:.0%}{where}")
            with st.popover("📊", help="All seven probabilities"):
                st.plotly_chart(
                    charts.probabilities(m.probs), width="stretch", key=f"{key}_{m.index}"
                )


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
    show_metrics(result)
    downloads(result, f"{ckpt.name}_{Path(path).stem}")
    if result["no_face"]:
        with st.expander(f"{len(result['no_face'])} photos without a face found"):
            st.code("\n".join(result["no_face"]), language=None)
    st.subheader("Mistakes")
    mistakes = [Mistake(**m) for m in result["misclassified"]]
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


ckpt, model_error = state.get_checkpoint()
if ckpt is None:
    st.error(model_error)
    st.stop()
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
show_metrics(result)
downloads(result, f"{ckpt.name}_{split}")

st.subheader("Mistakes")
mistakes = [Mistake(**m) for m in result["misclassified"]]
subset = data.split(split)
browse_mistakes(mistakes, lambda m: subset.images[m.index], f"fer_{split}")
