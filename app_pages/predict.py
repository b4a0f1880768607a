"""Predict: faces in uploaded photos, a live webcam, or a camera snapshot."""

import hashlib
import io
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from fer_core.errors import FerError
from fer_core.labels import EMOJI
from fer_core.predict import in_reading_order
from fer_core.saliency import overlay
from fer_core.vision.draw import annotate
from fer_core.vision.faces import MAX_FILE_BYTES, DetectorConfig, FaceDetector, load_image
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


PREDICTIONS_KEPT = 48  # photo x option combinations kept per session


def predicted(name, blob, detect, tta, detector, largest):
    """(image, faces in reading order) for one photo and these options. Each result is kept in
    the session, so changing an option redoes only the photos it changes (saliency changes none)."""
    digest = hashlib.sha1(blob).hexdigest()
    config = detector.config if detector is not None else None
    key = (digest, detect, tta, repr(config) if detect else None, largest, str(ckpt.path))
    kept = st.session_state.setdefault("photo_predictions", {})
    image = load_image(blob, name=name)  # decoded again each time: only the faces are kept
    if key not in kept:
        faces = predictor.predict_array(image, detect, tta, detector, largest)
        kept[key] = in_reading_order(faces)
        while len(kept) > PREDICTIONS_KEPT:
            kept.pop(next(iter(kept)))
    return image, kept[key]


SALIENCY_PX = 300  # a face's saliency map, shown large


def face_saliency(faces: list) -> np.ndarray | None:
    """(N, 48, 48) saliency maps of the faces for their predicted labels, kept in the session per
    crops and model (a rerun or another option does not recompute them); None, with a warning,
    for a model whose layers the saliency cannot read."""
    crops = np.stack([f.crop for f in faces])
    targets = [predictor.classes.index(f.label) for f in faces]
    key = (hashlib.sha1(crops.tobytes()).hexdigest(), tuple(targets), str(ckpt.path))
    kept = st.session_state.setdefault("photo_saliency", {})
    if key not in kept:
        try:
            kept[key] = predictor.saliency(crops, targets)
        except (RuntimeError, ValueError, TypeError) as exc:
            st.warning(f"No saliency for this model ({type(exc).__name__}: {exc}).")
            return None
        while len(kept) > PREDICTIONS_KEPT:
            kept.pop(next(iter(kept)))
    return kept[key]


