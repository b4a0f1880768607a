"""Home: what the app does, the active dataset and model at a glance, and the next step."""

import streamlit as st

from ui import state

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
        counts = {s: int(data.split_mask(s).sum()) for s in data.available_splits() if s != "test"}
        cols = st.columns(len(counts))
        for col, (split, n) in zip(cols, counts.items()):
            col.metric(split.replace("_", " ").title(), f"{n:,}")
    else:
        if data_error:
            st.error(data_error)
        st.info(
            "No dataset loaded yet. Prediction already works with the shipped model; "
            "add FER2013 to explore it, train and evaluate.",
            icon="ℹ️",
        )
        st.page_link("app_pages/data.py", label="Add FER2013 on the Data page", icon="📊")

with right, st.container(border=True):
    st.subheader("Model")
    if ckpt is None:
        st.warning(model_error or "No model available.")
        st.page_link("app_pages/train.py", label="Train a model", icon="🏋️")
    else:
        public = ckpt.metrics.get("public_test")
        cols = st.columns(3)
        cols[0].metric("Architecture", ckpt.arch)
        cols[1].metric("Parameters", f"{ckpt.num_parameters / 1e6:.1f}M")
        if public:
            cols[2].metric(
                "PublicTest accuracy",
                f"{public['accuracy']:.1%}",
                help=f"macro-F1 {public['macro_f1']:.3f}, TTA {public.get('tta')}; "
                "computed by fer_core.evaluate when the model was shipped",
            )
        elif "val_acc" in ckpt.metrics:
            cols[2].metric("Validation accuracy", f"{ckpt.metrics['val_acc']:.1%}")

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
