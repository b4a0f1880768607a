"""Home: what the app does, the active dataset and model at a glance, and the next step."""

import streamlit as st

from ui import state
from ui.text import headline_accuracy, md, split_label, split_sizes

st.title("🙂 FER Studio")
st.markdown(
    "Facial emotion recognition on **FER2013**: explore the dataset and its class imbalance, "
    "train CNNs from scratch with live curves, inspect the confusion matrix and the faces a "
    "model gets wrong, and predict emotions in your photos or from your webcam."
)

data, data_error = state.get_data()
ckpt, model_error = state.get_model_info()

left, right = st.columns(2)
with left, st.container(border=True):
    st.subheader("Dataset")
    if data is not None:
        sizes = split_sizes(data)
        for col, (split, n) in zip(st.columns(len(sizes)), sizes.items()):
            col.metric(
                split_label(split), f"{n:,}", help=f"faces in FER2013's {split_label(split)}"
            )
    else:
        if data_error:
            st.error(md(data_error))
        st.info(
            "No dataset loaded yet. Prediction already works with the shipped model; "
            "add FER2013 to explore it, train and evaluate.",
            icon="ℹ️",
        )
        st.page_link("app_pages/data.py", label="Add FER2013 on the Data page", icon="📊")

with right, st.container(border=True):
    st.subheader("Model")
    if ckpt is None:
        st.warning(md(model_error) if model_error else "No model available.")
        st.page_link("app_pages/train.py", label="Train a model", icon="🏋️")
    else:
        public = ckpt.metrics.get("public_test") or {}
        headline = headline_accuracy(ckpt.metrics)
        # Two numbers side by side (the accuracy's label is the longest and must not be cut);
        # the architecture's name is words, not a number: a caption below them.
        cols = st.columns([2, 3])
        cols[0].metric("Parameters", f"{ckpt.num_parameters / 1e6:.1f}M")
        if headline:
            label, accuracy = headline
            f1 = public.get("macro_f1", ckpt.metrics.get("val_macro_f1"))
            how = (
                (f"test-time augmentation {public['tta']}; " if public.get("tta") else "")
                + (f"{public['precision']} network; " if public.get("precision") else "")
                + ("measured when the model was shipped" if public else "the run's best epoch")
            )
            cols[1].metric(
                label,
                f"{accuracy:.1%}",
                help=(f"macro-F1 {f1:.3f}; " if f1 is not None else "") + how,
            )
        st.caption(f"Architecture `{ckpt.arch}`")

st.subheader("Where to next")
steps = st.columns(4)
with steps[0], st.container(border=True):
    st.markdown(
        "**📊 Data**  \nClass imbalance, sample and mean faces, duplicates, FER+ agreement."
    )
    st.page_link("app_pages/data.py", label="Explore the data")
with steps[1], st.container(border=True):
    st.markdown("**🏋️ Train**  \nConfigure a CNN, watch loss and accuracy live, stop any time.")
    st.page_link("app_pages/train.py", label="Train a model")
with steps[2], st.container(border=True):
    st.markdown(
        "**🔍 Evaluate**  \nConfusion matrix, per-class report, the most confident mistakes."
    )
    st.page_link("app_pages/evaluate.py", label="Inspect a model")
with steps[3], st.container(border=True):
    st.markdown(
        "**📷 Predict**  \nUpload photos or use your webcam: every face boxed and labelled."
    )
    st.page_link("app_pages/predict.py", label="Try it on a photo")