def show_prediction(
    name: str,
    blob: bytes,
    detect: bool,
    tta: str,
    saliency: bool,
    detector: FaceDetector | None = None,
    largest: bool = False,
) -> list[dict]:
    """Draw one image's predictions; returns CSV rows (one per face)."""
    try:
        image, faces = predicted(name, blob, detect, tta, detector, largest)
    except FerError as exc:
        st.error(f"**{name}**: {str(exc).removeprefix(f'{name}: ')}")
        return []
    # several faces are numbered on the photo as in the list beside it
    annotated = annotate(
        image, faces, tags=[str(i + 1) for i in range(len(faces))] if len(faces) > 1 else None
    )
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
        cams = face_saliency(faces) if faces and saliency else None
        for i, face in enumerate(faces):
            with st.container(border=True):
                c1, c2 = st.columns([1, 2])
                c1.image(
                    face.crop,
                    caption=f"face {i + 1}"
                    + (f", turned {face.box.angle:g}°" if face.box and face.box.angle else ""),
                    width="stretch",
                )
                headline = f"**{EMOJI[face.label]} {face.label}** ({face.confidence:.0%})"
                if face.uncertain:  # a low top probability or a close runner-up: say both
                    other = face.runner_up
                    headline += (
                        f" · uncertain, perhaps {EMOJI[other]} {other} ({face.probs[other]:.0%})"
                    )
                c2.markdown(headline)
                c2.plotly_chart(
                    charts.probabilities(face.probs, height=200),
                    width="stretch",
                    key=f"p_{name}_{i}",
                )
                if cams is not None:
                    st.image(
                        overlay(face.crop, cams[i], size=SALIENCY_PX),
                        width=SALIENCY_PX,
                        caption=f"What made it say {face.label}: the warmer, the more it counted",
                    )
    return [
        {
            "image": name,
            "face": i + 1,
            "box": face.box.as_list() if face.box else None,
            "angle": round(face.box.angle, 1) if face.box else None,
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
    saliency = c3.toggle(
        "Show saliency",
        key=f"sal_{key}",
        help="Under each face, large: the regions that raised its label's score most (Grad-CAM++)",
    )
    return not crop_mode, tta, saliency


def detection_options(key: str) -> tuple[FaceDetector, bool]:
    """The photo detector's settings (help texts from DetectorConfig) and the largest-face
    option."""
    helps = {f.name: f.metadata.get("help", "") for f in fields(DetectorConfig)}
    with st.expander("Face detection"):
        c1, c2, c3 = st.columns(3)
        largest = c1.checkbox(
            "Only the largest face", key=f"largest_{key}", help="Keep one face per photo"
        )
        min_face = c2.number_input(
            "Smallest face (px, 0 = automatic)",
            0,
            4000,
            DetectorConfig.min_face,
            step=8,
            key=f"minface_{key}",
            help=helps["min_face"].capitalize(),
        )
        max_tilt = c3.select_slider(
            "Rotation search",
            [0, 15, 30, 45, 60],
            value=round(DetectorConfig.max_tilt),
            format_func=lambda d: "off" if d == 0 else f"±{d}°",
            key=f"tilt_{key}",
            help=helps["max_tilt"].capitalize(),
        )
    return FaceDetector(min_face=int(min_face), max_tilt=float(max_tilt)), largest


photos_tab, video_tab, webcam_tab, snapshot_tab = st.tabs(
    ["🖼️ Photos", "🎬 Video", "🎥 Webcam (live)", "📸 Snapshot"]
)

with photos_tab:
    detect, tta, saliency = options("photos")
    detector, largest = detection_options("photos")
    uploads = st.file_uploader(
        "Photos (JPEG, PNG, WebP, BMP, TIFF, GIF)",
        accept_multiple_files=True,
        type=["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif"],
        max_upload_size=MAX_FILE_BYTES // 2**20,  # refused in the browser, before the upload
    )
    rows = []
    for upload in uploads or []:
        rows += show_prediction(
            upload.name, upload.getvalue(), detect, tta, saliency, detector, largest
        )
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
        "Smoothing (seconds)",
        0.0,
        2.0,
        0.3,
        0.1,
        help="How long each face's probabilities are averaged over. 0: every frame on its own. "
        "Higher: steadier labels, slower to react",
    )
    live, live_error = state.get_webcam_predictor()
    if live is None:
        st.error(live_error)
        return
    stream = EmotionStream(live, smoothing_s=smoothing)
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
            st.markdown(f"face {face['face_id']}: **{EMOJI[face['label']]} {face['label']}**")
            st.plotly_chart(
                charts.probabilities(face["probs"], height=180), width="stretch", key=f"live_{i}"
            )

    # Poll only while the camera plays (starting or stopping it reruns the page): an idle
    # Predict tab would otherwise cost the server a script run every half second.
    if ctx.state.playing:
        st.fragment(run_every=0.5)(live_probs)()


def video() -> None:
    """Upload a clip, analyse it in the background, then show its faces over time."""
    from fer_core.vision.video import VIDEO_TYPES
    from ui import video as jobs

    upload = st.file_uploader(
        f"A video ({', '.join(t.upper() for t in VIDEO_TYPES)}; up to {jobs.MAX_UPLOAD_MB} MB)",
        type=list(VIDEO_TYPES),
        max_upload_size=jobs.MAX_UPLOAD_MB,
        key="video_upload",
    )
    choices = jobs.model_choices()
    c1, c2 = st.columns(2)
    model = c1.selectbox(
        "Model",
        list(choices),
        key="video_model",
        help="Fast: about 40 frames/s on 2 CPU cores. Accurate: about 15 frames/s",
    )
    every = c2.number_input(
        "Analyse every Nth frame",
        1,
        30,
        1,
        key="video_every",
        help="1: every frame. 3: a third of them, about 3x faster (the annotated video then "
        "shows those frames)",
    )
    job = jobs.current_job()
    busy = job is not None and job.snapshot().active
    buttons = st.container(horizontal=True)
    if buttons.button("▶ Analyse", type="primary", disabled=upload is None or busy):
        try:
            jobs.start_job(upload, choices[model], int(every))
        except (FerError, OSError) as exc:
            st.error(str(exc))
            return
        st.rerun()  # in full, so that the buttons know a job is running
    if (
        job is not None
        and not busy
        and buttons.button("🗑 Clear", help="Delete the video and results")
    ):
        jobs.clear_job()
        job = None
    if job is None:
        st.caption(
            "Every face is tracked through the clip and keeps its number; you get the annotated "
            "video, each face's emotions over time, and CSV / JSON / MP4 downloads. Fast face "
            "detection, no test-time augmentation. The video stays in this session: its copy on "
            "the server is deleted when you clear it, analyse another, or leave."
        )
        return
    polling = job.snapshot().active
    st.fragment(run_every=0.5 if polling else None)(video_progress)(polling)
    if not polling:
        video_results(job)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def video_progress(polling: bool) -> None:
    """The job's progress bar and Cancel button; refreshed while the job runs."""
    from ui import video as jobs

    job = jobs.current_job()
    if job is None:
        return
    snap = job.snapshot()
    if polling and not snap.active:
        st.rerun()  # the job just ended: once more in full, to draw its results
    if not snap.active:
        {"failed": st.error, "cancelled": st.warning}.get(snap.status, st.success)(snap.message)
        return
    p = snap.progress
    text = f"{snap.name}: starting…"
    if snap.status == "queued":
        text = f"{snap.name}: waiting for another analysis on this server to finish…"
    elif snap.status == "cancelling":
        text = "Cancelling…"
    elif p is not None:
        text = (
            f"{snap.name}: frame {p.decoded:,} of {p.total:,} · {p.processed_per_s:.1f} "
            f"frames/s · ETA {_duration(p.eta_s)}"
        )
    st.progress(p.fraction if p else 0.0, text=text)
    if st.button("✖ Cancel", key="video_cancel", disabled=snap.status == "cancelling"):
        job.cancel()
        st.rerun(scope="fragment")


def video_results(job) -> None:
    """The annotated video beside who showed what when, the per-face table (pick a row to see
    that face's timeline), the timeline, downloads."""
    from fer_core.vision.video import CSV_NAME, SUMMARY_NAME, VIDEO_NAME, label_segments, timeline

    summary = job.snapshot().summary
    if summary is None:
        return
    classes, faces = list(ckpt.classes), summary["faces"]
    focus = focused_face(faces)
    left, right = st.columns(2)
    left.video(str(job.output(VIDEO_NAME)))
    with right:
        if not faces:
            st.info("No face was found in this video.")
        else:
            longest = sorted(faces, key=lambda f: -f["frames_seen"])[:15]
            shown = sorted(f["face_id"] for f in longest)
            segments = {i: label_segments(job.faces(), i, classes) for i in shown}
            st.plotly_chart(
                charts.face_segments(segments, focus), width="stretch", key="video_segments"
            )
            more = f" (the {len(shown)} seen longest, of {len(faces)})" if len(faces) > 15 else ""
            st.caption(f"Each face's most likely emotion over time{more}.")
    if faces:
        face_table(faces, classes)
        st.plotly_chart(
            charts.emotion_timeline(
                timeline(job.faces(), focus, classes), classes, f"face {focus}"
            ),
            width="stretch",
            key="video_timeline",
        )
    stem = Path(summary["video"]["file"]).stem
    files = [
        ("⬇ Faces (CSV)", CSV_NAME, f"{stem}_faces.csv", "text/csv"),
        ("⬇ Summary (JSON)", SUMMARY_NAME, f"{stem}_summary.json", "application/json"),
        ("⬇ Annotated video (MP4)", VIDEO_NAME, f"{stem}_annotated.mp4", "video/mp4"),
    ]
    for column, (label, name, file_name, mime) in zip(st.columns(3), files):
        column.download_button(
            label,
            data=job.output(name).read_bytes,  # read on click, not on every rerun
            file_name=file_name,
            mime=mime,
            on_click="ignore",
            key=f"video_dl_{name}",
        )


def focused_face(faces: list[dict]) -> int | None:
    """The face picked in the table (its state lands before the rerun), else the one seen
    longest."""
    from ui.video import TABLE_KEY

    picked = (st.session_state.get(TABLE_KEY) or {}).get("selection", {}).get("rows", [])
    picked = [r for r in picked if r < len(faces)]
    if picked:
        return faces[picked[0]]["face_id"]
    return max(faces, key=lambda f: f["frames_seen"])["face_id"] if faces else None


def face_table(faces: list[dict], classes: list[str]) -> None:
    """The per-face summary, one row per face id; picking a row focuses its timeline."""
    from ui.video import TABLE_KEY

    table = pd.DataFrame(
        {
            "face": [f["face_id"] for f in faces],
            "seen (s)": [f"{f['first_s']:.1f}–{f['last_s']:.1f}" for f in faces],
            "frames": [f["frames_seen"] for f in faces],
            "mostly": [f"{EMOJI[f['dominant']]} {f['dominant']}" for f in faces],
            **{c: [100 * f["share"][c] for f in faces] for c in classes},
        }
    )
    # widths in pixels, so that all seven emotions fit the page's width without scrolling
    columns = {
        "face": st.column_config.NumberColumn("face", width=45),
        "seen (s)": st.column_config.TextColumn("seen (s)", width=80),
        "frames": st.column_config.NumberColumn("frames", width=60),
        **{
            c: st.column_config.ProgressColumn(c, format="%.0f%%", max_value=100, width=70)
            for c in classes
        },
    }
    st.dataframe(
        table,
        hide_index=True,
        on_select="rerun",
        selection_mode="single-row",
        key=TABLE_KEY,
        column_config=columns,
    )
    st.caption("Share of its time each face showed each emotion. Pick a row to see its timeline.")


with webcam_tab:
    webcam()

with video_tab:
    video()

with snapshot_tab:
    detect, tta, saliency = options("snap")
    shot = st.camera_input("Take a picture")
    if shot is not None:
        show_prediction("snapshot.jpg", shot.getvalue(), detect, tta, saliency)
