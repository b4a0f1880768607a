"""Live webcam through streamlit-webrtc: a frame callback that detects, classifies, tracks, draws.

The callback runs in streamlit-webrtc's worker thread, so it never calls st.*; the page reads
`latest()` from a fragment. ICE servers: an explicit list (FER_ICE_SERVERS or the `ice_servers`
secret, JSON), else streamlit-webrtc's automatic TURN (Twilio / Hugging Face / Cloudflare
credentials from the environment or secrets), else a public STUN server.
"""

from __future__ import annotations

import json
import os
import threading
import time

import av
import streamlit as st

from fer_core.predict import Predictor
from fer_core.vision.draw import annotate
from fer_core.vision.track import FaceTracker, TrackerConfig
from ui.state import export_secrets, secret

TURN_SECRETS = (
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "HF_TOKEN",
    "CLOUDFLARE_TURN_KEY_ID",
    "CLOUDFLARE_TURN_KEY_API_TOKEN",
)


def rtc_configuration() -> tuple[dict | None, str]:
    """(configuration for webrtc_streamer, a sentence saying where it came from)."""
    raw = os.environ.get("FER_ICE_SERVERS")
    source = "FER_ICE_SERVERS"
    if raw is None and secret("ice_servers") is not None:
        raw, source = secret("ice_servers"), "secrets: ice_servers"
    if raw is not None:
        try:
            servers = json.loads(raw) if isinstance(raw, str) else list(raw)
        except ValueError:
            st.warning(f"{source} is not valid JSON; ignoring it.")
        else:
            return {"iceServers": servers}, f"ICE servers from {source} ({len(servers)} entries)"
    export_secrets(TURN_SECRETS)  # streamlit-webrtc reads these from the environment
    if any(os.environ.get(k) for k in TURN_SECRETS):
        return None, "TURN credentials found: streamlit-webrtc will fetch TURN servers"
    return None, "no TURN server configured: works on a local network; see README for the cloud"


class EmotionStream:
    """The frame callback plus the latest per-face probabilities and the measured frame rate.
    Faces are tracked as in video files (`fer_core.vision.track`): each keeps its id, and its
    probabilities are averaged over the last `smoothing_s` seconds or so."""

    def __init__(self, predictor: Predictor, smoothing_s: float = 0.3, tta: str = "none") -> None:
        self.predictor = predictor
        self.tracker = FaceTracker(TrackerConfig(smoothing_s=smoothing_s))
        self.tta = tta
        self._lock = threading.Lock()
        self._latest: list[dict] = []
        self._fps = 0.0
        self._last: float | None = None

    def __call__(self, frame: av.VideoFrame) -> av.VideoFrame:
        image = frame.to_ndarray(format="rgb24")
        now = time.perf_counter()
        found = self.predictor.predict_frames([image], tta=self.tta)[0]
        tracked = self.tracker.update(found, now)
        faces, tags = [t.face for t in tracked], [f"#{t.face_id}" for t in tracked]
        if self._last is not None:
            instant = 1.0 / max(now - self._last, 1e-6)
            self._fps = instant if self._fps == 0 else 0.9 * self._fps + 0.1 * instant
        self._last = now
        with self._lock:
            self._latest = [{"face_id": t.face_id, **t.face.to_dict()} for t in tracked]
            fps = self._fps
        return av.VideoFrame.from_ndarray(annotate(image, faces, fps, tags), format="rgb24")

    def latest(self) -> tuple[list[dict], float]:
        with self._lock:
            return list(self._latest), self._fps
