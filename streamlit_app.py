"""FER Studio: the router and the shared sidebar (active dataset, active model). Pages do the rest."""

from pathlib import Path

import streamlit as st

from ui import state
from ui.text import code, describe_splits, headline_accuracy, md

st.set_page_config(page_title="FER Studio", page_icon="🙂", layout="wide")

# Not "pages/": beside the entry script that name switches Streamlit to its legacy multipage mode,
# which runs a deep-linked page without this router (no sidebar, no page config).
PAGES = Path(__file__).parent / "app_pages"
pages = [
    st.Page(PAGES / "home.py", title="Home", icon="🏠", default=True),
    st.Page(PAGES / "data.py", title="Data", icon="📊"),
    st.Page(PAGES / "train.py", title="Train", icon="🏋️"),
    st.Page(PAGES / "evaluate.py", title="Evaluate", icon="🔍"),
    st.Page(PAGES / "predict.py", title="Predict", icon="📷"),
]
navigation = st.navigation(pages)


def sidebar() -> None:
    with st.sidebar:
        st.markdown("### Active dataset")
        data, error = state.get_data()
        if data is not None:
            st.caption(
                f"{code(Path(data.source).name)}: {len(data):,} faces ({describe_splits(data)})"
            )
        elif error:
            st.error(md(error), icon="⚠️")
        else:
            st.caption("None yet. Add FER2013 on the **Data** page.")

        st.markdown("### Active model")
        choices = state.model_choices()
        if not choices:
            st.caption("No model yet: train one on the **Train** page.")
            return
        labels = {path: label for label, path in choices.items()}
        if state.active_model_path() not in labels:  # e.g. its run folder was deleted
            state.set_model_path(next(iter(labels)))
        # A keyed widget that follows the active model (another page may change it); the
        # choice itself lands through on_change, before the script reruns.
        st.session_state["model_choice"] = labels[state.active_model_path()]
        st.selectbox(
            "Model",
            list(choices),
            key="model_choice",
            label_visibility="collapsed",
            on_change=lambda: state.set_model_path(choices[st.session_state["model_choice"]]),
        )
        ckpt, error = state.get_model_info()
        if ckpt is None:
            st.error(md(error), icon="⚠️")
        else:
            headline = headline_accuracy(ckpt.metrics)
            st.caption(
                f"{ckpt.arch}, {ckpt.num_parameters / 1e6:.1f}M parameters"
                + (f", {headline[0]} {headline[1]:.1%}" if headline else "")
            )


sidebar()
navigation.run()
state.warm_up()
