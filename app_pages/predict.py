"""Predict: faces in uploaded photos, a live webcam, or a camera snapshot."""

import io
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from fer_core.draw import annotate
from fer_core.errors import FerError
from fer_core.faces import MAX_FILE_BYTES, load_image
from fer_core.labels import EMOJI
from fer_core.saliency import grad_cam, overlay
from ui import charts, state

st.title("📷 Predict")

predictor, error = state.get_predictor()
if predictor is None:
    st.error(error)
    st.stop()
ckpt = predictor.ckpt


def png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def show_prediction(name: str, blob: bytes, detect: bool, tta: str, saliency: bool) -> list[dict]:
    """Draw one image's predictions; returns CSV rows (one per face)."""
    try:
        image = load_image(blob, name=name)
        faces = predictor.predict_array(image, detect=detect, tta=tta)
    except FerError as exc:
        st.error(f"**{name}**: {str(exc).removeprefix(f'{name}: ')}")
        return []
    annotated = annotate(image, faces)
    st.markdown(f"#### {name}")
    left, right = st.columns([3, 2])
    with left:
        st.image(annotated, width="stretch")
        st.download_button(
            "⬇ Annotated image",
            png(annotated),
            f"{Path(name).stem}_annotated.png",
            "image/png",
            key=f"dl_{name}",
        )
    with right:
        if not faces:
            st.warning(
                "No face found. If this image is a face crop, turn on "
                "**Treat each image as one face**."
            )
        cams = (
            grad_cam(ckpt.model, np.stack([f.crop for f in faces]), ckpt.mean, ckpt.std)
            if faces and saliency
            else None
        )
        for i, face in enumerate(faces):
            with st.container(border=True):
                c1, c2 = st.columns([1, 2])
                c1.image(
                    overlay(face.crop, cams[i]) if cams is not None else face.crop,
                    caption=f"face {i + 1}",
                    width="stretch",
                )
                c2.markdown(f"**{EMOJI[face.label]} {face.label}** ({face.confidence:.0%})")
                c2.plotly_chart(
                    charts.probabilities(face.probs, height=200),
                    width="stretch",
                    key=f"p_{name}_{i}",
                )
    return [
        {
            "image": name,
            "face": i + 1,
            "box": face.box.as_list() if face.box else None,
            "label": face.label,
            **{k: round(v, 4) for k, v in face.probs.items()},
        }
        for i, face in enumerate(faces)
    ]


def options(key: str) -> tuple[bool, str, bool]:
    c1, c2, c3 = st.columns(3)
    crop_mode = c1.toggle(
        "Treat each image as one face",
        key=f"crop_{key}",
        help="Skip face detection: for images that are already a face crop",
    )
    tta = c2.selectbox(
        "Test-time augmentation",
        ["flip", "none", "crops"],
        key=f"tta_{key}",
        help="flip (default): image + mirror. crops: ten views, slower",
    )
    saliency = c3.toggle("Grad-CAM saliency", key=f"sal_{key}")
    return not crop_mode, tta, saliency


photos_tab, webcam_tab, snapshot_tab = st.tabs(["🖼️ Photos", "🎥 Webcam (live)", "📸 Snapshot"])

with photos_tab:
    detect, tta, saliency = options("photos")
    uploads = st.file_uploader(
        "Photos (JPEG, PNG, WebP, BMP, TIFF)",
        accept_multiple_files=True,
        type=["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif"],
        max_upload_size=MAX_FILE_BYTES // 2**20,  # refused in the browser, before the upload
    )
    rows = []
    for upload in uploads or []:
        rows += show_prediction(upload.name, upload.getvalue(), detect, tta, saliency)
    if rows:
        st.download_button(
            "⬇ All predictions (CSV)",
            pd.DataFrame(rows).to_csv(index=False),
            "predictions.csv",
            "text/csv",
        )
    elif not uploads:
        st.caption(
            f"Model: `{ckpt.name}`. Every face found is boxed and labelled; your photos "
            "stay in this session and are never stored."
        )


def webcam() -> None:
    from streamlit_webrtc import WebRtcMode, webrtc_streamer

    from ui.webcam import EmotionStream, rtc_configuration

    config, where = rtc_configuration()
    smoothing = st.slider(
        "Smoothing across frames",
        0.0,
        0.9,
        0.5,
        0.1,
        help="0: every frame on its own. Higher: steadier labels, slower to react",
    )
    live, live_error = state.get_webcam_predictor()
    if live is None:
        st.error(live_error)
        return
    stream = EmotionStream(live, smoothing=smoothing)
    try:
        ctx = webrtc_streamer(
            key="fer-webcam",
            mode=WebRtcMode.SENDRECV,
            rtc_configuration=config,
            video_frame_callback=stream,
            async_processing=True,
            media_stream_constraints={"video": {"width": 640, "height": 480}, "audio": False},
        )
    except Exception as exc:  # e.g. no real Streamlit runtime: say so instead of a traceback
        st.warning(
            f"The live webcam cannot start here ({type(exc).__name__}). "
            "Use the Snapshot tab instead."
        )
        return
    st.caption(
        f"Model: `{live.ckpt.name}`, no test-time augmentation, fast face detection. "
        f"Connection: {where}. If the video never starts, use the Snapshot tab."
    )

    def live_probs() -> None:
        faces, fps = stream.latest()
        st.metric("Frames per second", f"{fps:.1f}")
        for i, face in enumerate(faces[:3]):
            st.markdown(f"face {i + 1}: **{EMOJI[face['label']]} {face['label']}**")
            st.plotly_chart(
                charts.probabilities(face["probs"], height=180), width="stretch", key=f"live_{i}"
            )

    # Poll only while the camera plays (starting or stopping it reruns the page): an idle
    # Predict tab would otherwise cost the server a script run every half second.
    if ctx.state.playing:
        st.fragment(run_every=0.5)(live_probs)()


with webcam_tab:
    webcam()

with snapshot_tab:
    detect, tta, saliency = options("snap")
    shot = st.camera_input("Take a picture")
    if shot is not None:
        show_prediction("snapshot.jpg", shot.getvalue(), detect, tta, saliency)
