"""Data: choose the dataset, then explore it: class imbalance, weights, faces, quirks, FER+."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from fer_core.data.fer2013 import SPLITS
from fer_core.labels import CLASSES, EMOJI
from ui import charts, state
from ui.text import code, md, split_label, tally

st.title("📊 Data")


def dataset_chooser() -> None:
    with st.expander("Choose the dataset", expanded=not state.active_data_path()):
        tab_path, tab_upload, tab_kaggle = st.tabs(["Path", "Upload", "Kaggle"])
        with tab_path:
            st.caption(
                "A `fer2013.csv` / `.csv.gz`, the Kaggle archive `.zip`, or its extracted "
                "folder (with `train/` and `test/`). The `FER_DATA` environment variable "
                "sets the default."
            )
            path = st.text_input(
                "Dataset path", value=state.active_data_path(), placeholder="/path/to/fer2013.csv"
            )
            if st.button("Use this dataset", type="primary"):
                _, error = state.get_data(path.strip())
                if error:
                    st.error(md(error))
                else:
                    state.set_data_path(path.strip())
                    st.rerun()
        with tab_upload:
            upload = st.file_uploader(
                "fer2013.csv, .csv.gz or the archive .zip", type=["csv", "gz", "zip"]
            )
            if upload is not None:
                target = state.save_upload(upload)  # kept in the app folder across refreshes
                _, error = state.get_data(target)
                if error:
                    state.discard_upload(target)
                    st.error(f"That file is not usable: {md(error)}")
                elif st.session_state.get(state.DATA_PATH) != target:
                    state.set_data_path(target)
                    st.rerun()
        with tab_kaggle:
            state.export_secrets(("KAGGLE_USERNAME", "KAGGLE_KEY"))
            has_login = (
                bool(os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"))
                or (Path.home() / ".kaggle" / "kaggle.json").exists()
            )
            st.caption(
                "Downloads `msambare/fer2013` with kagglehub (needs a network connection and a "
                "Kaggle account)."
            )
            if not has_login:
                st.info(
                    "**No Kaggle credentials found**, so the download is off. Add "
                    "`KAGGLE_USERNAME` and `KAGGLE_KEY` (from kaggle.com → Settings → API → "
                    "Create New Token) to the environment or to `.streamlit/secrets.toml` (on "
                    "Community Cloud: the app's **Settings → Secrets**), or put `kaggle.json` in "
                    "`~/.kaggle/`, then reload this page.",
                    icon="🔑",
                )
            if st.button(
                "Download from Kaggle",
                disabled=not has_login,
                help=None if has_login else "Needs Kaggle credentials: see above",
            ):
                from fer_core.data.fer2013 import download_kaggle
                from fer_core.errors import FerError

                try:
                    with st.spinner("Downloading FER2013 from Kaggle…"):
                        folder = download_kaggle()
                    state.set_data_path(str(folder))
                    st.rerun()
                except FerError as exc:
                    st.error(md(exc))


dataset_chooser()
data, error = state.get_data()
if error:
    st.error(md(error))
if data is None:
    st.info("No dataset yet. Give a path, upload a file, or download it from Kaggle above.")
    st.stop()

report = state.get_report()
st.caption(f"Source: {code(data.source)}")

cols = st.columns(5)
cols[0].metric("Faces", f"{len(data):,}")
cols[1].metric(
    "Imbalance ratio",
    f"{report.imbalance_ratio:.1f}×",
    help="Largest over smallest class in the training split",
)
cols[2].metric(
    "Duplicates within splits",
    f"{sum(report.duplicates_within.values()):,}",
    help="Redundant exact copies inside each split",
)
cols[3].metric("Test faces also in train", f"{sum(report.duplicates_across.values()):,}")
cols[4].metric("Blank images", f"{sum(report.blank_by_split.values())}")

st.subheader("Class imbalance")
share = (
    st.segmented_control("Show", ["Counts", "Share of split"], default="Counts") == "Share of split"
)
st.plotly_chart(charts.class_counts(report.counts, share), width="stretch")

left, right = st.columns([3, 2])
with left:
    st.markdown("**Class weights** for a weighted loss, from the training counts")
    st.plotly_chart(charts.class_weights(report.class_weights), width="stretch")
with right:
    st.markdown("&nbsp;")
    table = pd.DataFrame(report.class_weights).rename_axis("class")
    st.dataframe(
        table,
        width="stretch",
        column_config={
            scheme: st.column_config.NumberColumn(scheme, format="%.2f") for scheme in table
        },
    )
    st.caption(
        "*inverse*: N / (K·n_c). *effective*: effective number of samples, β = 0.999 "
        "(Cui et al. 2019). Both scaled to mean 1."
    )

st.subheader("Sample faces")
split_names = [s for s in data.available_splits()]
c1, c2 = st.columns([3, 1])
split = c1.selectbox("Split", split_names, index=0, format_func=split_label)
if c2.button("🔀 Reshuffle"):
    st.session_state[state.SAMPLE_SEED] = st.session_state.get(state.SAMPLE_SEED, 0) + 1
rng = np.random.default_rng(st.session_state.get(state.SAMPLE_SEED, 0))
subset_mask = data.split_mask(split)
per_row = 10
for i, name in enumerate(CLASSES):
    index = np.flatnonzero(subset_mask & (data.labels == i))
    if not len(index):
        continue
    chosen = rng.choice(index, size=min(per_row, len(index)), replace=False)
    st.markdown(f"{EMOJI[name]} **{name}** ({len(index):,})")
    st.image([data.images[j] for j in chosen], width=72)

mean_faces, intensity = state.get_pixel_summary()
st.subheader("Mean face per class")
for col, name in zip(st.columns(7), CLASSES):
    if name in mean_faces:  # a small dataset may lack a class (or a train split) altogether
        col.image(mean_faces[name], caption=name, width="stretch")

st.subheader("Pixel intensity per class")
st.plotly_chart(charts.intensity_histograms(intensity), width="stretch")

st.subheader("Dataset quirks")
q1, q2 = st.columns(2)
with q1:
    # across: "public_test~train" -> faces of PublicTest with an exact copy in Training
    across = {key.split("~")[0]: n for key, n in report.duplicates_across.items()}
    st.markdown(
        f"**Exact duplicates**: redundant copies within a split: "
        f"{tally(report.duplicates_within)}. Test faces with a copy in Training: "
        f"{tally(across)}. Groups of copies with conflicting labels: "
        f"{report.conflicting_duplicate_groups:,}."
    )
    conflicting = [g for g in report.duplicate_groups if g.conflicting][:4]
    for group in conflicting:
        captions = [
            f"{lab} ({split_label(SPLITS[data.splits[i]])})"
            for i, lab in zip(group.indices, group.labels)
        ]
        st.image([data.images[i] for i in group.indices[:4]], caption=captions[:4], width=72)
with q2:
    st.markdown(f"**Blank images** (a single grey level): {tally(report.blank_by_split)}.")
    if report.blank_indices:
        st.image(
            [data.images[i] for i in report.blank_indices[:8]],
            caption=[CLASSES[data.labels[i]] for i in report.blank_indices[:8]],
            width=60,
        )

ferplus = state.ferplus_path(data.source)
st.subheader("FER+ agreement")
if ferplus is None:
    st.caption(
        "Put Microsoft's FER+ labels (`fer2013new.csv`) next to the dataset to compare "
        "FER2013's labels with the FER+ majority vote of 10 annotators."
    )
elif (data.rows < 0).all():
    st.caption("This dataset's images carry no CSV row index, so FER+ labels cannot be matched.")
else:
    from fer_core.data.fer2013 import load_ferplus
    from fer_core.data.report import ferplus_agreement

    agreement = ferplus_agreement(data, load_ferplus(ferplus))
    st.metric(
        "Faces where FER2013 and the FER+ majority agree",
        f"{agreement.agreement:.1%}",
        help=f"{agreement.n:,} faces with a FER+ majority in one of the 7 classes",
    )
    fig = charts.confusion(agreement.confusion_normalized, list(CLASSES), normalized=True)
    fig.update_layout(xaxis_title="FER+ majority", yaxis_title="FER2013 label")
    st.plotly_chart(fig, width="stretch")
